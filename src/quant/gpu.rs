//! Stored weights on the GPU backends (native wgpu, WebGPU): the CubeCL kernels that read a
//! matrix from its blocks, and the burn operation around them.
//!
//! A matrix goes to the device as 32-bit words (`cqa_quant::WordLayout`: the file's bytes, the
//! values and the f16 scales in two aligned streams), in chunks of rows that each fit one
//! storage-buffer binding. Three kernels read them, all through the same block decoder:
//!
//! - `matvec`: `x · Wᵀ` for up to [`MATVEC_MAX_ROWS`] rows of x (decode): one row of W per 32
//!   threads, each taking every 32nd word of the row (neighbouring threads read neighbouring
//!   words), summed in workgroup memory. W is read in its stored size.
//! - `dequantize`: a panel of W's rows to f32, for burn's tiled matmul to multiply (prefill,
//!   scoring, and the backward pass). The f32 copy never exceeds [`PANEL_FLOATS`].
//! - `embed`: rows of W picked by token ids (the embedding lookup).
//!
//! For training, the operation has its own backward pass, `g · W` from the same words, so the
//! frozen base stays in its blocks (QLoRA) as on the CPU (`op`).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Dispatch, backend_extension};
use burn::backend::{AutodiffBackend, TensorMetadata};
use burn::tensor::{DType, Int, Shape, Slice, Tensor, TensorData};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use super::{MAX_CHUNK_BYTES, PANEL_FLOATS};
use cqa_quant::{Format, StoredMatrix, WordLayout, format_code};
use cubecl::calculate_cube_count_elemwise;
use cubecl::prelude::*;

/// The most rows of x the matrix-vector kernel takes; past it, a tiled matmul on a dequantized
/// panel is faster.
pub const MATVEC_MAX_ROWS: usize = 4;

// The formats, as the kernels branch on them at compile time.
const F16: u32 = format_code(Format::F16);
const BF16: u32 = format_code(Format::BF16);
const Q8_0: u32 = format_code(Format::Q8_0);
const Q4_0: u32 = format_code(Format::Q4_0);
const Q4_1: u32 = format_code(Format::Q4_1);
const Q4K: u32 = format_code(Format::Q4K);
const Q5K: u32 = format_code(Format::Q5K);
const Q5_0: u32 = format_code(Format::Q5_0);
const Q5_1: u32 = format_code(Format::Q5_1);
const IQ4NL: u32 = format_code(Format::IQ4NL);
const IQ4XS: u32 = format_code(Format::IQ4XS);
const Q6K: u32 = format_code(Format::Q6K);

/// IQ4_NL's and IQ4_XS's sixteen levels as signed bytes, four a word (`formats::IQ4_LEVELS`).
#[cfg_attr(not(test), allow(dead_code))]
const IQ4_LEVEL_WORDS: [u32; 4] = {
    let levels = cqa_quant::IQ4_LEVELS;
    let mut words = [0u32; 4];
    let mut i = 0;
    while i < 16 {
        words[i / 4] |= ((levels[i] as u8) as u32) << (8 * (i % 4));
        i += 1;
    }
    words
};

/// Threads a row of W gets in the matrix-vector kernel, and rows a workgroup takes.
pub(crate) const LANES: u32 = 32;
pub(crate) const ROWS_PER_CUBE: u32 = 4;

/// Where a 32-value block starts, and how its integers become values: `q · scale + offset`.
#[derive(CubeType)]
struct Block {
    scale: f32,
    offset: f32,
    /// The block's first value word.
    values: usize,
    /// Q4_K: which nibble (0 or 4) of each byte holds this block.
    shift: u32,
    /// Q5_0 / Q5_1: the fifth bit of each of the 32 values (bit e for value e).
    high: u32,
    /// Q6_K: the scale of values 16..32 (`scale` is that of values 0..16).
    scale_high: f32,
    /// Q6_K: the first of the 8 words that hold the values' 2-bit high parts, one byte a value,
    /// and where in each byte this block's two bits sit. Q5_K: the same for its fifth bits (one
    /// bit a sub-block in each byte).
    high_words: usize,
    high_shift: u32,
}

#[cube]
fn f16_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u32) << 16u32;
    let exp = (h >> 10u32) & 0x1fu32;
    let mant = h & 0x3ffu32;
    let mut out = f32::reinterpret(sign | ((exp + 112u32) << 23u32) | (mant << 13u32));
    if exp == 0u32 {
        // Zero and subnormals: mant · 2⁻²⁴.
        let magnitude = f32::cast_from(mant) * 0.000000059604645f32;
        out = if sign != 0u32 { -magnitude } else { magnitude };
    } else if exp == 31u32 {
        out = f32::reinterpret(sign | 0x7f80_0000u32 | (mant << 13u32));
    }
    out
}

#[cube]
fn byte_of(word: u32, i: usize) -> u32 {
    (word >> (8u32 * (i as u32 % 4u32))) & 0xffu32
}

/// Byte `b` of a word as a signed integer, in f32.
#[cube]
fn signed_byte(b: u32) -> f32 {
    f32::cast_from(b) - 256.0f32 * f32::cast_from(b >> 7u32)
}

/// Q6_K: `d · scales[i]` of the super-block whose scale words start at `head` (the high parts'
/// 16 words, the 16 i8 scales, then d).
#[cube]
fn q6k_scale(words: &[u32], head: usize, i: usize) -> f32 {
    f16_to_f32(words[head + 20] & 0xffffu32) * signed_byte(byte_of(words[head + 16 + i / 4], i))
}

