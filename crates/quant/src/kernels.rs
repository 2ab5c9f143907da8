//! CPU products with a [`StoredMatrix`], on every core, SIMD where the CPU has it.
//!
//! Two paths, because the two shapes are bound by different things:
//! - **decode** (`m < PANEL_MIN_M`, one to a few tokens): memory-bound. Each weight row is read
//!   once, straight from its blocks, and dotted with every x row; rows are split across threads.
//!   The dot keeps sixteen f32 lanes so the compiler emits vector code (Rust never reorders
//!   float sums on its own), built three times on x86-64, chosen at run time: AVX-512, AVX2+FMA
//!   and baseline. In the browser it is the wasm build's SIMD, if enabled, or scalar code.
//!   Inside [`with_int8_activations`] (a generation's decode steps), on CPUs with AVX-512 VNNI,
//!   x is rounded to bytes once per product and the blocks meet it in integers (`vnni.rs`).
//! - **panels** (prefill, scoring, training): compute-bound. Rows are expanded to f32 and
//!   multiplied with the `gemm` crate's kernels, so the expansion costs 1/m of the multiply and
//!   the f32 copy never exceeds a panel. The forward product gives each thread tasks of whole
//!   rows (its own panel, a one-thread gemm); the backward product `y·W`, whose tasks would all
//!   add into the same output, expands one shared panel and runs one threaded gemm on it.

use crate::formats;
use crate::{Format, StoredMatrix};

/// From this many x rows on, expanding a panel and calling gemm beats the fused dot.
const PANEL_MIN_M: usize = 8;

/// `y[m, rows] = x[m, cols] · Wᵀ`.
pub(super) fn matmul_transposed(w: &StoredMatrix, x: &[f32], m: usize) -> Vec<f32> {
    if m < PANEL_MIN_M { decode_xwt(w, x, m) } else { panels_xwt(w, x, m) }
}

/// `g[m, cols] = y[m, rows] · W`.
pub(super) fn matmul(w: &StoredMatrix, y: &[f32], m: usize) -> Vec<f32> {
    let cols = w.cols;
    let mut g = vec![0f32; m * cols];
    for_each_panel(w, |r0, nb, panel| {
        // SAFETY: g is [m, cols]; y[:, r0..r0+nb] is [m, nb] with row stride w.rows; the panel
        // is [nb, cols]. All in bounds; g accumulates (read_dst).
        unsafe {
            gemm::gemm(
                m, cols, nb,
                g.as_mut_ptr(), 1, cols as isize, true,
                y.as_ptr().add(r0), 1, w.rows as isize,
                panel.as_ptr(), 1, cols as isize,
                1.0, 1.0, false, false, false, gemm_parallelism(),
            );
        }
    });
    g
}

/// The forward product in tasks of whole rows: each task expands its rows into a panel of its
/// own thread and multiplies it with a one-thread gemm. A panel shared by all threads and one
/// threaded gemm call was slower: gemm packs a row-major left operand on the calling thread
/// alone before it forks, so the other core waited through the packing of every layer's matrix;
/// here each core packs its own rows, from its own cache.
fn panels_xwt(w: &StoredMatrix, x: &[f32], m: usize) -> Vec<f32> {
    let (rows, cols) = (w.rows, w.cols);
    if cols == 0 {
        return vec![0f32; m * rows]; // gemm writes nothing for an empty sum
    }
    // Left unwritten until the tasks fill it: zeroing 50 MB of logits first cost a serial pass.
    let mut y: Vec<f32> = Vec::with_capacity(m * rows);
    let rows_per_task = task_rows(rows, cols);
    let out = SharedOut(y.as_mut_ptr());
    parallel_tasks(rows.div_ceil(rows_per_task), |t| {
        let r0 = t * rows_per_task;
        let nb = rows_per_task.min(rows - r0);
        with_task_panel(nb * cols, |panel| {
            for (j, row) in panel.chunks_exact_mut(cols).enumerate() {
                expand_row(w, r0 + j, row);
            }
            // SAFETY: y[:, r0..r0+nb] is [m, nb] with row stride `rows`, written by this task
            // alone (tasks own disjoint column ranges of y, which outlives them); x is [m, cols];
            // the panel is [nb, cols], read as its transpose [cols, nb]. All in bounds.
            unsafe {
                gemm::gemm(
                    m, nb, cols,
                    out.at(r0), 1, rows as isize, false,
                    x.as_ptr(), 1, cols as isize,
                    panel.as_ptr(), cols as isize, 1,
                    0.0, 1.0, false, false, false, gemm::Parallelism::None,
                );
            }
        });
    });
    // SAFETY: the tasks together wrote every element: each column range r0..r0+nb of every row
    // (gemm with read_dst false writes its whole destination without reading it).
    unsafe { y.set_len(m * rows) };
    y
}

