//! Fuzzes the GGUF parser, the block decoders and the CPU's stored-matrix products: any byte string must give a model description or an
//! error, never a panic, an overflow or a huge allocation.
//! Run: `./x fuzz` (stable toolchain; seeds in fuzz/seeds), or `cargo fuzz run gguf_parse` with
//! a nightly toolchain.
#![no_main]

use cqa_studio::gguf::GgufFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = GgufFile::parse(data.to_vec()) {
        let _ = file.architecture();
        let names: Vec<String> = file.tensors.iter().map(|t| t.name.clone()).collect();
        for name in names.iter().take(4) {
            // Bounded: dequantize only small tensors so the fuzzer stays fast.
            let Some(info) = file.tensor_info(name).filter(|t| t.n_elements() <= 1 << 16) else { continue };
            let _ = file.dequantize(name);
            // The same blocks as a stored matrix, through the CPU's decode product (every
            // format's dot kernel): any bytes must give numbers, never a panic.
            if let [rows, cols] = info.shape[..]
                && let Ok(matrix) = file.stored_matrix(info, rows, cols)
            {
                let _ = matrix.matmul_transposed(&vec![0.5f32; cols], 1);
            }
        }
        let _ = cqa_studio::model::LlamaConfig::from_gguf(&file);
        let _ = cqa_studio::tokenizer::TextTokenizer::from_gguf(&file);
    }
});
