//! A [`StoredMatrix`] laid out as 32-bit words for a GPU, which reads storage buffers a word at
//! a time: a GGUF block (34 bytes for Q8_0, 18 for Q4_0) does not sit on word boundaries, so the
//! values and the scales go to two aligned streams. No number changes on the way: the words hold
//! the file's own bytes, f16 scales included, and the kernels decode them as
//! [`dequantize_block`](crate::dequantize_block) does.
//!
//! The words of a run of `n` rows: first every row's value words (`value_words` a row), then
//! every row's scale words (`scale_words` a row).
//!
//! | format | value words a row | scale words a row |
//! |---|---|---|
//! | F16, BF16 | cols / 2 (element 2i in the low half of word i) | 0 |
//! | Q8_0 | cols / 4 (a block's 32 bytes are words 8b..8b+8) | ⌈blocks / 2⌉ (block b's f16 scale in half b % 2 of word b / 2) |
//! | Q4_0 | cols / 8 (a block's 16 bytes are words 4b..4b+4) | ⌈blocks / 2⌉, as Q8_0 |
//! | Q4_1 | cols / 8, as Q4_0 | blocks (word b: scale in the low half, minimum in the high) |
//! | Q4_K | cols / 8 (a super-block's 128 bytes are words 32s..32s+32) | 4 a super-block (d and dmin, then the 12 bytes of 6-bit scales) |
//! | Q5_0 | cols / 8, as Q4_0 | 2 a block (word 2b: d in the low half; word 2b+1: the 32 fifth bits) |
//! | Q5_1 | cols / 8, as Q4_0 | 2 a block (word 2b: d low, m high; word 2b+1: the fifth bits) |
//! | IQ4_NL | cols / 8, as Q4_0 | ⌈blocks / 2⌉, as Q4_0 |
//! | IQ4_XS | cols / 8 (sub-block b's 16 bytes are words 4b..4b+4) | 2 a super-block (d and the high scale bits, then the four bytes of low scale nibbles) |
//! | Q5_K | cols / 8, as Q4_K | 12 a super-block (d and dmin, the 12 bytes of 6-bit scales, then the 32 bytes of fifth bits: bit j of byte l for value l of sub-block j) |
//! | Q6_K | cols / 8 (a super-block's 128 bytes of low nibbles are words 32s..32s+32) | 21 a super-block (the 64 bytes of 2-bit high parts, the 16 i8 scales, then d) |
//!
//! Memory: Q8_0, Q4_K, Q5_K, Q5_1 and IQ4_XS take exactly their file size; Q6_K 212 bytes a super-block for 210; IQ4_NL like Q4_0; Q4_0 and Q4_1 as well, rounded up
//! to a word a row; Q5_0 takes 24 bytes a block for the file's 22 (its scale is padded to a
//! word, so that the fifth bits sit on one).

use crate::{Format, GpuHolding, StoredMatrix};

/// How a matrix's rows sit in words; the kernels take these numbers as arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WordLayout {
    pub format: Format,
    pub cols: usize,
    /// Words of values a row.
    pub value_words: usize,
    /// Words of scales a row.
    pub scale_words: usize,
}

impl WordLayout {
    /// The layout of `format` rows of `cols` elements; `None` for a format the GPU does not hold
    /// as words (F32 is held dense, others are converted: see the registry) or a row that is not
    /// whole blocks.
    pub fn new(format: Format, cols: usize) -> Option<Self> {
        if !cols.is_multiple_of(format.block_elements().max(32)) || !matches!(format.gpu(), GpuHolding::Words { .. }) {
            return None;
        }
        let blocks = cols / 32;
        let (value_words, scale_words) = match format {
            Format::F16 | Format::BF16 => (cols / 2, 0),
            Format::Q8_0 => (cols / 4, blocks.div_ceil(2)),
            Format::Q4_0 => (cols / 8, blocks.div_ceil(2)),
            Format::Q4_1 => (cols / 8, blocks),
            Format::Q4K => (cols / 8, 4 * (cols / 256)),
            Format::Q5K => (cols / 8, 12 * (cols / 256)),
            Format::Q5_0 | Format::Q5_1 => (cols / 8, 2 * blocks),
            Format::IQ4NL => (cols / 8, blocks.div_ceil(2)),
            Format::IQ4XS => (cols / 8, 2 * (cols / 256)),
            Format::Q6K => (cols / 8, 21 * (cols / 256)),
            Format::F32
            | Format::Q2K
            | Format::Q3K
            | Format::TQ1_0
            | Format::TQ2_0
            | Format::MXFP4
            | Format::IQ2XXS
            | Format::IQ2XS
            | Format::IQ2S
            | Format::IQ3XXS
            | Format::IQ3S
            | Format::IQ1S
            | Format::IQ1M => unreachable!("{} has no word layout (checked above)", format.name()),
        };
        Some(WordLayout { format, cols, value_words, scale_words })
    }

