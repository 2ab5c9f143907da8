//! F32, F16 and BF16: plain little-endian floats, one element a "block".

use crate::Format;
use half::{bf16, f16};

pub(crate) fn decode(format: Format, bytes: &[u8], out: &mut [f32]) {
    match format {
        Format::F32 => {
            for (y, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *y = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        Format::F16 => {
            for (y, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *y = f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        Format::BF16 => {
            for (y, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *y = bf16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        other => unreachable!("{} is not a plain float format", other.name()),
    }
}