/// Rows per forward task: the count that finishes soonest on `threads()` cores, by a simple
/// cost model of gemm's register tiles (64 rows at full speed; a ragged 16, 32 or 48 rows
/// slower per row, as measured in profiles), with each task's panel at most ~512 KiB (it stays
/// in the core's L2 cache while gemm packs and reads it) but never under 64 rows.
fn task_rows(rows: usize, cols: usize) -> usize {
    let largest = ((TASK_PANEL_VALUES / cols.max(1)) / 16 * 16).max(64).min(rows.next_multiple_of(16));
    let tile_cost = |r: usize| {
        let tail = match r % 64 {
            0 => 0.0,
            t if t <= 16 => 16.0 / 0.55,
            t if t <= 32 => 32.0 / 0.8,
            t => t.next_multiple_of(16) as f64 / 0.9,
        };
        (r / 64 * 64) as f64 + tail
    };
    let threads = threads();
    (1..=largest / 16)
        .map(|i| i * 16)
        .map(|r| (rows.div_ceil(r).div_ceil(threads) as f64 * tile_cost(r), r))
        // Soonest; of equals, the larger task (fewer hand-offs).
        .min_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)))
        .map_or(16, |(_, r)| r)
}

/// The output pointer shared by tasks that write disjoint parts of it.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: every task writes only its own elements (see `panels_xwt`).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

const TASK_PANEL_VALUES: usize = 1 << 17;

thread_local! {
    /// Each thread's forward panel, kept between tasks (fresh pages cost more than reuse).
    static TASK_PANEL: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on a scratch slice of `len` values: this thread's kept panel, or a fresh one if it
/// is already in use further up this thread's stack.
fn with_task_panel(len: usize, f: impl FnOnce(&mut [f32])) {
    TASK_PANEL.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
            f(&mut buf[..len])
        }
        Err(_) => f(&mut vec![0f32; len]),
    })
}

/// f32 values expanded at a time: 4 MiB, so a layer's matrix is one panel (one gemm call, one
/// fork-join) while the expanded copy of even a 151936-row embedding stays this small.
const PANEL_VALUES: usize = 1 << 20;

