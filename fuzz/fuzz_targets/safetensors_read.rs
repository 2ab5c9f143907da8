//! Fuzzes the HF safetensors reader (what is asked of each input: `checks::safetensors_read`).
//! Run: `./x fuzz safetensors_read` (stable toolchain; seeds in fuzz/seeds/safetensors_read), or `cargo fuzz run safetensors_read`
//! with a nightly toolchain. `./x test` replays the seeds and the corpus (tests/fuzz_seeds.rs).
#![no_main]

#[path = "../checks.rs"]
#[allow(dead_code)] // each target calls one of the checks
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::safetensors_read(data));