/// Block `b` of row `r`, in a chunk of `rows` rows (see `cqa_quant::WordLayout`).
#[cube]
#[allow(unused_assignments)]
fn block(words: &[u32], rows: usize, r: usize, b: usize, value_words: usize, scale_words: usize, #[comptime] format: u32) -> Block {
    let row_values = r * value_words;
    let row_scales = rows * value_words + r * scale_words;
    let mut scale = 1.0f32;
    let mut offset = 0.0f32;
    let mut values = row_values;
    let mut shift = 0u32;
    let mut high = 0u32;
    let mut scale_high = 0.0f32;
    let mut high_words = 0usize;
    let mut high_shift = 0u32;
    if comptime![format == F16 || format == BF16] {
        values = row_values + 16 * b;
    } else if comptime![format == Q8_0 || format == Q4_0 || format == IQ4NL] {
        values = row_values + if comptime![format == Q8_0] { 8 * b } else { 4 * b };
        let word = words[row_scales + b / 2];
        scale = f16_to_f32((word >> (16u32 * (b as u32 % 2u32))) & 0xffffu32);
    } else if comptime![format == Q4_1] {
        values = row_values + 4 * b;
        let word = words[row_scales + b];
        scale = f16_to_f32(word & 0xffffu32);
        offset = f16_to_f32(word >> 16u32);
    } else if comptime![format == Q5_0 || format == Q5_1] {
        // Q5_0 / Q5_1: the nibbles as Q4_0's; the scale word (d, and m for Q5_1), then the
        // fifth bits. Q5_0's offset of −16 is taken in `element_value`, as Q4_0's −8.
        values = row_values + 4 * b;
        let word = words[row_scales + 2 * b];
        scale = f16_to_f32(word & 0xffffu32);
        if comptime![format == Q5_1] {
            offset = f16_to_f32(word >> 16u32);
        }
        high = words[row_scales + 2 * b + 1];
    } else if comptime![format == IQ4XS] {
        // IQ4_XS: super-block s, sub-block j; d and the high scale bits, then the low nibbles.
        let s = b / 8;
        let j = b % 8;
        let head = words[row_scales + 2 * s];
        let low = (byte_of(words[row_scales + 2 * s + 1], j / 2) >> (4u32 * (j as u32 % 2u32))) & 0xfu32;
        let high = ((head >> 16u32) >> (2u32 * j as u32)) & 3u32;
        scale = f16_to_f32(head & 0xffffu32) * (f32::cast_from(low | (high << 4u32)) - 32.0f32);
        values = row_values + 4 * b;
    } else if comptime![format == Q4K || format == Q5K] {
        // Q4_K / Q5_K: super-block s, sub-block j; d and dmin, then the 12 bytes of 6-bit scales
        // (and for Q5_K the 32 bytes of fifth bits, bit j of byte l for value l).
        let s = b / 8;
        let j = b % 8;
        let head = row_scales + comptime![if format == Q4K { 4usize } else { 12usize }] * s;
        let d = f16_to_f32(words[head] & 0xffffu32);
        let dmin = f16_to_f32(words[head] >> 16u32);
        let scale_byte_j = byte_of(words[head + 1 + j / 4], j);
        let mut sc = 0u32;
        let mut mn = 0u32;
        if j < 4 {
            sc = scale_byte_j & 63u32;
            mn = byte_of(words[head + 1 + (j + 4) / 4], j + 4) & 63u32;
        } else {
            let high = byte_of(words[head + 1 + (j + 4) / 4], j + 4);
            let low_sc = byte_of(words[head + 1 + (j - 4) / 4], j - 4);
            sc = (high & 0xfu32) | ((low_sc >> 6u32) << 4u32);
            mn = (high >> 4u32) | ((scale_byte_j >> 6u32) << 4u32);
        }
        scale = d * f32::cast_from(sc);
        offset = -(dmin * f32::cast_from(mn));
        values = row_values + 32 * s + 8 * (j / 2);
        shift = 4u32 * (j as u32 % 2u32);
        high_words = head + 4;
        high_shift = j as u32;
    } else if comptime![format == Q6K] {
        // Q6_K: super-block s, half n, quarter q: the low nibbles of run q % 2 of the half's 64
        // bytes (high nibbles for q ≥ 2), bits 2q of the half's 32 bytes of high parts, and a
        // scale for each 16 values.
        let s = b / 8;
        let n = (b % 8) / 4;
        let q = b % 4;
        let head = row_scales + 21 * s;
        scale = q6k_scale(words, head, 8 * n + 2 * q);
        scale_high = q6k_scale(words, head, 8 * n + 2 * q + 1);
        values = row_values + 32 * s + 16 * n + 8 * (q % 2);
        shift = 4u32 * (q as u32 / 2u32);
        high_words = head + 8 * n;
        high_shift = 2u32 * q as u32;
    }
    Block { scale, offset, values, shift, high, scale_high, high_words, high_shift }
}

/// Q6_K value `k` of a low-nibble word and its high-parts word, before its scale.
#[cube]
fn q6k_value(word: u32, high_word: u32, k: usize, shift: u32, high_shift: u32) -> f32 {
    let k = k as u32;
    let low = (word >> (8u32 * k + shift)) & 0xfu32;
    let high = (high_word >> (8u32 * k + high_shift)) & 3u32;
    f32::cast_from(low | (high << 4u32)) - 32.0f32
}

/// Words a 32-value block's values take.
const fn words_per_block(format: u32) -> usize {
    match format {
        F16 | BF16 => 16,
        Q8_0 | Q4K | Q5K | Q6K => 8,
        _ => 4,
    }
}

/// Values one word of a block holds.
const fn values_per_word(format: u32) -> usize {
    32 / words_per_block(format)
}