    /// Words a row takes, values and scales together.
    pub fn row_words(&self) -> usize {
        self.value_words + self.scale_words
    }

    /// A small number the kernels branch on at compile time.
    pub const fn format_code(&self) -> u32 {
        format_code(self.format)
    }
}

/// The kernels' name for a format held as words (its registry row's `code`).
///
/// # Panics
/// For a format the GPU does not hold as words.
pub const fn format_code(format: Format) -> u32 {
    match format.gpu() {
        GpuHolding::Words { code } => code,
        GpuHolding::Dense | GpuHolding::Converted(_) => panic!("the GPU does not hold this format as words"),
    }
}

impl StoredMatrix {
    /// The word layout of this matrix's rows, or `None` for a format without one.
    pub fn word_layout(&self) -> Option<WordLayout> {
        WordLayout::new(self.format, self.cols)
    }

    /// Rows `start..start + n` as words (values, then scales; see the module's table).
    ///
    /// # Panics
    /// On a matrix whose format has no word layout, or rows past the end.
    pub fn to_words(&self, start: usize, n: usize) -> Vec<u32> {
        let layout = self.word_layout().expect("this format is not held as words on a GPU");
        assert!(start + n <= self.rows, "rows {start}..{} of {}", start + n, self.rows);
        let mut values = Vec::with_capacity(n * layout.value_words * 4);
        let mut scales = Vec::with_capacity(n * layout.scale_words * 4);
        let bb = self.format.block_bytes();
        for r in start..start + n {
            let (v0, s0) = (values.len(), scales.len());
            for block in self.row(r).chunks_exact(bb) {
                if self.format == Format::Q5_0 {
                    // d, two bytes of padding, the fifth bits; then the nibbles.
                    scales.extend_from_slice(&block[..2]);
                    scales.extend_from_slice(&[0, 0]);
                    scales.extend_from_slice(&block[2..6]);
                    values.extend_from_slice(&block[6..]);
                    continue;
                }
                if self.format == Format::Q6K {
                    // The low nibbles are the values; the high parts, the scales and d (padded
                    // to a word) the scales.
                    values.extend_from_slice(&block[..128]);
                    scales.extend_from_slice(&block[128..210]);
                    scales.extend_from_slice(&[0, 0]);
                    continue;
                }
                let (scale, quants) = match self.format {
                    Format::F16 | Format::BF16 => (&block[..0], block),
                    Format::Q8_0 | Format::Q4_0 | Format::IQ4NL => block.split_at(2),
                    Format::IQ4XS => block.split_at(8),
                    Format::Q4_1 => block.split_at(4),
                    Format::Q4K => block.split_at(16),
                    // d, dmin, the scales and the fifth bits lead the block; the nibbles follow.
                    Format::Q5K => block.split_at(48),
                    Format::Q5_0 | Format::Q6K => unreachable!("laid out above"),
                    Format::Q5_1 => block.split_at(8),
                    Format::F32
                    | Format::Q2K
                    | Format::Q3K
                    | Format::TQ1_0
                    | Format::TQ2_0
                    | Format::MXFP4
            | Format::IQ2XXS
            | Format::IQ2XS
            | Format::IQ2S
            | Format::IQ3XXS
            | Format::IQ3S
            | Format::IQ1S
            | Format::IQ1M => unreachable!("word_layout() returned a layout, so the format has one"),
                };
                scales.extend_from_slice(scale);
                values.extend_from_slice(quants);
            }
            // Pad each row's part to whole words (an odd number of 2-byte scales).
            values.resize(v0 + 4 * layout.value_words, 0);
            scales.resize(s0 + 4 * layout.scale_words, 0);
        }
        values.extend_from_slice(&scales);
        values.chunks_exact(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])).collect()
    }
}

