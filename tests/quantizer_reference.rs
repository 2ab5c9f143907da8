//! Files written by llama.cpp's own quantizer open, and read as the Python reference stack reads
//! them. `tests/fixtures/quantized/` holds one small model (rows of 576, like SmolLM2's, so that
//! llama.cpp's fallbacks to Q5_0, Q5_1, Q8_0 and IQ4_NL happen) in every ftype a download
//! commonly has; `quantizer_reference.json` holds gguf-py's decoding of each tensor (as a
//! SHA-256 of its f32 values) and transformers' log-probabilities from each file. Both come from
//! `tests/reference/make_quantizer_fixtures.py`. The I-quants below 4 bits, which llama.cpp makes
//! only with an importance matrix, come as files of seeded random blocks with the same two
//! references (`iquant_reference.json`, `tests/reference/make_iquant_fixtures.py`).

mod common;

use burn::tensor::Device;
use cqa_studio::gguf::{Format, GgufFile};
use cqa_studio::model::WeightMode;
use cqa_studio::quant::StoredMatrix;
use sha2::{Digest, Sha256};

/// The same bound as the default model's check (model_reference.rs): for every file on the CPU,
/// and on a GPU where every matrix is read from its own blocks.
const LOGPROB_TOLERANCE: f32 = 2e-3;

/// On a GPU, for a file with a type the kernels do not read (Q2_K, Q3_K, TQ*, IQ1–IQ3): those
/// matrices are requantized to Q8_0 at load, a second rounding of values already on another grid.
/// Measured up to 1.04e-2 on these small random models, where the tied head is Q6_K.
const CONVERTED_TOLERANCE: f32 = 2e-2;