/// Where value `k` of word `j` sits in its block (Q4_0 and Q4_1: byte i holds element i in its
/// low nibble and element i + 16 in its high one).
#[cube]
fn element_index(j: usize, k: usize, #[comptime] format: u32) -> usize {
    let mut e = j * comptime![values_per_word(format)] + k;
    if comptime![format == Q4_0 || format == Q4_1 || format == Q5_0 || format == Q5_1 || format == IQ4NL || format == IQ4XS] {
        e = if k < 4 { 4 * j + k } else { 16 + 4 * j + k - 4 };
    }
    e
}

/// Value `k` of a block's word, before its scale: the integer, or the 16-bit float itself.
/// `fifth`: Q5_0 / Q5_1's fifth bit of this value, already in place (0 or 16).
#[cube]
#[allow(unused_assignments)]
fn element_value(word: u32, k: usize, shift: u32, fifth: u32, #[comptime] format: u32) -> f32 {
    let k = k as u32;
    let mut q = 0.0f32;
    if comptime![format == F16 || format == BF16] {
        let half = (word >> (16u32 * k)) & 0xffffu32;
        if comptime![format == F16] {
            q = f16_to_f32(half);
        } else {
            q = f32::reinterpret(half << 16u32);
        }
    } else if comptime![format == Q8_0] {
        let byte = (word >> (8u32 * k)) & 0xffu32;
        q = f32::cast_from(byte) - 256.0f32 * f32::cast_from(byte >> 7u32);
    } else if comptime![format == Q4_0 || format == Q4_1] {
        let nibble = (word >> (8u32 * (k % 4u32) + 4u32 * (k / 4u32))) & 0xfu32;
        q = f32::cast_from(nibble);
        if comptime![format == Q4_0] {
            q -= 8.0f32;
        }
    } else if comptime![format == IQ4NL || format == IQ4XS] {
        let nibble = (word >> (8u32 * (k % 4u32) + 4u32 * (k / 4u32))) & 0xfu32;
        q = iq4_level(nibble);
    } else if comptime![format == Q5_0 || format == Q5_1] {
        let nibble = (word >> (8u32 * (k % 4u32) + 4u32 * (k / 4u32))) & 0xfu32;
        q = f32::cast_from(nibble | fifth);
        if comptime![format == Q5_0] {
            q -= 16.0f32;
        }
    } else {
        // Q4_K, Q5_K: the nibble `shift` picks, and Q5_K's fifth bit (0 for Q4_K).
        let nibble = (word >> (8u32 * k + shift)) & 0xfu32;
        q = f32::cast_from(nibble | fifth);
    }
    q
}

/// IQ4_NL / IQ4_XS level `n` (0..16), from the four words of signed bytes.
/// (The words are `IQ4_LEVEL_WORDS`, written out for the kernel; a test checks they agree.)
#[cube]
fn iq4_level(n: u32) -> f32 {
    let mut word = 0x7159_4535u32;
    if n < 12u32 {
        word = 0x2619_0d01u32;
    }
    if n < 8u32 {
        word = 0xf6ea_ddcfu32;
    }
    if n < 4u32 {
        word = 0xbfad_9881u32;
    }
    let b = (word >> (8u32 * (n % 4u32))) & 0xffu32;
    f32::cast_from(b) - 256.0f32 * f32::cast_from(b >> 7u32)
}

/// The block's 32 values as f32 into `out[o..o + 32]`.
#[cube]
fn block_write(words: &[u32], blk: &Block, out: &mut [f32], o: usize, #[comptime] format: u32) {
    if comptime![format == Q6K] {
        #[unroll]
        for j in 0..8usize {
            let word = words[blk.values + j];
            let high_word = words[blk.high_words + j];
            let scale = if j < 4 { blk.scale } else { blk.scale_high };
            #[unroll]
            for k in 0..4usize {
                out[o + 4 * j + k] = q6k_value(word, high_word, k, blk.shift, blk.high_shift) * scale;
            }
        }
    } else if comptime![format == Q5K] {
        // Byte k of value word j is value 4j + k, and byte k of fifth-bits word j holds its bit.
        #[unroll]
        for j in 0..8usize {
            let word = words[blk.values + j];
            let fifths = words[blk.high_words + j];
            #[unroll]
            for k in 0..4usize {
                let fifth = ((fifths >> (8u32 * k as u32 + blk.high_shift)) & 1u32) << 4u32;
                out[o + 4 * j + k] = element_value(word, k, blk.shift, fifth, format) * blk.scale + blk.offset;
            }
        }
    } else {
        #[unroll]
        for j in 0..comptime![words_per_block(format)] {
            let word = words[blk.values + j];
            #[unroll]
            for k in 0..comptime![values_per_word(format)] {
                let e = element_index(j, k, format);
                let fifth = ((blk.high >> e as u32) & 1u32) << 4u32;
                out[o + e] = element_value(word, k, blk.shift, fifth, format) * blk.scale + blk.offset;
            }
        }
    }
}