/// Row `r` of a run of `n` rows in words, decoded to f32 as the GPU kernels decode it, sub-block
/// of 32 by sub-block. The kernels are a transcription of this function, and the tests check it
/// against [`dequantize_block`](crate::dequantize_block); the engine's GPU tests check the
/// kernels against the same values.
pub fn decode_row(layout: &WordLayout, words: &[u32], n: usize, r: usize, out: &mut [f32]) {
    let values = &words[r * layout.value_words..(r + 1) * layout.value_words];
    let scales = &words[n * layout.value_words + r * layout.scale_words..][..layout.scale_words];
    let half = |word: u32, high: bool| if high { word >> 16 } else { word & 0xffff };
    let byte = |w: &[u32], i: usize| (w[i / 4] >> (8 * (i % 4))) & 0xff;
    for (b, y) in out[..layout.cols].chunks_exact_mut(32).enumerate() {
        match layout.format {
            Format::F16 => {
                for (e, y) in y.iter_mut().enumerate() {
                    *y = f16_bits_to_f32(half(values[16 * b + e / 2], e % 2 == 1));
                }
            }
            Format::BF16 => {
                for (e, y) in y.iter_mut().enumerate() {
                    *y = f32::from_bits(half(values[16 * b + e / 2], e % 2 == 1) << 16);
                }
            }
            Format::Q8_0 => {
                let d = f16_bits_to_f32(half(scales[b / 2], b % 2 == 1));
                for (e, y) in y.iter_mut().enumerate() {
                    let q = byte(&values[8 * b..], e);
                    *y = (q as f32 - 256.0 * (q >> 7) as f32) * d;
                }
            }
            Format::Q4_0 | Format::Q4_1 => {
                let (d, m) = if layout.format == Format::Q4_0 {
                    (f16_bits_to_f32(half(scales[b / 2], b % 2 == 1)), 0.0)
                } else {
                    (f16_bits_to_f32(half(scales[b], false)), f16_bits_to_f32(half(scales[b], true)))
                };
                for (e, y) in y.iter_mut().enumerate() {
                    let q = (byte(&values[4 * b..], e % 16) >> (4 * (e / 16) as u32)) & 0xf;
                    *y = if layout.format == Format::Q4_0 { (q as f32 - 8.0) * d } else { q as f32 * d + m };
                }
            }
            Format::Q5_0 | Format::Q5_1 => {
                let (head, qh) = (scales[2 * b], scales[2 * b + 1]);
                let d = f16_bits_to_f32(half(head, false));
                for (e, y) in y.iter_mut().enumerate() {
                    let low = (byte(&values[4 * b..], e % 16) >> (4 * (e / 16) as u32)) & 0xf;
                    let q = (low | (((qh >> e) & 1) << 4)) as f32;
                    *y = if layout.format == Format::Q5_0 { (q - 16.0) * d } else { q * d + f16_bits_to_f32(half(head, true)) };
                }
            }
            Format::IQ4NL | Format::IQ4XS => {
                let d = if layout.format == Format::IQ4NL {
                    f16_bits_to_f32(half(scales[b / 2], b % 2 == 1))
                } else {
                    let (s, j) = (b / 8, b % 8);
                    let head = scales[2 * s];
                    let low = (byte(&scales[2 * s + 1..], j / 2) >> (4 * (j % 2) as u32)) & 0xf;
                    let high = ((head >> 16) >> (2 * j as u32)) & 3;
                    f16_bits_to_f32(half(head, false)) * ((low | (high << 4)) as i32 - 32) as f32
                };
                for (e, y) in y.iter_mut().enumerate() {
                    let q = (byte(&values[4 * b..], e % 16) >> (4 * (e / 16) as u32)) & 0xf;
                    *y = d * crate::formats::IQ4_LEVELS[q as usize] as f32;
                }
            }
            Format::Q4K | Format::Q5K => {
                let (s, j) = (b / 8, b % 8);
                let stride = if layout.format == Format::Q4K { 4 } else { 12 };
                let head = &scales[stride * s..stride * s + stride];
                let (d, dmin) = (f16_bits_to_f32(half(head[0], false)), f16_bits_to_f32(half(head[0], true)));
                let k = |i: usize| byte(&head[1..], i);
                let (sc, mn) = if j < 4 {
                    (k(j) & 63, k(j + 4) & 63)
                } else {
                    ((k(j + 4) & 0xf) | ((k(j - 4) >> 6) << 4), (k(j + 4) >> 4) | ((k(j) >> 6) << 4))
                };
                let (d1, m1) = (d * sc as f32, dmin * mn as f32);
                for (e, y) in y.iter_mut().enumerate() {
                    let low = (byte(&values[32 * s + 8 * (j / 2)..], e) >> (4 * (j % 2) as u32)) & 0xf;
                    let fifth = if layout.format == Format::Q5K { ((byte(&head[4..], e) >> j) & 1) << 4 } else { 0 };
                    *y = d1 * (low | fifth) as f32 - m1;
                }
            }
            Format::Q6K => {
                // Sub-block t of super-block s: half n, quarter q (which nibble of which 32 low
                // bytes, which 2 bits of the high parts); a scale for each 16 values.
                let (s, t) = (b / 8, b % 8);
                let (n, q) = (t / 4, t % 4);
                let head = &scales[21 * s..21 * s + 21];
                let d = f16_bits_to_f32(half(head[20], false));
                let sc = |i: usize| (byte(&head[16..], i) as u8 as i8) as f32;
                let low = &values[32 * s + 16 * n + 8 * (q % 2)..];
                for (l, y) in y.iter_mut().enumerate() {
                    let nibble = (byte(low, l) >> (4 * (q / 2) as u32)) & 0xf;
                    let high = (byte(&head[8 * n..], l) >> (2 * q as u32)) & 3;
                    let v = (nibble | (high << 4)) as i32 - 32;
                    *y = d * sc(8 * n + l / 16 + 2 * q) * v as f32;
                }
            }
            Format::F32
            | Format::Q2K
            | Format::Q3K
            | Format::TQ1_0
            | Format::TQ2_0
            | Format::MXFP4
            | Format::IQ2XXS
            | Format::IQ2XS
            | Format::IQ2S
            | Format::IQ3XXS
            | Format::IQ3S
            | Format::IQ1S
            | Format::IQ1M => unreachable!("{:?} has no word layout", layout.format),
        }
    }
}