fn digest(values: &[f32]) -> String {
    let mut hasher = Sha256::new();
    for v in values {
        hasher.update(v.to_le_bytes());
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The fixtures: llama.cpp's files, then the I-quants' (tests/reference/make_iquant_fixtures.py).
const FIXTURES: [&str; 2] = ["quantizer_reference.json", "iquant_reference.json"];

/// Every file of both fixtures: its name, its entry, the file, and the token ids it was scored on.
fn files() -> Vec<(String, serde_json::Value, GgufFile, Vec<u32>)> {
    let mut out = Vec::new();
    for name in FIXTURES {
        let fixture = common::fixture(name);
        let ids = common::ids(&fixture["ids"]);
        let files = fixture["files"].as_object().unwrap();
        assert!(files.len() >= 7, "{name} lists {} files", files.len());
        for (ftype, entry) in files {
            let path = common::root().join("tests/fixtures/quantized").join(entry["file"].as_str().unwrap());
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push((ftype.clone(), entry.clone(), GgufFile::parse(bytes).unwrap_or_else(|e| panic!("{ftype}: {e}")), ids.clone()));
        }
    }
    assert!(out.len() >= 24, "the fixtures list {} files", out.len());
    out
}

#[test]
fn every_tensor_of_every_ftype_decodes_bit_for_bit_as_gguf_py_on_every_backend_that_holds_it() {
    let mut formats = std::collections::BTreeSet::new();
    for (ftype, entry, file, _) in files() {
        for (name, want) in entry["tensors"].as_object().unwrap() {
            let info = file.tensor_info(name).unwrap_or_else(|| panic!("{ftype}: no tensor {name}"));
            assert_eq!(info.format.name(), want["type"].as_str().unwrap(), "{ftype} {name}");
            formats.insert(info.format);
            let sha = want["sha256"].as_str().unwrap();
            let (shape, values) = file.dequantize(name).unwrap();
            assert_eq!(digest(&values), sha, "{ftype} {name} ({}): the decoder differs from gguf-py's", info.format.name());
            if shape.len() != 2 || info.format == Format::F32 {
                continue;
            }
            // The CPU's stored matrix, row by row.
            let matrix = StoredMatrix::from_bytes(info.format, shape[0], shape[1], file.tensor_bytes(info).unwrap().into_owned()).unwrap();
            assert_eq!(digest(&matrix.to_f32()), sha, "{ftype} {name}: stored rows");
            // A GPU's words, decoded as its kernels decode them; a format without words goes to a
            // GPU converted (checked within half a Q8_0 step in the engine's unit tests).
            if let Some(layout) = matrix.word_layout() {
                let words = matrix.to_words(0, shape[0]);
                let mut decoded = vec![0f32; shape[0] * shape[1]];
                for (r, row) in decoded.chunks_exact_mut(shape[1]).enumerate() {
                    cqa_quant::decode_row(&layout, &words, shape[0], r, row);
                }
                assert_eq!(digest(&decoded), sha, "{ftype} {name}: GPU words");
            }
        }
    }
    // The fallbacks happened: the files hold the 32-blocks llama.cpp writes for rows of 576.
    let names: Vec<&str> = formats.iter().map(|f| f.name()).collect();
    for wanted in ["F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0", "IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S"] {
        assert!(names.contains(&wanted), "no file holds a {wanted} tensor: {names:?}");
    }
}

fn scores_like_transformers(device: &Device, backend: &str, tolerance: f32) {
    let mut worst = 0f32;
    let mut failures = Vec::new();
    for (ftype, entry, file, ids) in files() {
        let want = common::floats(&entry["logprobs"]);
        let need = cqa_studio::quant::MemoryNeed::of_gguf(&std::fs::read(common::root().join("tests/fixtures/quantized").join(entry["file"].as_str().unwrap())).unwrap(), entry["bytes"].as_u64().unwrap() as usize)
            .unwrap()
            .unwrap();
        let (got, model) = common::gguf_logprobs(file, &ids, WeightMode::Stored, device);
        assert!(model.has_stored_weights(), "{ftype}");
        let expected_bytes = if backend == "cpu" { need.resident_bytes_stored } else { need.resident_bytes_stored_gpu };
        assert_eq!(model.resident_weight_bytes() as u64, expected_bytes, "{ftype}: resident bytes as the header's figures say");
        let drift = common::max_abs_diff(&got, &want);
        let converted: std::collections::BTreeSet<&str> = entry["tensors"]
            .as_object()
            .unwrap()
            .values()
            .filter_map(|t| Format::ALL.into_iter().find(|f| f.name() == t["type"].as_str().unwrap()))
            .filter(|f| backend != "cpu" && *f != Format::F32 && f.on_gpu() != *f)
            .map(|f| f.name())
            .collect();
        let bound = if converted.is_empty() { tolerance } else { CONVERTED_TOLERANCE };
        println!("{backend} {ftype:14}: max |Δ logprob| vs transformers {drift:.2e}{}", if converted.is_empty() { String::new() } else { format!(" (converted to Q8_0: {converted:?})") });
        failures.extend((drift >= bound).then(|| format!("{ftype}: {drift:.2e} (bound {bound:.0e})")));
        // The comparison can fail: the log-probabilities are not all alike.
        let spread = want.iter().fold(f32::MIN, |a, &b| a.max(b)) - want.iter().fold(f32::MAX, |a, &b| a.min(b));
        assert!(spread > 0.05, "{ftype}: spread {spread}");
        worst = worst.max(drift);
    }
    println!("{backend}: worst {worst:.2e}");
    assert!(failures.is_empty(), "{backend}: over the bound vs transformers: {failures:?}");
}

#[test]
fn every_ftype_scores_like_transformers_with_its_weights_as_stored() {
    scores_like_transformers(&cqa_studio::device::cpu(), "cpu", LOGPROB_TOLERANCE);
}

#[test]
fn every_ftype_scores_like_transformers_on_wgpu() {
    let device = match cqa_studio::device::wgpu() {
        Ok(device) => device,
        Err(e) if std::env::var_os("CQA_REQUIRE_GPU").is_some() => panic!("CQA_REQUIRE_GPU is set: {e}"),
        Err(e) => return eprintln!("skipped, no GPU: {e}"),
    };
    scores_like_transformers(&device, "wgpu", LOGPROB_TOLERANCE);
}
