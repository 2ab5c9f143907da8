//! Fuzzes the benchmark JSONL reader: any byte string gives items or one error listing the bad
//! lines, never a panic; accepted items survive a write/read round trip unchanged.
//! Run: `./x fuzz benchmark_jsonl`.
#![no_main]

use cqa_studio::calibrate::parse_benchmark;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(items) = parse_benchmark(data) else { return };
    let jsonl: String = items.iter().map(|i| serde_json::to_string(i).expect("items serialise") + "\n").collect();
    let again = parse_benchmark(jsonl.as_bytes()).expect("written items read back");
    assert_eq!(again, items, "items changed in a write/read round trip");
});