/// `Σ W[r, e] · x[xo + e]` over the values of row `r`'s value word `w`: the unit of work of the
/// matrix-vector kernel, so that neighbouring threads read neighbouring words (and x).
///
/// With `scaled`, each input is first multiplied by `g[xo + e]`: the weight of an RMSNorm folded
/// into the product (the decode step's fused kernels); otherwise `g` is not read.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(crate) fn word_dot(
    words: &[u32],
    rows: usize,
    r: usize,
    w: usize,
    value_words: usize,
    scale_words: usize,
    x: &[f32],
    g: &[f32],
    xo: usize,
    #[comptime] format: u32,
    #[comptime] scaled: bool,
) -> f32 {
    let mut acc = 0.0f32;
    let word = words[r * value_words + w];
    if comptime![format == Q6K] {
        // Word j of 32-byte run c of super-block s: in half c / 2, the low nibbles are quarter
        // c % 2 and the high ones quarter c % 2 + 2, elements 4j..4j + 4 of each; their high
        // parts are byte 4j + k of the half's 32, and each 16 values have a scale.
        let s = w / 32;
        let c = (w % 32) / 8;
        let j = w % 8;
        let n = c / 2;
        let q = c % 2;
        let head = rows * value_words + r * scale_words + 21 * s;
        let high_word = words[head + 8 * n + j];
        let low_scale = q6k_scale(words, head, 8 * n + j / 4 + 2 * q);
        let high_scale = q6k_scale(words, head, 8 * n + j / 4 + 2 * q + 4);
        let base = xo + 256 * s + 128 * n + 32 * q + 4 * j;
        #[unroll]
        for k in 0..4usize {
            acc += q6k_value(word, high_word, k, 0u32, 2u32 * q as u32) * low_scale * input(x, g, base + k, scaled);
            acc += q6k_value(word, high_word, k, 4u32, 2u32 * q as u32 + 4u32) * high_scale * input(x, g, base + 64 + k, scaled);
        }
    } else if comptime![format == Q4K || format == Q5K] {
        // Word j of 32-byte run c of super-block s: sub-block 2c in its low nibbles, 2c + 1 in
        // its high ones, elements 4j..4j + 4 of each. Q5_K: their fifth bits are bits 2c and
        // 2c + 1 of byte k of fifth-bits word j.
        let s = w / 32;
        let c = (w % 32) / 8;
        let j = w % 8;
        let low = block(words, rows, r, 8 * s + 2 * c, value_words, scale_words, format);
        let high = block(words, rows, r, 8 * s + 2 * c + 1, value_words, scale_words, format);
        let mut fifths = 0u32;
        if comptime![format == Q5K] {
            fifths = words[low.high_words + j] >> (2u32 * c as u32);
        }
        let base = xo + 256 * s + 64 * c + 4 * j;
        #[unroll]
        for k in 0..4usize {
            let fifth_low = ((fifths >> (8u32 * k as u32)) & 1u32) << 4u32;
            let fifth_high = ((fifths >> (8u32 * k as u32 + 1u32)) & 1u32) << 4u32;
            acc += (element_value(word, k, 0u32, fifth_low, format) * low.scale + low.offset) * input(x, g, base + k, scaled);
            acc += (element_value(word, k, 4u32, fifth_high, format) * high.scale + high.offset) * input(x, g, base + 32 + k, scaled);
        }
    } else {
        let per_block = comptime![words_per_block(format)];
        let b = w / per_block;
        let j = w % per_block;
        let blk = block(words, rows, r, b, value_words, scale_words, format);
        let base = xo + 32 * b;
        #[unroll]
        for k in 0..comptime![values_per_word(format)] {
            let e = element_index(j, k, format);
            let fifth = ((blk.high >> e as u32) & 1u32) << 4u32;
            acc += (element_value(word, k, 0u32, fifth, format) * blk.scale + blk.offset) * input(x, g, base + e, scaled);
        }
    }
    acc
}

/// Input `i` of a product, times the folded norm weight with `scaled`.
#[cube]
fn input(x: &[f32], g: &[f32], i: usize, #[comptime] scaled: bool) -> f32 {
    let mut v = x[i];
    if comptime![scaled] {
        v *= g[i];
    }
    v
}

/// `out[i, r] = Σ_c x[i, c] · W[r, c]` for the `m` rows of x: 32 threads a row of W, each taking
/// every 32nd word of it, summed in workgroup memory.
#[cube(launch_unchecked)]
fn matvec_kernel(
    x: &[f32],
    words: &[u32],
    out: &mut [f32],
    m: u32,
    rows: u32,
    cols: u32,
    value_words: u32,
    scale_words: u32,
    #[comptime] format: u32,
) {
    let rows = rows as usize;
    let cols = cols as usize;
    let value_words = value_words as usize;
    let r = ((CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) * ROWS_PER_CUBE + UNIT_POS_Y) as usize;
    let lane = UNIT_POS_X as usize;
    let unit = UNIT_POS as usize;
    let mut partial = Shared::<[f32]>::new_slice(comptime![(LANES * ROWS_PER_CUBE) as usize]);
    for i in 0..m as usize {
        let mut acc = 0.0f32;
        if r < rows {
            let mut w = lane;
            while w < value_words {
                acc += word_dot(words, rows, r, w, value_words, scale_words as usize, x, x, i * cols, format, false);
                w += LANES as usize;
            }
        }
        partial[unit] = acc;
        sync_cube();
        // A tree over each row's 32 lanes (every thread reaches every barrier).
        if lane < 16 {
            partial[unit] += partial[unit + 16];
        }
        sync_cube();
        if lane < 8 {
            partial[unit] += partial[unit + 8];
        }
        sync_cube();
        if lane < 4 {
            partial[unit] += partial[unit + 4];
        }
        sync_cube();
        if lane < 2 {
            partial[unit] += partial[unit + 2];
        }
        sync_cube();
        if lane == 0 && r < rows {
            out[i * rows + r] = partial[unit] + partial[unit + 1];
        }
        sync_cube();
    }
}

/// Rows `first..first + count` of W as f32, `[count, cols]`: one thread a block.
#[cube(launch_unchecked)]
fn dequantize_kernel(
    words: &[u32],
    out: &mut [f32],
    rows: u32,
    first: u32,
    count: u32,
    cols: u32,
    value_words: u32,
    scale_words: u32,
    #[comptime] format: u32,
) {
    let cols = cols as usize;
    let blocks = cols / 32;
    let t = ABSOLUTE_POS;
    if t < count as usize * blocks {
        let k = t / blocks;
        let b = t % blocks;
        let blk = block(words, rows as usize, first as usize + k, b, value_words as usize, scale_words as usize, format);
        block_write(words, &blk, out, k * cols + 32 * b, format);
    }
}

