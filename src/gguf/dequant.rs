//! A GGUF tensor's values as f32, through the format registry (`cqa_quant::Format`: one file per
//! ggml type, each decoder the values of ggml's `dequantize_row_*`). Checked against the `gguf`
//! Python package in `tests/dequant_reference.rs`.

use crate::error::{Error, Result};
pub use cqa_quant::{Format, ggml_type_name};

/// Dequantizes `n_elements` values encoded as `format` in `bytes`.
pub fn dequantize(format: Format, bytes: &[u8], n_elements: usize) -> Result<Vec<f32>> {
    if !n_elements.is_multiple_of(format.block_elements()) || bytes.len() != format.bytes_for(n_elements) {
        return Err(Error::Gguf(format!(
            "{} data of {} bytes cannot hold {n_elements} elements",
            format.name(),
            bytes.len()
        )));
    }
    let mut out = vec![0f32; n_elements];
    format.decode(bytes, &mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    #[test]
    fn q4_0_by_hand() {
        // d = 0.5; byte 0x1f: low nibble 15 → (15-8)*0.5 = 3.5, high nibble 1 → (1-8)*0.5 = -3.5.
        let mut b = vec![0u8; 18];
        b[0..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        b[2] = 0x1f;
        let y = dequantize(Format::Q4_0, &b, 32).unwrap();
        assert_eq!(y[0], 3.5);
        assert_eq!(y[16], -3.5);
        assert_eq!(y[1], -4.0);
    }

    #[test]
    fn q8_0_by_hand() {
        let mut b = vec![0u8; 34];
        b[0..2].copy_from_slice(&f16::from_f32(0.25).to_le_bytes());
        b[2] = (-4i8) as u8;
        b[33] = 8;
        let y = dequantize(Format::Q8_0, &b, 32).unwrap();
        assert_eq!((y[0], y[31]), (-1.0, 2.0));
    }

    #[test]
    fn length_mismatch_is_an_error() {
        assert!(dequantize(Format::Q4_1, &[0u8; 19], 32).is_err());
        assert!(dequantize(Format::Q6K, &[0u8; 210], 255).is_err());
        assert!(dequantize(Format::Q5_0, &[0u8; 21], 32).is_err());
    }
}
