//! The format registry against the `gguf` Python package (fixture:
//! tests/reference/make_dequant_fixtures.py): every format the registry reads decodes as gguf-py
//! dequantizes it, and so does each backend that holds it — the CPU's stored matrix (its rows and
//! its products) and, for the formats a GPU reads from their blocks, the word layout the GPU
//! kernels are a transcription of. The kernels themselves are checked against the same rows in
//! `src/quant/gpu.rs`.

mod common;
use cqa_studio::gguf::dequant::{Format, dequantize};
use cqa_studio::quant::StoredMatrix;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

fn assert_matches(got: &[f32], expected: &[f32], what: &str) {
    assert_eq!(got.len(), expected.len(), "{what}: length");
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        assert!((g - e).abs() <= 1e-6 * e.abs().max(1.0), "{what} [{i}]: got {g}, gguf-py {e}");
    }
}

#[test]
fn every_format_of_the_registry_matches_gguf_py_on_every_backend_that_holds_it() {
    let fixture = common::fixture("dequant.json");
    let mut seen = std::collections::BTreeSet::new();
    for case in fixture["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let format = Format::from_ggml_id(case["ggml_type"].as_u64().unwrap() as u32).expect("a format of the registry");
        let expected = common::floats(&case["values"]);
        let bytes = hex(case["data_hex"].as_str().unwrap());
        assert_matches(&dequantize(format, &bytes, expected.len()).unwrap(), &expected, name);
        seen.insert(format);

        // The CPU's stored matrix: one row of the case's values, in whole groups of 32 (the
        // plain-float cases end with a few edge values past the last group).
        let n = expected.len() / 32 * 32;
        let (bytes, expected) = (&bytes[..format.bytes_for(n)], &expected[..n]);
        let matrix = StoredMatrix::from_bytes(format, 1, n, bytes.to_vec()).unwrap();
        let mut row = vec![0f32; n];
        matrix.dequantize_row(0, &mut row);
        assert_matches(&row, expected, &format!("{name} as a stored row"));
        // Its product with a vector of ones and with a ramp, through the decode kernel (m = 1)
        // and the panel path (m = 8): sums of the reference values, in f64.
        for m in [1usize, 8] {
            let x: Vec<f32> = (0..m * n).map(|i| if i % 2 == 0 { 1.0 } else { (i % 7) as f32 * 0.25 - 0.75 }).collect();
            let y = matrix.matmul_transposed(&x, m);
            for (i, got) in y.iter().enumerate() {
                let want: f64 = expected.iter().zip(&x[i * n..]).map(|(w, x)| *w as f64 * *x as f64).sum();
                let scale: f64 = expected.iter().zip(&x[i * n..]).map(|(w, x)| (*w as f64 * *x as f64).abs()).sum::<f64>().max(1.0);
                assert!((*got as f64 - want).abs() <= 1e-5 * scale, "{name}: product row {i} (m = {m}): {got} vs {want}");
            }
        }
        // On a GPU: the words the kernels read, decoded as they decode them.
        if let Some(layout) = matrix.word_layout() {
            let words = matrix.to_words(0, 1);
            cqa_quant::decode_row(&layout, &words, 1, 0, &mut row);
            assert_matches(&row, expected, &format!("{name} as GPU words"));
        }
    }
    for format in Format::ALL {
        assert!(seen.contains(&format), "the fixture has no {} case", format.name());
    }
}