/// Row `ids[k] - row_start` of this chunk of W for every id; for ids in other chunks, zeros
/// (`clear_others`, where the chunks' outputs are summed) or nothing written (the decode step,
/// whose chunks write disjoint rows of one output).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn embed_kernel(
    ids: &[i32],
    words: &[u32],
    out: &mut [f32],
    count: u32,
    rows: u32,
    row_start: u32,
    cols: u32,
    value_words: u32,
    scale_words: u32,
    #[comptime] format: u32,
    #[comptime] clear_others: bool,
) {
    let cols = cols as usize;
    let blocks = cols / 32;
    let t = ABSOLUTE_POS;
    if t < count as usize * blocks {
        let k = t / blocks;
        let b = t % blocks;
        let o = k * cols + 32 * b;
        let id = ids[k];
        if id >= row_start as i32 && id < (row_start + rows) as i32 {
            let blk = block(words, rows as usize, (id - row_start as i32) as usize, b, value_words as usize, scale_words as usize, format);
            block_write(words, &blk, out, o, format);
        } else if comptime![clear_others] {
            for e in 0..32usize {
                out[o + e] = 0.0f32;
            }
        }
    }
}

/// One chunk of a matrix's rows on the device: which rows, and how their words are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkShape {
    pub layout: WordLayout,
    /// The chunk's first row in the whole matrix.
    pub row_start: usize,
    pub rows: usize,
}

// With burn's `fusion` feature the GPU backend is wrapped in `Fusion`: each product is then an
// opaque operation in its stream, its output described up front (the `#[fusion]` lines), and the
// same kernels run when the stream executes.
#[backend_extension(Cube, Fusion: cfg(feature = "fusion"), Autodiff)]
pub trait PackedMatmulBackend: burn::backend::Backend {
    /// `x · Wᵀ` over the last dimension: `[.., cols]` → `[.., rows]`.
    #[fusion(dtype = x, shape = with_last_dim(x, chunk.rows))]
    fn packed_matmul_transposed(x: FloatTensor<Self>, words: IntTensor<Self>, chunk: ChunkShape) -> FloatTensor<Self>;
    /// `g · W` over the last dimension: `[.., rows]` → `[.., cols]` (the input's gradient).
    #[fusion(dtype = g, shape = with_last_dim(g, chunk.layout.cols))]
    fn packed_matmul(g: FloatTensor<Self>, words: IntTensor<Self>, chunk: ChunkShape) -> FloatTensor<Self>;
    /// Rows picked by id: `[..]` → `[.., cols]`; ids outside the chunk give zeros.
    #[fusion(dtype = DType::F32, shape = with_dim_added(ids, chunk.layout.cols))]
    fn packed_embed(ids: IntTensor<Self>, words: IntTensor<Self>, chunk: ChunkShape) -> FloatTensor<Self>;
}

/// `shape` with its last dimension set to `d`.
fn with_last_dim(shape: &Shape, d: usize) -> Shape {
    let mut dims = shape.to_vec();
    *dims.last_mut().expect("a tensor with a last dimension") = d;
    Shape::from(dims)
}

/// `shape` with a last dimension of `d` added.
#[cfg_attr(not(feature = "fusion"), allow(dead_code))]
fn with_dim_added(shape: &Shape, d: usize) -> Shape {
    let mut dims = shape.to_vec();
    dims.push(d);
    Shape::from(dims)
}

/// Rows `first..first + count` of a chunk as an f32 `[count, cols]` tensor.
fn dequantize_rows(words: &CubeTensor, chunk: ChunkShape, first: usize, count: usize) -> CubeTensor {
    let cols = chunk.layout.cols;
    let out = empty_device_dtype(words.client.clone(), words.device.clone(), Shape::new([count, cols]), DType::F32);
    let (cube_count, cube_dim) = elementwise_launch(words, count * cols / 32);
    unsafe {
        dequantize_kernel::launch_unchecked(
            &words.client,
            cube_count,
            cube_dim,
            words.clone().into_buffer_arg(),
            out.clone().into_buffer_arg(),
            chunk.rows as u32,
            first as u32,
            count as u32,
            cols as u32,
            chunk.layout.value_words as u32,
            chunk.layout.scale_words as u32,
            chunk.layout.format_code(),
        );
    }
    out
}

/// Row panels of a chunk small enough to expand: `(first, count)`.
fn panels(chunk: ChunkShape) -> impl Iterator<Item = (usize, usize)> {
    let per_panel = (PANEL_FLOATS / chunk.layout.cols).max(1);
    (0..chunk.rows).step_by(per_panel).map(move |first| (first, per_panel.min(chunk.rows - first)))
}

/// A launch of one thread an item over `n` items (at least one) on `like`'s device.
pub(crate) fn elementwise_launch(like: &CubeTensor, n: usize) -> (CubeCount, CubeDim) {
    let dim = CubeDim::new(&like.client, n.max(1));
    (calculate_cube_count_elemwise(&like.client, n.max(1), dim), dim)
}

/// `[.., d]` as `[m, d]`, with the leading dims kept to restore.
fn flatten(x: CubeTensor) -> (CubeTensor, Vec<usize>, usize) {
    let dims = x.shape().to_vec();
    let d = *dims.last().expect("a tensor with a last dimension");
    let m = dims.iter().product::<usize>() / d.max(1);
    let x = into_contiguous(CubeBackend::float_reshape(x, Shape::new([m, d])));
    (x, dims, m)
}

fn unflatten(y: CubeTensor, dims: Vec<usize>, d: usize) -> CubeTensor {
    CubeBackend::float_reshape(y, with_last_dim(&Shape::from(dims), d))
}

