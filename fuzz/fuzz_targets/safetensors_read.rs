//! Fuzzes the HF safetensors reader: any byte string must be refused with an error or give
//! tensors whose decoded length matches their shape, never a panic or a huge allocation.
//! Run: `./x fuzz safetensors_read`.
#![no_main]

use cqa_studio::safetensors::SafetensorsWeights;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(weights) = SafetensorsWeights::new(vec![data.to_vec()]) else { return };
    for (name, _dtype) in weights.dtypes().into_iter().take(8) {
        if let Ok(Some((shape, values))) = weights.load(&name) {
            assert_eq!(shape.iter().product::<usize>(), values.len(), "tensor `{name}` decoded to the wrong length");
        }
    }
});
