//! Fuzzes the GGUF parser and dequantizer: any byte string must give a model description or an
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
            if file.tensor_info(name).is_some_and(|t| t.n_elements() <= 1 << 16) {
                let _ = file.dequantize(name);
            }
        }
        let _ = cqa_studio::model::LlamaConfig::from_gguf(&file);
        let _ = cqa_studio::tokenizer::TextTokenizer::from_gguf(&file);
    }
});