impl PackedMatmulBackend for CubeBackend {
    fn packed_matmul_transposed(x: CubeTensor, words: CubeTensor, chunk: ChunkShape) -> CubeTensor {
        assert_eq!(x.dtype, DType::F32, "stored weights on the GPU multiply f32 activations");
        let (x, dims, m) = flatten(x);
        assert_eq!(x.shape()[1], chunk.layout.cols, "x's last dimension must be the weight's input width");
        let rows = chunk.rows;
        let y = if m <= MATVEC_MAX_ROWS {
            let out = empty_device_dtype(x.client.clone(), x.device.clone(), Shape::new([m, rows]), DType::F32);
            let cubes = rows.div_ceil(ROWS_PER_CUBE as usize);
            let cx = cubes.min(32768);
            let count = CubeCount::Static(cx as u32, cubes.div_ceil(cx) as u32, 1);
            // The indices stay inside the buffers by construction (tests in this module), and
            // WebGPU and wgpu bound every access regardless.
            unsafe {
                matvec_kernel::launch_unchecked(
                    &x.client,
                    count,
                    CubeDim::new_2d(LANES, ROWS_PER_CUBE),
                    x.clone().into_buffer_arg(),
                    words.into_buffer_arg(),
                    out.clone().into_buffer_arg(),
                    m as u32,
                    rows as u32,
                    chunk.layout.cols as u32,
                    chunk.layout.value_words as u32,
                    chunk.layout.scale_words as u32,
                    chunk.layout.format_code(),
                );
            }
            out
        } else {
            let parts: Vec<CubeTensor> = panels(chunk)
                .map(|(first, count)| {
                    let w = dequantize_rows(&words, chunk, first, count);
                    CubeBackend::float_matmul(x.clone(), CubeBackend::float_transpose(w))
                })
                .collect();
            if parts.len() == 1 { parts.into_iter().next().unwrap() } else { CubeBackend::float_cat(parts, 1) }
        };
        unflatten(y, dims, rows)
    }

    fn packed_matmul(g: CubeTensor, words: CubeTensor, chunk: ChunkShape) -> CubeTensor {
        let (g, dims, _) = flatten(g);
        assert_eq!(g.shape()[1], chunk.rows, "g's last dimension must be the weight's row count");
        let mut sum: Option<CubeTensor> = None;
        for (first, count) in panels(chunk) {
            let w = dequantize_rows(&words, chunk, first, count);
            let g_panel = CubeBackend::float_slice(g.clone(), &[Slice::from(..), Slice::from(first..first + count)]);
            let part = CubeBackend::float_matmul(g_panel, w);
            sum = Some(match sum {
                Some(s) => CubeBackend::float_add(s, part),
                None => part,
            });
        }
        unflatten(sum.expect("a chunk has rows"), dims, chunk.layout.cols)
    }

    fn packed_embed(ids: CubeTensor, words: CubeTensor, chunk: ChunkShape) -> CubeTensor {
        assert_eq!(ids.dtype, DType::I32, "token ids on the GPU are i32");
        let mut dims = ids.shape().to_vec();
        let n: usize = dims.iter().product();
        let ids = into_contiguous(ids);
        let cols = chunk.layout.cols;
        let out = empty_device_dtype(ids.client.clone(), ids.device.clone(), Shape::new([n, cols]), DType::F32);
        let (cube_count, cube_dim) = elementwise_launch(&ids, n * cols / 32);
        unsafe {
            embed_kernel::launch_unchecked(
                &ids.client,
                cube_count,
                cube_dim,
                ids.clone().into_buffer_arg(),
                words.into_buffer_arg(),
                out.clone().into_buffer_arg(),
                n as u32,
                chunk.rows as u32,
                chunk.row_start as u32,
                cols as u32,
                chunk.layout.value_words as u32,
                chunk.layout.scale_words as u32,
                chunk.layout.format_code(),
                true,
            );
        }
        dims.push(cols);
        CubeBackend::float_reshape(out, Shape::from(dims))
    }
}

impl<B: PackedMatmulBackend, C: CheckpointStrategy> PackedMatmulBackend for Autodiff<B, C> {
    fn packed_matmul_transposed(x: FloatTensor<Self>, words: IntTensor<Self>, chunk: ChunkShape) -> FloatTensor<Self> {
        /// d(x·Wᵀ)/dx applied to the incoming gradient g: `g · W`, from the words.
        #[derive(Debug)]
        struct PackedMatmulBackward;

        impl<B: PackedMatmulBackend> Backward<B, 1> for PackedMatmulBackward {
            type State = (IntTensor<B>, ChunkShape);

            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
                let [parent] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                if let Some(node) = parent {
                    let (words, chunk) = ops.state;
                    grads.register::<B>(node.id, B::packed_matmul(grad, words, chunk));
                }
            }
        }

        match PackedMatmulBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let output = B::packed_matmul_transposed(x.primitive().clone(), words.clone(), chunk);
                prep.finish((words, chunk), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::packed_matmul_transposed(x.into_primitive(), words, chunk)),
        }
    }

    fn packed_matmul(g: FloatTensor<Self>, words: IntTensor<Self>, chunk: ChunkShape) -> FloatTensor<Self> {
        <Self as AutodiffBackend>::from_inner(B::packed_matmul(g.into_primitive(), words, chunk))
    }

    fn packed_embed(ids: IntTensor<Self>, words: IntTensor<Self>, chunk: ChunkShape) -> FloatTensor<Self> {
        <Self as AutodiffBackend>::from_inner(B::packed_embed(ids, words, chunk))
    }
}

