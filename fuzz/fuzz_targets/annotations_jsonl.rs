//! Fuzzes the annotation JSONL reader: any byte string gives records and line errors, never a
//! panic; and every record it accepts survives a write/read round trip unchanged.
//! Run: `./x fuzz annotations_jsonl`.
#![no_main]

use cqa_studio::data::{annotations_to_jsonl, parse_annotations};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
});