thread_local! {
    /// The expanded panel, kept between calls: a fresh 4 MiB allocation is fresh pages, and
    /// zeroing them cost more than the expansion.
    static PANEL: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Calls `f(first_row, n_rows, panel)` for successive panels of W expanded to f32 (`[n_rows,
/// cols]`, row-major), expanding each on every thread.
fn for_each_panel(w: &StoredMatrix, mut f: impl FnMut(usize, usize, &[f32])) {
    let cols = w.cols;
    let panel_rows = (PANEL_VALUES / cols.max(1)).clamp(1, w.rows.max(1));
    PANEL.with(|cell| {
        let mut buf = cell.borrow_mut();
        if buf.len() < panel_rows * cols {
            buf.resize(panel_rows * cols, 0.0);
        }
        let mut r0 = 0;
        while r0 < w.rows {
            let nb = panel_rows.min(w.rows - r0);
            let panel = &mut buf[..nb * cols];
            let rows_per_task = nb.div_ceil(threads() * 2).max(1);
            parallel_chunks(panel, rows_per_task * cols, |t, chunk| {
                for (j, row) in chunk.chunks_exact_mut(cols).enumerate() {
                    expand_row(w, r0 + t * rows_per_task + j, row);
                }
            });
            f(r0, nb, panel);
            r0 += nb;
        }
    });
}

/// Row `r` of W as f32, the same values as [`StoredMatrix::dequantize_row`] (the same
/// expressions, and `scale`'s f16 decode equals `half`'s), with the format chosen once per row
/// instead of once per block, and built for the widest SIMD the CPU has.
fn expand_row(w: &StoredMatrix, r: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        match x86_level() {
            // SAFETY: the CPU has these features (checked at run time by `x86_level`).
            X86Level::Avx512 => return unsafe { expand_row_avx512(w, r, out) },
            X86Level::Avx2 => return unsafe { expand_row_avx2(w, r, out) },
            X86Level::Baseline => {}
        }
    }
    expand_row_body(w, r, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn expand_row_avx2(w: &StoredMatrix, r: usize, out: &mut [f32]) {
    expand_row_body(w, r, out)
}

/// The block formats written out in AVX-512 (the compiler vectorized the portable loops only
/// half-way, eight lanes and a scalar tail); the same operations, so the same values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn expand_row_avx512(w: &StoredMatrix, r: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    if !matches!(w.format, Format::Q8_0 | Format::Q4_0 | Format::Q4_1) {
        return expand_row_body(w, r, out);
    }
    let row = w.row(r);
    let bb = w.format.block_bytes();
    assert!(out.len() >= row.len() / bb * 32, "expand_row: output shorter than the row");
    let low = _mm512_set1_epi32(0x0f);
    for (i, b) in row.chunks_exact(bb).enumerate() {
        // SAFETY (the loads and stores below): b holds one whole block (bb bytes, checked by
        // chunks_exact); y points at that block's 32 values in out (length asserted above).
        unsafe {
            let y = out.as_mut_ptr().add(i * 32);
            match w.format {
                Format::Q8_0 => {
                    let d = _mm512_set1_ps(formats::scale(b, 0));
                    for half in 0..2 {
                        let q = _mm512_cvtepi8_epi32(_mm_loadu_si128(b.as_ptr().add(2 + 16 * half).cast()));
                        _mm512_storeu_ps(y.add(16 * half), _mm512_mul_ps(_mm512_cvtepi32_ps(q), d));
                    }
                }
                Format::Q4_0 => {
                    let d = _mm512_set1_ps(formats::scale(b, 0));
                    let q = _mm512_cvtepu8_epi32(_mm_loadu_si128(b.as_ptr().add(2).cast()));
                    let eight = _mm512_set1_epi32(8);
                    let lo = _mm512_sub_epi32(_mm512_and_si512(q, low), eight);
                    let hi = _mm512_sub_epi32(_mm512_srli_epi32(q, 4), eight);
                    _mm512_storeu_ps(y, _mm512_mul_ps(_mm512_cvtepi32_ps(lo), d));
                    _mm512_storeu_ps(y.add(16), _mm512_mul_ps(_mm512_cvtepi32_ps(hi), d));
                }
                Format::Q4_1 => {
                    let (d, m) = (_mm512_set1_ps(formats::scale(b, 0)), _mm512_set1_ps(formats::scale(b, 2)));
                    let q = _mm512_cvtepu8_epi32(_mm_loadu_si128(b.as_ptr().add(4).cast()));
                    let lo = _mm512_cvtepi32_ps(_mm512_and_si512(q, low));
                    let hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(q, 4));
                    _mm512_storeu_ps(y, _mm512_add_ps(_mm512_mul_ps(lo, d), m));
                    _mm512_storeu_ps(y.add(16), _mm512_add_ps(_mm512_mul_ps(hi, d), m));
                }
                _ => unreachable!("other formats returned above"),
            }
        }
    }
}

#[inline(always)]
fn expand_row_body(w: &StoredMatrix, r: usize, out: &mut [f32]) {
    w.format.decode(w.row(r), &mut out[..w.cols]);
}

#[cfg(feature = "threads")]
fn gemm_parallelism() -> gemm::Parallelism {
    gemm::Parallelism::Rayon(threads())
}

#[cfg(not(feature = "threads"))]
fn gemm_parallelism() -> gemm::Parallelism {
    gemm::Parallelism::None
}

fn decode_xwt(w: &StoredMatrix, x: &[f32], m: usize) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    if INT8_ACTIVATIONS.get() && crate::vnni::takes(w.format) && w.cols % 32 == 0 && crate::vnni::available() {
        // SAFETY: `vnni::available` checked the CPU's features.
        let rounded = unsafe { crate::vnni::Int8Rows::new(x, m, w.cols) };
        // SAFETY: as above.
        return decode_tasks(w, m, |r0, out| unsafe { crate::vnni::dot_rows(w, r0, out, &rounded, m) });
    }
    // Per x row and block, Σx: the Q4_1 / Q5_1 / Q4_K / Q5_K minimums multiply it, so it is summed
    // once here instead of once per weight row.
    let block_sums: Vec<f32> = if matches!(w.format, Format::Q4_1 | Format::Q5_1 | Format::Q4K | Format::Q5K) {
        x.chunks_exact(32).map(|b| b.iter().sum()).collect()
    } else {
        Vec::new()
    };
    decode_tasks(w, m, |r0, out| dot_rows(w, r0, out, x, &block_sums, m))
}