/// A stored matrix resident on a GPU device as words, in chunks that each fit one binding.
#[derive(Debug, Clone)]
pub struct DeviceMatrix {
    pub rows: usize,
    pub cols: usize,
    chunks: Vec<(ChunkShape, Tensor<1, Int>)>,
}

impl DeviceMatrix {
    /// Its chunks of rows, each with its words (one storage buffer).
    #[cfg_attr(not(all(feature = "gpu-kernels", not(feature = "fusion"))), allow(dead_code))]
    pub(crate) fn chunks(&self) -> &[(ChunkShape, Tensor<1, Int>)] {
        &self.chunks
    }
}

impl DeviceMatrix {
    /// Copies `matrix` to `device` as words; `None` for an F32 matrix (held dense).
    pub fn upload(matrix: &StoredMatrix, device: &burn::tensor::Device) -> Option<Self> {
        Self::upload_in_chunks(matrix, device, MAX_CHUNK_BYTES)
    }

    fn upload_in_chunks(matrix: &StoredMatrix, device: &burn::tensor::Device, max_chunk_bytes: usize) -> Option<Self> {
        let layout = matrix.word_layout()?;
        let rows_per_chunk = (max_chunk_bytes / (4 * layout.row_words())).max(1);
        let chunks = (0..matrix.rows)
            .step_by(rows_per_chunk)
            .map(|row_start| {
                let rows = rows_per_chunk.min(matrix.rows - row_start);
                // Int tensors are i32 on these backends; the kernels read the same bits as u32.
                let words: Vec<i32> = matrix.to_words(row_start, rows).into_iter().map(|w| w as i32).collect();
                let n = words.len();
                let tensor = Tensor::<1, Int>::from_data(TensorData::new(words, [n]), device);
                // CubeCL queues a write with its bytes until it submits, which it does every
                // 256 tasks: a model's load would otherwise hold most of its words on the host
                // (in the browser, in the engine's memory, which never shrinks) before the first
                // of them reaches the GPU. A failure here shows again at the first read.
                let _ = device.flush();
                (ChunkShape { layout, row_start, rows }, tensor)
            })
            .collect();
        Some(DeviceMatrix { rows: matrix.rows, cols: matrix.cols, chunks })
    }

    /// Bytes the words take on the device.
    pub fn resident_bytes(&self) -> usize {
        self.chunks.iter().map(|(c, _)| 4 * c.rows * c.layout.row_words()).sum()
    }

    /// `x · Wᵀ` over the last dimension.
    ///
    /// # Shapes
    /// - x: `[batch, seq, cols]` → `[batch, seq, rows]`
    pub fn linear(&self, x: Tensor<3>) -> Tensor<3> {
        let parts: Vec<Tensor<3>> = self
            .chunks
            .iter()
            .map(|(chunk, words)| {
                Tensor::from_dispatch(<Dispatch as PackedMatmulBackend>::packed_matmul_transposed(
                    x.clone().into_dispatch(),
                    words.clone().into_dispatch(),
                    *chunk,
                ))
            })
            .collect();
        if parts.len() == 1 { parts.into_iter().next().unwrap() } else { Tensor::cat(parts, 2) }
    }

    /// Rows by id (an embedding lookup).
    ///
    /// # Shapes
    /// - ids: `[batch, seq]` → `[batch, seq, cols]`
    pub fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let mut sum: Option<Tensor<3>> = None;
        for (chunk, words) in &self.chunks {
            let part = Tensor::from_dispatch(<Dispatch as PackedMatmulBackend>::packed_embed(
                ids.clone().into_dispatch(),
                words.clone().into_dispatch(),
                *chunk,
            ));
            // Each id is in one chunk; the others add exact zeros.
            sum = Some(match sum {
                Some(s) => s + part,
                None => part,
            });
        }
        sum.expect("a matrix has rows")
    }
}

