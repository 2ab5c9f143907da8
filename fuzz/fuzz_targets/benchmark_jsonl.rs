//! Fuzzes the benchmark JSONL reader (what is asked of each input: `checks::benchmark_jsonl`).
//! Run: `./x fuzz benchmark_jsonl` (stable toolchain; seeds in fuzz/seeds/benchmark_jsonl), or `cargo fuzz run benchmark_jsonl`
//! with a nightly toolchain. `./x test` replays the seeds and the corpus (tests/fuzz_seeds.rs).
#![no_main]

#[path = "../checks.rs"]
#[allow(dead_code)] // each target calls one of the checks
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::benchmark_jsonl(data));
