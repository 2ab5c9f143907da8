//! Fuzzes the GGUF parser, the block decoders and the CPU's stored-matrix products (what is asked of each input: `checks::gguf_parse`).
//! Run: `./x fuzz gguf_parse` (stable toolchain; seeds in fuzz/seeds/gguf_parse), or `cargo fuzz run gguf_parse`
//! with a nightly toolchain. `./x test` replays the seeds and the corpus (tests/fuzz_seeds.rs).
#![no_main]

#[path = "../checks.rs"]
#[allow(dead_code)] // each target calls one of the checks
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::gguf_parse(data));