/// IEEE half to single, with bit operations only (what a GPU without f16 support does).
pub fn f16_bits_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000) << 16;
    let exp = (h >> 10) & 0x1f;
    let mant = h & 0x3ff;
    if exp == 0 {
        // Zero and subnormals: mant · 2⁻²⁴, exact in f32.
        let magnitude = mant as f32 * (1.0 / 16_777_216.0);
        if sign != 0 { -magnitude } else { magnitude }
    } else if exp == 31 {
        f32::from_bits(sign | 0x7f80_0000 | (mant << 13))
    } else {
        f32::from_bits(sign | ((exp + 112) << 23) | (mant << 13))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    #[test]
    fn the_half_decoder_agrees_with_the_half_crate_on_every_value() {
        for h in 0..=u16::MAX {
            let (ours, theirs) = (f16_bits_to_f32(h as u32), f16::from_bits(h).to_f32());
            assert!(ours.to_bits() == theirs.to_bits() || (ours.is_nan() && theirs.is_nan()), "{h:#06x}");
        }
    }

    #[test]
    fn words_decode_to_the_values_of_the_blocks_in_every_format() {
        // Three rows of 512 (two Q4_K super-blocks, an even count of small blocks) and rows of
        // 96 (three blocks: an odd number of 2-byte scales pads a row's scale words).
        let mut seed = 11u64;
        for (rows, cols) in [(3usize, 512usize), (5, 96)] {
            for format in [Format::F16, Format::BF16, Format::Q8_0, Format::Q4_0, Format::Q4_1, Format::Q4K, Format::Q5K, Format::Q5_0, Format::Q5_1, Format::IQ4NL, Format::IQ4XS, Format::Q6K] {
                if !cols.is_multiple_of(format.block_elements()) {
                    continue;
                }
                seed += 1;
                let m = crate::tests::random_matrix(format, rows, cols, seed);
                let layout = m.word_layout().unwrap();
                let exact = m.to_f32();
                // The whole matrix, and a run of rows from the middle.
                for (start, n) in [(0, rows), (1, rows - 2)] {
                    let words = m.to_words(start, n);
                    assert_eq!(words.len(), n * layout.row_words());
                    let mut row = vec![0f32; cols];
                    for r in 0..n {
                        decode_row(&layout, &words, n, r, &mut row);
                        let want = &exact[(start + r) * cols..(start + r + 1) * cols];
                        for (a, b) in row.iter().zip(want) {
                            assert!(a.to_bits() == b.to_bits(), "{format:?} row {r}: {a} vs {b}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn words_take_the_size_of_the_file() {
        for (format, cols) in [(Format::Q8_0, 576), (Format::Q4K, 1536), (Format::Q5K, 1536), (Format::Q4_0, 896), (Format::F16, 64), (Format::Q5_1, 576), (Format::IQ4XS, 768)] {
            let layout = WordLayout::new(format, cols).unwrap();
            assert_eq!(4 * layout.row_words(), cols / format.block_elements() * format.block_bytes(), "{format:?}");
        }
        // Q5_0's scale is padded to a word: 24 bytes a block for the file's 22.
        assert_eq!(4 * WordLayout::new(Format::Q5_0, 576).unwrap().row_words(), 576 / 32 * 24);
        assert_eq!(WordLayout::new(Format::F32, 64), None);
        assert_eq!(WordLayout::new(Format::Q4K, 96), None);
    }
}
