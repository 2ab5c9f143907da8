//! The format registry: every ggml tensor type the engine reads, in one table.
//!
//! A row of [`TABLE`] says what a format is (its ggml id, name and block geometry) and how each
//! backend holds a matrix of it: the CPU multiplies from the file's own blocks for every format
//! here; a GPU reads the formats that have a word layout (`words.rs`) from their blocks, and
//! takes any other as a conversion made once at load, to a format at least as precise.
//!
//! Each format's layout, block decoder and portable dot product live in its own file under
//! `formats/`; the matches below are exhaustive, so a new format is one file, one variant and
//! one table row, and the compiler lists every place that must hear of it.

use crate::formats;

/// A ggml tensor encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    IQ4NL,
    IQ4XS,
    TQ1_0,
    TQ2_0,
    MXFP4,
    IQ2XXS,
    IQ2XS,
    IQ3XXS,
    IQ1S,
    IQ3S,
    IQ2S,
    IQ1M,
}

/// How a GPU backend holds a matrix of a format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuHolding {
    /// Dense f32 (burn's own matmul).
    Dense,
    /// The file's bytes as 32-bit words (`words.rs`), decoded by the kernels' branch `code`.
    Words { code: u32 },
    /// Converted once at load (the kernels have no branch for it).
    Converted(Format),
}

/// One row of the registry.
#[derive(Debug, Clone, Copy)]
pub struct Traits {
    pub format: Format,
    /// The type id in a GGUF tensor info (ggml's `enum ggml_type`).
    pub ggml_id: u32,
    /// The name ggml and gguf-py give it.
    pub name: &'static str,
    /// Elements a block encodes (1 for plain floats).
    pub block_elements: usize,
    /// Bytes a block takes.
    pub block_bytes: usize,
    /// Bits a weight, for the model card.
    pub bits_per_weight: f32,
    pub gpu: GpuHolding,
}

const fn row(format: Format, ggml_id: u32, name: &'static str, block_elements: usize, block_bytes: usize, gpu: GpuHolding) -> Traits {
    Traits { format, ggml_id, name, block_elements, block_bytes, bits_per_weight: (block_bytes * 8) as f32 / block_elements as f32, gpu }
}

use GpuHolding::{Converted, Dense, Words};

/// Every format, in ggml id order.
pub const TABLE: [Traits; 25] = [
    row(Format::F32, 0, "F32", 1, 4, Dense),
    row(Format::F16, 1, "F16", 1, 2, Words { code: 0 }),
    row(Format::Q4_0, 2, "Q4_0", 32, 18, Words { code: 3 }),
    row(Format::Q4_1, 3, "Q4_1", 32, 20, Words { code: 4 }),
    row(Format::Q5_0, 6, "Q5_0", 32, 22, Words { code: 6 }),
    row(Format::Q5_1, 7, "Q5_1", 32, 24, Words { code: 7 }),
    row(Format::Q8_0, 8, "Q8_0", 32, 34, Words { code: 2 }),
    row(Format::Q2K, 10, "Q2_K", 256, 84, Converted(Format::Q8_0)),
    row(Format::Q3K, 11, "Q3_K", 256, 110, Converted(Format::Q8_0)),
    row(Format::Q4K, 12, "Q4_K", 256, 144, Words { code: 5 }),
    row(Format::Q5K, 13, "Q5_K", 256, 176, Words { code: 11 }),
    row(Format::Q6K, 14, "Q6_K", 256, 210, Words { code: 10 }),
    row(Format::IQ2XXS, 16, "IQ2_XXS", 256, 66, Converted(Format::Q8_0)),
    row(Format::IQ2XS, 17, "IQ2_XS", 256, 74, Converted(Format::Q8_0)),
    row(Format::IQ3XXS, 18, "IQ3_XXS", 256, 98, Converted(Format::Q8_0)),
    row(Format::IQ1S, 19, "IQ1_S", 256, 50, Converted(Format::Q8_0)),
    row(Format::IQ4NL, 20, "IQ4_NL", 32, 18, Words { code: 8 }),
    row(Format::IQ3S, 21, "IQ3_S", 256, 110, Converted(Format::Q8_0)),
    row(Format::IQ2S, 22, "IQ2_S", 256, 82, Converted(Format::Q8_0)),
    row(Format::IQ4XS, 23, "IQ4_XS", 256, 136, Words { code: 9 }),
    row(Format::IQ1M, 29, "IQ1_M", 256, 56, Converted(Format::Q8_0)),
    row(Format::BF16, 30, "BF16", 1, 2, Words { code: 1 }),
    row(Format::TQ1_0, 34, "TQ1_0", 256, 54, Converted(Format::Q8_0)),
    row(Format::TQ2_0, 35, "TQ2_0", 256, 66, Converted(Format::Q8_0)),
    row(Format::MXFP4, 39, "MXFP4", 32, 17, Converted(Format::Q8_0)),
];

impl Format {
    /// Every format, in the table's order.
    pub const ALL: [Format; 25] = {
        let mut all = [Format::F32; 25];
        let mut i = 0;
        while i < TABLE.len() {
            all[i] = TABLE[i].format;
            i += 1;
        }
        all
    };

