//! What each fuzz target asks of one input, shared by the libFuzzer targets (`fuzz_targets/`,
//! run by `./x fuzz`) and by `tests/fuzz_seeds.rs`, which replays the seeds, the saved corpus and
//! seeded mutations of them on every `./x test`. Each function must return for any bytes; a
//! panic (an assertion here, an overflow, an out-of-bounds read in a reader) is the failure.

use cqa_studio::calibrate::parse_benchmark;
use cqa_studio::data::{annotations_to_jsonl, parse_annotations};
use cqa_studio::gguf::GgufFile;
use cqa_studio::safetensors::SafetensorsWeights;

/// The GGUF parser, the block decoders and the CPU's stored-matrix products: any byte string
/// gives a model description or an error, never a panic, an overflow or a huge allocation.
pub fn gguf_parse(data: &[u8]) {
    let Ok(file) = GgufFile::parse(data.to_vec()) else { return };
    let _ = file.architecture();
    let names: Vec<String> = file.tensors.iter().map(|t| t.name.clone()).collect();
    for name in names.iter().take(4) {
        // Bounded: dequantize only small tensors so the fuzzer stays fast.
        let Some(info) = file.tensor_info(name).filter(|t| t.n_elements() <= 1 << 16) else { continue };
        let _ = file.dequantize(name);
        // The same blocks as a stored matrix, through the CPU's decode product (every format's
        // dot kernel): any bytes must give numbers, never a panic.
        if let [rows, cols] = info.shape[..]
            && let Ok(matrix) = file.stored_matrix(info, rows, cols)
        {
            let _ = matrix.matmul_transposed(&vec![0.5f32; cols], 1);
        }
    }
    let _ = cqa_studio::model::LlamaConfig::from_gguf(&file);
    let _ = cqa_studio::tokenizer::TextTokenizer::from_gguf(&file);
}

/// The HF safetensors reader: refused with an error, or tensors whose decoded length matches
/// their shape.
pub fn safetensors_read(data: &[u8]) {
    let Ok(weights) = SafetensorsWeights::new(vec![data.to_vec()]) else { return };
    for (name, _dtype) in weights.dtypes().into_iter().take(8) {
        if let Ok(Some((shape, values))) = weights.load(&name) {
            assert_eq!(shape.iter().product::<usize>(), values.len(), "tensor `{name}` decoded to the wrong length");
        }
    }
}

/// The annotation JSONL reader: records and line errors, and every record it accepts survives
/// a write/read round trip unchanged.
pub fn annotations_jsonl(data: &[u8]) {
    let report = parse_annotations(data);
    for e in &report.errors {
        assert!(e.line >= 1, "line numbers are 1-based");
    }
    let records: Vec<_> = report.records.into_iter().map(|(_, r)| r).collect();
    if records.is_empty() {
        return;
    }
    let jsonl = annotations_to_jsonl(&records);
    let again = parse_annotations(jsonl.as_bytes());
    assert!(again.errors.is_empty(), "re-reading written records failed: {:?}", again.errors);
    let again: Vec<_> = again.records.into_iter().map(|(_, r)| r).collect();
    assert_eq!(again, records, "records changed in a write/read round trip");
}

/// The benchmark JSONL reader: items or one error listing the bad lines; accepted items survive
/// a write/read round trip unchanged.
pub fn benchmark_jsonl(data: &[u8]) {
    let Ok(items) = parse_benchmark(data) else { return };
    let jsonl: String = items.iter().map(|i| serde_json::to_string(i).expect("items serialise") + "\n").collect();
    let again = parse_benchmark(jsonl.as_bytes()).expect("written items read back");
    assert_eq!(again, items, "items changed in a write/read round trip");
}
