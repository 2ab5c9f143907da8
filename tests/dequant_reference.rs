//! Dequantization of every supported ggml type matches the `gguf` Python package
//! (fixture: tests/reference/make_dequant_fixtures.py).

mod common;
use cqa_studio::gguf::dequant::{GgmlType, dequantize};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

#[test]
fn every_type_matches_gguf_py() {
    let fixture = common::fixture("dequant.json");
    let mut seen = std::collections::BTreeSet::new();
    for case in fixture["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let ty = GgmlType::from_id(case["ggml_type"].as_u64().unwrap() as u32).expect("supported type");
        let expected = common::floats(&case["values"]);
        let got = dequantize(ty, &hex(case["data_hex"].as_str().unwrap()), expected.len()).unwrap();
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert!((g - e).abs() <= 1e-6 * e.abs().max(1.0), "{name} [{i}]: got {g}, gguf-py {e}");
        }
        seen.insert(ty.name());
    }
    for ty in ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q5_K", "Q6_K"] {
        assert!(seen.contains(ty), "the fixture has no {ty} case");
    }
}