#[cfg(all(test, feature = "native"))]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use burn::tensor::Device;
    use half::{bf16, f16};

    fn gpu() -> Option<Device> {
        crate::device::test_gpu()
    }

    /// Random blocks of `format` with small, finite scales.
    fn random_matrix(format: Format, rows: usize, cols: usize, seed: u64) -> StoredMatrix {
        let mut rng = Rng::new(seed);
        let mut bytes = Vec::new();
        // Whole blocks, or runs of 32 plain floats.
        let group = format.block_elements().max(32);
        for _ in 0..rows * cols / group {
            let mut block: Vec<u8> = (0..format.bytes_for(group)).map(|_| (rng.uniform() * 256.0) as u8).collect();
            let mut half = |at: usize, v: f64| block[at..at + 2].copy_from_slice(&f16::from_f64(v).to_le_bytes());
            match format {
                Format::Q8_0 | Format::Q4_0 => half(0, 0.01 + 0.05 * rng.uniform()),
                Format::Q4_1 | Format::Q5_1 => {
                    half(0, 0.01 + 0.05 * rng.uniform());
                    half(2, -0.2 + 0.1 * rng.uniform());
                }
                Format::Q5_0 | Format::IQ4NL => half(0, 0.01 + 0.05 * rng.uniform()),
                Format::IQ4XS => half(0, 0.0002 + 0.0005 * rng.uniform()),
                Format::Q4K | Format::Q5K => {
                    half(0, 0.0005 + 0.001 * rng.uniform());
                    half(2, 0.0005 + 0.001 * rng.uniform());
                }
                Format::Q6K => half(208, 0.0002 + 0.0005 * rng.uniform()),
                Format::F16 => block = (0..32).flat_map(|_| f16::from_f64(rng.normal()).to_le_bytes()).collect(),
                Format::BF16 => block = (0..32).flat_map(|_| bf16::from_f64(rng.normal()).to_le_bytes()).collect(),
                other => unreachable!("{other:?} has no GPU word layout: the registry converts it"),
            }
            bytes.extend(block);
        }
        StoredMatrix::from_bytes(format, rows, cols, bytes).unwrap()
    }

    #[test]
    fn the_kernels_iq4_levels_are_the_registrys() {
        assert_eq!(IQ4_LEVEL_WORDS, [0xbfad_9881, 0xf6ea_ddcf, 0x2619_0d01, 0x7159_4535]);
    }

    /// Every format a GPU holds as words, from the registry.
    fn formats() -> Vec<Format> {
        Format::ALL.into_iter().filter(|f| matches!(f.gpu(), cqa_quant::GpuHolding::Words { .. })).collect()
    }

    fn normals(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        (0..n).map(|_| rng.normal() as f32).collect()
    }

    /// `a · bᵀ` (`transposed`) or `a · b` on the host in f64: a is `[m, k]`.
    fn host_product(a: &[f32], b: &[f32], m: usize, rows: usize, cols: usize, transposed: bool) -> Vec<f32> {
        let (k, n) = if transposed { (cols, rows) } else { (rows, cols) };
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut sum = 0f64;
                for l in 0..k {
                    let w = if transposed { b[j * cols + l] } else { b[l * cols + j] };
                    sum += a[i * k + l] as f64 * w as f64;
                }
                out[i * n + j] = sum as f32;
            }
        }
        out
    }

    fn assert_close(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (i, (a, b)) in got.iter().zip(want).enumerate() {
            assert!((a - b).abs() <= 2e-5 * scale.max(1.0), "{what}, element {i}: {a} vs {b}");
        }
    }

    fn values(t: Tensor<3>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn every_format_multiplies_like_its_dequantized_matrix_in_both_kernels() {
        let Some(device) = gpu() else { return };
        // 70 rows: not a whole number of the matrix-vector kernel's 4-row workgroups.
        let (rows, cols) = (70, 512);
        for (seed, format) in formats().into_iter().enumerate() {
            let matrix = random_matrix(format, rows, cols, seed as u64);
            let dense = matrix.to_f32();
            let on_device = DeviceMatrix::upload(&matrix, &device).unwrap();
            // The file's size (Q5_0: its scale padded to a word, 24 bytes a block for 22; Q6_K:
            // its d, 212 bytes a super-block for 210).
            let want = match format {
                Format::Q5_0 => matrix.resident_bytes() / 22 * 24,
                Format::Q6K => matrix.resident_bytes() / 210 * 212,
                _ => matrix.resident_bytes(),
            };
            assert_eq!(on_device.resident_bytes(), want, "{format:?}");
            // Up to 4 rows: the matrix-vector kernel; 5 and 9: a dequantized panel and burn's
            // matmul.
            for m in [1, 3, MATVEC_MAX_ROWS, MATVEC_MAX_ROWS + 1, 9] {
                let x = normals(m * cols, 100 + m as u64);
                let xt = Tensor::<3>::from_data(TensorData::new(x.clone(), [1, m, cols]), &device);
                let got = values(on_device.linear(xt));
                assert_close(&got, &host_product(&x, &dense, m, rows, cols, true), &format!("{format:?}, m = {m}"));
            }
        }
    }

    #[test]
    fn the_input_gradient_is_g_times_w_from_the_words() {
        let Some(device) = gpu() else { return };
        let (rows, cols, m) = (40, 256, 6);
        // The backward pass always expands panels (g has as many rows as the batch has tokens).
        for (seed, format) in [Format::Q4K, Format::Q8_0].into_iter().enumerate() {
            let matrix = random_matrix(format, rows, cols, 20 + seed as u64);
            let dense = matrix.to_f32();
            let on_device = DeviceMatrix::upload(&matrix, &device.clone().autodiff()).unwrap();
            let autodiff = device.clone().autodiff();
            let x = Tensor::<3>::from_data(TensorData::new(normals(m * cols, 1), [1, m, cols]), &autodiff).require_grad();
            let g = normals(m * rows, 2);
            let upstream = Tensor::<3>::from_data(TensorData::new(g.clone(), [1, m, rows]), &autodiff);
            let grads = (on_device.linear(x.clone()) * upstream).sum().backward();
            let dx = x.grad(&grads).expect("x has a gradient").into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
            assert_close(&dx, &host_product(&g, &dense, m, rows, cols, false), &format!("{format:?}"));
        }
    }

    #[test]
    fn a_matrix_split_in_chunks_looks_up_and_multiplies_as_one() {
        let Some(device) = gpu() else { return };
        let (rows, cols) = (70, 96);
        let matrix = random_matrix(Format::Q4_1, rows, cols, 9);
        let dense = matrix.to_f32();
        // 24 rows a chunk: chunks of 24, 24 and 22 rows.
        let layout = matrix.word_layout().unwrap();
        let split = DeviceMatrix::upload_in_chunks(&matrix, &device, 24 * 4 * layout.row_words()).unwrap();
        assert_eq!(split.chunks.len(), 3);
        assert_eq!(split.resident_bytes(), matrix.resident_bytes());

        let ids = [0, 69, 23, 24, 47, 48, 5];
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids.to_vec(), [1, ids.len()]), &device);
        let got = values(split.embed(tokens));
        let want: Vec<f32> = ids.iter().flat_map(|&id| dense[id as usize * cols..(id as usize + 1) * cols].to_vec()).collect();
        assert_close(&got, &want, "embedding rows across chunks");

        for m in [1, 7, 20] {
            let x = normals(m * cols, 3);
            let got = values(split.linear(Tensor::<3>::from_data(TensorData::new(x.clone(), [1, m, cols]), &device)));
            assert_close(&got, &host_product(&x, &dense, m, rows, cols, true), &format!("chunked product, m = {m}"));
        }
    }
}