    /// This format's row of the registry.
    pub const fn traits(self) -> &'static Traits {
        let mut i = 0;
        while i < TABLE.len() {
            if TABLE[i].format as u8 == self as u8 {
                return &TABLE[i];
            }
            i += 1;
        }
        panic!("a format without a row in the registry")
    }

    /// The format of a GGUF tensor's type id, if the engine reads it.
    pub fn from_ggml_id(id: u32) -> Option<Format> {
        TABLE.iter().find(|t| t.ggml_id == id).map(|t| t.format)
    }

    pub const fn ggml_id(self) -> u32 {
        self.traits().ggml_id
    }

    pub const fn name(self) -> &'static str {
        self.traits().name
    }

    pub const fn block_elements(self) -> usize {
        self.traits().block_elements
    }

    pub const fn block_bytes(self) -> usize {
        self.traits().block_bytes
    }

    /// How a GPU holds it.
    pub const fn gpu(self) -> GpuHolding {
        self.traits().gpu
    }

    /// The format a matrix of this one takes on a GPU.
    pub const fn on_gpu(self) -> Format {
        match self.gpu() {
            Dense | Words { .. } => self,
            Converted(to) => to,
        }
    }

    /// Bytes `n` elements take (`n` a whole number of blocks).
    pub const fn bytes_for(self, n: usize) -> usize {
        n / self.block_elements() * self.block_bytes()
    }

    /// Decodes whole blocks: `bytes` holds `out.len() / block_elements` blocks. The values are
    /// those of ggml's `dequantize_row_*` for the type.
    pub fn decode(self, bytes: &[u8], out: &mut [f32]) {
        debug_assert_eq!(bytes.len(), self.bytes_for(out.len()));
        match self {
            Format::F32 | Format::F16 | Format::BF16 => formats::float::decode(self, bytes, out),
            Format::Q4_0 => formats::q4_0::decode(bytes, out),
            Format::Q4_1 => formats::q4_1::decode(bytes, out),
            Format::Q5_0 => formats::q5_0::decode(bytes, out),
            Format::Q5_1 => formats::q5_1::decode(bytes, out),
            Format::Q8_0 => formats::q8_0::decode(bytes, out),
            Format::Q2K => formats::q2_k::decode(bytes, out),
            Format::Q3K => formats::q3_k::decode(bytes, out),
            Format::Q4K => formats::q4_k::decode(bytes, out),
            Format::Q5K => formats::q5_k::decode(bytes, out),
            Format::Q6K => formats::q6_k::decode(bytes, out),
            Format::IQ4NL => formats::iq4_nl::decode(bytes, out),
            Format::IQ4XS => formats::iq4_xs::decode(bytes, out),
            Format::TQ1_0 => formats::tq1_0::decode(bytes, out),
            Format::TQ2_0 => formats::tq2_0::decode(bytes, out),
            Format::MXFP4 => formats::mxfp4::decode(bytes, out),
            Format::IQ2XXS => formats::iq2_xxs::decode(bytes, out),
            Format::IQ2XS => formats::iq2_xs::decode(bytes, out),
            Format::IQ2S => formats::iq2_s::decode(bytes, out),
            Format::IQ3XXS => formats::iq3_xxs::decode(bytes, out),
            Format::IQ3S => formats::iq3_s::decode(bytes, out),
            Format::IQ1S => formats::iq1_s::decode(bytes, out),
            Format::IQ1M => formats::iq1_m::decode(bytes, out),
        }
    }
}

/// The name of any ggml type id, read or not (for error messages and `cqa info`).
pub fn ggml_type_name(id: u32) -> &'static str {
    if let Some(format) = Format::from_ggml_id(id) {
        return format.name();
    }
    match id {
        9 => "Q8_1",
        15 => "Q8_K",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_consistent() {
        for (i, t) in TABLE.iter().enumerate() {
            assert_eq!(t.format.traits().ggml_id, t.ggml_id);
            assert_eq!(Format::from_ggml_id(t.ggml_id), Some(t.format));
            assert_eq!(Format::ALL[i], t.format);
            assert!(TABLE[..i].iter().all(|u| u.ggml_id < t.ggml_id && u.format != t.format), "{} out of order or twice", t.name);
            // A word layout holds 32-element groups; a conversion goes to a format with a layout.
            match t.gpu {
                Converted(to) => assert!(matches!(to.gpu(), Words { .. }), "{} converts to {}", t.name, to.name()),
                Words { code } => assert!(TABLE.iter().filter(|u| u.gpu == Words { code }).count() == 1),
                Dense => assert_eq!(t.format, Format::F32),
            }
        }
    }

    #[test]
    fn block_sizes_are_ggml_s() {
        // ggml's GGML_QUANT_SIZES (gguf-py's constants), a few by hand.
        let sizes = [(Format::Q5_0, 32, 22), (Format::Q2K, 256, 84), (Format::Q3K, 256, 110), (Format::Q5K, 256, 176), (Format::Q6K, 256, 210), (Format::IQ4XS, 256, 136), (Format::TQ1_0, 256, 54), (Format::MXFP4, 32, 17), (Format::BF16, 1, 2), (Format::IQ2XXS, 256, 66), (Format::IQ2XS, 256, 74), (Format::IQ2S, 256, 82), (Format::IQ3XXS, 256, 98), (Format::IQ3S, 256, 110), (Format::IQ1S, 256, 50), (Format::IQ1M, 256, 56)];
        for (f, e, b) in sizes {
            assert_eq!((f.block_elements(), f.block_bytes()), (e, b), "{}", f.name());
        }
        assert_eq!(ggml_type_name(16), "IQ2_XXS");
        assert_eq!(ggml_type_name(14), "Q6_K");
    }
}