/// `y[m, rows]` from `fill(r0, out)`, which writes rows `r0..r0 + n` of W's products with the m
/// x rows into `out` (`[n, m]`).
fn decode_tasks(w: &StoredMatrix, m: usize, fill: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    let rows = w.rows;
    // yt is [rows, m] so that each task owns one contiguous run. The tasks go to the spinning
    // pool (spin.rs): decode's products come back to back, too short for rayon's wake-ups.
    let rows_per_task = rows.div_ceil((crate::spin::helpers() + 1) * 4).max(16);
    let mut yt = vec![0f32; rows * m];
    crate::spin::run_chunks(&mut yt, rows_per_task * m, |t, out| fill(t * rows_per_task, out));
    if m == 1 {
        return yt;
    }
    let mut y = vec![0f32; m * rows];
    for r in 0..rows {
        for i in 0..m {
            y[i * rows + r] = yt[r * m + i];
        }
    }
    y
}

/// Whether [`with_int8_activations`] changes anything on this CPU (x86-64 with AVX-512 VNNI).
pub fn int8_activations_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return crate::vnni::available();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

thread_local! {
    /// Whether this thread's decode products take x rounded to 8 bits (`with_int8_activations`).
    static INT8_ACTIVATIONS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with this thread's decode products (fewer than eight rows of x) taking x rounded to
/// bytes, a scale per 32 values, and multiplying it with the weights in integers, as llama.cpp
/// decodes: where the CPU has AVX-512 VNNI and for the formats `vnni.rs` takes; elsewhere the
/// products are the f32 ones. The rounding moves a product by a fraction of a percent of its
/// largest terms, so callers ask for it only where a token is being picked (generation), not
/// where log-probabilities are reported.
pub fn with_int8_activations<R>(f: impl FnOnce() -> R) -> R {
    /// Puts the previous setting back, even if `f` panics.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            INT8_ACTIVATIONS.set(self.0);
        }
    }
    let _restore = Restore(INT8_ACTIVATIONS.replace(true));
    f()
}

/// Fills `out` (`[n, m]`) with rows `r0..r0+n` of W dotted with each of the m x rows.
fn dot_rows(w: &StoredMatrix, r0: usize, out: &mut [f32], x: &[f32], block_sums: &[f32], m: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        match x86_level() {
            // SAFETY: the CPU has these features (checked at run time by `x86_level`).
            X86Level::Avx512 => return unsafe { dot_rows_avx512(w, r0, out, x, block_sums, m) },
            X86Level::Avx2 => return unsafe { dot_rows_avx2(w, r0, out, x, block_sums, m) },
            X86Level::Baseline => {}
        }
    }
    dot_rows_body::<false>(w, r0, out, x, block_sums, m)
}

#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, PartialEq, Eq)]
enum X86Level {
    Baseline,
    Avx2,
    Avx512,
}

/// Whether the dot products with arch files of their own run at AVX-512 (`avx512.rs`) rather
/// than AVX2: the level chosen once for every kernel.
#[cfg(target_arch = "x86_64")]
pub(crate) fn wide_lanes() -> bool {
    x86_level() == X86Level::Avx512
}

#[cfg(target_arch = "x86_64")]
fn x86_level() -> X86Level {
    use std::sync::OnceLock;
    static LEVEL: OnceLock<X86Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        if avx2 && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
            X86Level::Avx512
        } else if avx2 {
            X86Level::Avx2
        } else {
            X86Level::Baseline
        }
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_rows_avx2(w: &StoredMatrix, r0: usize, out: &mut [f32], x: &[f32], block_sums: &[f32], m: usize) {
    dot_rows_body::<true>(w, r0, out, x, block_sums, m)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn dot_rows_avx512(w: &StoredMatrix, r0: usize, out: &mut [f32], x: &[f32], block_sums: &[f32], m: usize) {
    dot_rows_body::<true>(w, r0, out, x, block_sums, m)
}

#[inline(always)]
fn dot_rows_body<const FMA: bool>(w: &StoredMatrix, r0: usize, out: &mut [f32], x: &[f32], block_sums: &[f32], m: usize) {
    let cols = w.cols;
    // Σx is kept per 32 elements, whatever the block size.
    let blocks_per_row = cols / 32;
    for (j, out_row) in out.chunks_exact_mut(m).enumerate() {
        let row = w.row(r0 + j);
        for (i, o) in out_row.iter_mut().enumerate() {
            let xi = &x[i * cols..(i + 1) * cols];
            let sums = || &block_sums[i * blocks_per_row..(i + 1) * blocks_per_row];
            *o = match w.format {
                Format::Q8_0 => formats::q8_0::dot::<FMA>(row, xi),
                Format::Q4_0 => formats::q4_0::dot::<FMA>(row, xi),
                Format::Q4_1 => formats::q4_1::dot::<FMA>(row, xi, sums()),
                Format::Q5_0 => formats::q5_0::dot::<FMA>(row, xi),
                Format::Q5_1 => formats::q5_1::dot::<FMA>(row, xi, sums()),
                Format::Q4K => formats::q4_k::dot::<FMA>(row, xi, sums()),
                Format::Q5K => formats::q5_k::dot::<FMA>(row, xi, sums()),
                Format::Q2K => formats::q2_k::dot::<FMA>(row, xi),
                Format::Q3K => formats::q3_k::dot::<FMA>(row, xi),
                Format::Q6K => formats::q6_k::dot::<FMA>(row, xi),
                Format::IQ4NL => formats::iq4_nl::dot::<FMA>(row, xi),
                Format::IQ4XS => formats::iq4_xs::dot::<FMA>(row, xi),
                // The rest through their decoders: plain floats, and the formats llama.cpp
                // writes for a few tensors of a file, or that are rare.
                Format::F32
                | Format::F16
                | Format::BF16
                | Format::TQ1_0
                | Format::TQ2_0
                | Format::MXFP4
                | Format::IQ2XXS
                | Format::IQ2XS
                | Format::IQ2S
                | Format::IQ3XXS
                | Format::IQ3S
                | Format::IQ1S
                | Format::IQ1M => formats::dot_decoded::<FMA>(w.format, row, xi),
            };
        }
    }
}

// Threads: rayon's pool (the one burn-flex already runs on) natively and in the browser's threaded
// build; the calling thread alone in the single-threaded browser build.
#[cfg(feature = "threads")]
fn threads() -> usize {
    rayon::current_num_threads()
}

#[cfg(not(feature = "threads"))]
fn threads() -> usize {
    1
}

#[cfg(feature = "threads")]
fn parallel_chunks(data: &mut [f32], chunk: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    use rayon::prelude::*;
    data.par_chunks_mut(chunk.max(1)).enumerate().for_each(|(i, c)| f(i, c));
}

#[cfg(feature = "threads")]
fn parallel_tasks(n: usize, f: impl Fn(usize) + Sync + Send) {
    use rayon::prelude::*;
    (0..n).into_par_iter().for_each(f);
}

#[cfg(not(feature = "threads"))]
fn parallel_tasks(n: usize, f: impl Fn(usize) + Sync + Send) {
    (0..n).for_each(f);
}

#[cfg(not(feature = "threads"))]
fn parallel_chunks(data: &mut [f32], chunk: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    data.chunks_mut(chunk.max(1)).enumerate().for_each(|(i, c)| f(i, c));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::scale;
    use half::f16;

    #[test]
    fn expanded_rows_are_the_dequantized_rows_bit_for_bit() {
        for format in crate::tests::FORMATS {
            let w = crate::tests::random_matrix(format, 3, 512, 5);
            let (mut want, mut got) = (vec![0f32; 512], vec![1f32; 512]);
            for r in 0..3 {
                w.dequantize_row(r, &mut want);
                expand_row(&w, r, &mut got);
                assert!(want.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits()), "{format:?} row {r}");
            }
        }
    }

    #[test]
    fn scales_decode_like_half_for_every_f16() {
        for bits in 0..=u16::MAX {
            let want = f16::from_bits(bits).to_f32();
            let got = scale(&bits.to_le_bytes(), 0);
            assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "{bits:#06x}: {got} vs {want}");
        }
    }
}
