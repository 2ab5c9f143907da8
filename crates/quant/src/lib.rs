//! Weight matrices kept in their stored form: ggml blocks (Q8_0, Q4_0, Q4_1, Q4_K, Q6_K) or 16/32-bit
//! floats, row-major `[rows, cols]` as HF stores a linear weight (`[out, in]`), each row a run of
//! whole blocks, bytes exactly as in the file; and the CPU kernels that multiply by them without
//! ever holding them as f32 (`kernels`).
//!
//! Expanding a block gives the values ggml's `dequantize_row_*` gives, so a product computed
//! from the blocks differs from an f32 matmul on the dequantized matrix only in the order of its
//! sums.

mod kernels;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128;
pub mod spin;
mod words;

pub use words::{WordLayout, decode_row, f16_bits_to_f32, format_code};

use half::{bf16, f16};

/// Why a matrix could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantError(pub String);

impl std::fmt::Display for QuantError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for QuantError {}

type Result<T> = std::result::Result<T, QuantError>;

/// How a [`StoredMatrix`] encodes its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoredFormat {
    F32,
    F16,
    BF16,
    /// f16 scale, 32 × i8.
    Q8_0,
    /// f16 scale, 32 × 4-bit, offset 8.
    Q4_0,
    /// f16 scale, f16 minimum, 32 × 4-bit.
    Q4_1,
    /// ggml's Q4_K: super-blocks of 256 (f16 d and dmin, eight 6-bit scale/min pairs, 4-bit
    /// values), 4.5 bits a weight.
    Q4K,
    /// ggml's Q6_K: super-blocks of 256 (128 bytes of low nibbles, 64 of 2-bit high parts,
    /// sixteen i8 scales, one per 16 values, f16 d last), 6.5625 bits a weight.
    Q6K,
}

impl StoredFormat {
    /// Elements per block.
    pub fn block_elements(self) -> usize {
        match self {
            Self::F32 | Self::F16 | Self::BF16 => 32,
            Self::Q8_0 | Self::Q4_0 | Self::Q4_1 => 32,
            Self::Q4K | Self::Q6K => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::F32 => 128,
            Self::F16 | Self::BF16 => 64,
            Self::Q8_0 => 34,
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q4K => 144,
            Self::Q6K => 210,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
            Self::Q8_0 => "Q8_0",
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q4K => "Q4_K",
            Self::Q6K => "Q6_K",
        }
    }
}

/// A `[rows, cols]` matrix in a block format. Immutable once built; shared by `Arc` between a
/// model and its copies (adapters, tied heads).
#[derive(Clone)]
pub struct StoredMatrix {
    pub format: StoredFormat,
    pub rows: usize,
    pub cols: usize,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for StoredMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoredMatrix({} {}×{})", self.format.name(), self.rows, self.cols)
    }
}

impl StoredMatrix {
    /// Wraps encoded bytes, checking that they hold exactly `rows × cols` values.
    pub fn from_bytes(format: StoredFormat, rows: usize, cols: usize, bytes: Vec<u8>) -> Result<Self> {
        let block = format.block_elements();
        if !cols.is_multiple_of(block) {
            return Err(QuantError(format!(
                "a {} matrix needs rows of whole {block}-element blocks, but a row has {cols} elements",
                format.name()
            )));
        }
        let expected = rows * (cols / block) * format.block_bytes();
        if bytes.len() != expected {
            return Err(QuantError(format!(
                "{} data of {} bytes cannot hold a {rows}×{cols} matrix ({expected} bytes)",
                format.name(),
                bytes.len()
            )));
        }
        Ok(StoredMatrix { format, rows, cols, bytes })
    }

    /// Keeps f32 values exactly, 4 bytes each.
    pub fn from_f32(values: &[f32], rows: usize, cols: usize) -> Result<Self> {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self::from_bytes(StoredFormat::F32, rows, cols, bytes)
    }

    /// Quantizes f32 values to Q8_0 as ggml's reference `quantize_row_q8_0` does: per block of
    /// 32, `d = max|x| / 127`, `q = round(x / d)`.
    pub fn quantize_q8_0(values: &[f32], rows: usize, cols: usize) -> Result<Self> {
        if values.len() != rows * cols || !cols.is_multiple_of(32) {
            return Err(QuantError(format!(
                "cannot quantize a {rows}×{cols} matrix to Q8_0: rows must be whole blocks of 32"
            )));
        }
        let mut bytes = Vec::with_capacity(values.len() / 32 * 34);
        for block in values.chunks_exact(32) {
            let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            bytes.extend_from_slice(&f16::from_f32(d).to_le_bytes());
            bytes.extend(block.iter().map(|v| (v * id).round() as i8 as u8));
        }
        Self::from_bytes(StoredFormat::Q8_0, rows, cols, bytes)
    }

    /// The same matrix in Q8_0 (for a backend without kernels for this format): exact for
    /// Q8_0 itself, a requantization otherwise.
    pub fn to_q8_0(&self) -> Result<Self> {
        if self.format == StoredFormat::Q8_0 {
            return Ok(self.clone());
        }
        Self::quantize_q8_0(&self.to_f32(), self.rows, self.cols)
    }

    /// The same matrix with its rows reordered by `reorder`, which maps a row-major buffer of
    /// `rows` rows, `row_len` items each, to the new order. Whole rows move, so the blocks stay
    /// as they are (undoing GGUF's q/k permutation).
    pub fn with_rows_reordered(self, reorder: impl Fn(&[u8], usize) -> Vec<u8>) -> Self {
        let bytes = reorder(&self.bytes, self.row_bytes());
        StoredMatrix { bytes, ..self }
    }

    /// The encoded bytes, row after row.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Bytes this matrix occupies.
    pub fn resident_bytes(&self) -> usize {
        self.bytes.len()
    }

    fn row_bytes(&self) -> usize {
        self.cols / self.format.block_elements() * self.format.block_bytes()
    }

    /// The encoded bytes of row `r`.
    pub(crate) fn row(&self, r: usize) -> &[u8] {
        let n = self.row_bytes();
        &self.bytes[r * n..(r + 1) * n]
    }

    /// Writes row `r` as f32 into `out` (`cols` long).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let row = self.row(r);
        let (be, bb) = (self.format.block_elements(), self.format.block_bytes());
        for (b, y) in row.chunks_exact(bb).zip(out.chunks_exact_mut(be)) {
            dequantize_block(self.format, b, y);
        }
    }

    /// The whole matrix as f32, row-major (for `--weights f32` and merging an adapter).
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        for (r, y) in out.chunks_exact_mut(self.cols).enumerate() {
            self.dequantize_row(r, y);
        }
        out
    }

    /// Rows `ids` as f32, `[ids.len(), cols]` (an embedding lookup).
    pub fn gather_rows(&self, ids: &[usize]) -> Result<Vec<f32>> {
        let mut out = vec![0f32; ids.len() * self.cols];
        for (&id, y) in ids.iter().zip(out.chunks_exact_mut(self.cols)) {
            if id >= self.rows {
                return Err(QuantError(format!("token id {id} is outside the vocabulary of {}", self.rows)));
            }
            self.dequantize_row(id, y);
        }
        Ok(out)
    }

    /// `y = x · Wᵀ`: x is `[m, cols]`, y is `[m, rows]` (a linear layer's forward pass).
    pub fn matmul_transposed(&self, x: &[f32], m: usize) -> Vec<f32> {
        assert_eq!(x.len(), m * self.cols, "x must be [m, cols]");
        kernels::matmul_transposed(self, x, m)
    }

    /// `g = y · W`: y is `[m, rows]`, g is `[m, cols]` (the gradient of a linear layer's input).
    pub fn matmul(&self, y: &[f32], m: usize) -> Vec<f32> {
        assert_eq!(y.len(), m * self.rows, "y must be [m, rows]");
        kernels::matmul(self, y, m)
    }
}

/// Expands one block of `format` (`block_bytes` long) into `y` (`block_elements` long). The
/// quantized formats follow ggml's `dequantize_row_*`; the engine's GGUF reader decodes these
/// types with this same function (checked there against the `gguf` Python package).
#[inline(always)]
pub fn dequantize_block(format: StoredFormat, b: &[u8], y: &mut [f32]) {
    let half = |i: usize| f16::from_le_bytes([b[i], b[i + 1]]).to_f32();
    match format {
        StoredFormat::F32 => {
            for (y, c) in y.iter_mut().zip(b.chunks_exact(4)) {
                *y = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        StoredFormat::F16 => {
            for (y, c) in y.iter_mut().zip(b.chunks_exact(2)) {
                *y = f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        StoredFormat::BF16 => {
            for (y, c) in y.iter_mut().zip(b.chunks_exact(2)) {
                *y = bf16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        StoredFormat::Q8_0 => {
            let d = half(0);
            for (y, &q) in y.iter_mut().zip(&b[2..34]) {
                *y = (q as i8) as f32 * d;
            }
        }
        StoredFormat::Q4_0 => {
            let d = half(0);
            for (j, &q) in b[2..18].iter().enumerate() {
                y[j] = ((q & 0x0f) as i32 - 8) as f32 * d;
                y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
            }
        }
        StoredFormat::Q4_1 => {
            let (d, m) = (half(0), half(2));
            for (j, &q) in b[4..20].iter().enumerate() {
                y[j] = (q & 0x0f) as f32 * d + m;
                y[j + 16] = (q >> 4) as f32 * d + m;
            }
        }
        StoredFormat::Q4K => {
            // Each 32-byte run of values holds two sub-blocks of 32: low nibbles, then high.
            let (d, dmin) = (half(0), half(2));
            let scales = &b[4..16];
            for (chunk, (q, y)) in b[16..144].chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
                let (sc1, m1) = scale_min_k4(2 * chunk, scales);
                let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
                let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
                let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
                for l in 0..32 {
                    y[l] = d1 * (q[l] & 0x0f) as f32 - m1;
                    y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
                }
            }
        }
        StoredFormat::Q6K => {
            // Two halves of 128 values. In a half, byte l of the low nibbles and of the high
            // 2-bit parts gives values l, l+32, l+64 and l+96; each run of 16 has its own scale.
            let d = half(208);
            for h in 0..2 {
                let (ql, qh, sc) = (&b[64 * h..64 * h + 64], &b[128 + 32 * h..160 + 32 * h], &b[192 + 8 * h..200 + 8 * h]);
                let y = &mut y[128 * h..128 * h + 128];
                for l in 0..32 {
                    let is = l / 16;
                    let q1 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i32 - 32;
                    let q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                    let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                    let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                    y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
                    y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
                    y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
                    y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
                }
            }
        }
    }
}

/// The 6-bit (scale, min) pair `j` of a Q4_K or Q5_K super-block (ggml's `get_scale_min_k4`).
#[inline(always)]
pub fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small seeded generator (splitmix64), so the tests need no dependency.
    struct Rng(u64);
    impl Rng {
        fn new(seed: u64) -> Self {
            Rng(seed)
        }
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn uniform(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }
        fn normal(&mut self) -> f64 {
            let (u, v) = (self.uniform().max(1e-300), self.uniform());
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        }
    }

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        (0..n).map(|_| rng.normal() as f32).collect()
    }

    /// Random bytes that are valid blocks of `format` (finite scales).
    pub(crate) fn random_matrix(format: StoredFormat, rows: usize, cols: usize, seed: u64) -> StoredMatrix {
        let mut rng = Rng::new(seed);
        let n_blocks = rows * cols / format.block_elements();
        let mut bytes = Vec::new();
        for _ in 0..n_blocks {
            let mut block: Vec<u8> = (0..format.block_bytes()).map(|_| (rng.uniform() * 256.0) as u8).collect();
            let mut put_half = |at: usize, v: f32| block[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
            match format {
                StoredFormat::Q8_0 | StoredFormat::Q4_0 => put_half(0, 0.01 + rng.uniform() as f32 * 0.05),
                StoredFormat::Q4K => {
                    put_half(0, 0.0005 + rng.uniform() as f32 * 0.001);
                    put_half(2, 0.0005 + rng.uniform() as f32 * 0.001);
                }
                StoredFormat::Q6K => put_half(208, 0.0002 + rng.uniform() as f32 * 0.0005),
                StoredFormat::Q4_1 => {
                    put_half(0, 0.01 + rng.uniform() as f32 * 0.05);
                    put_half(2, -0.2 + rng.uniform() as f32 * 0.1);
                }
                StoredFormat::F32 | StoredFormat::F16 | StoredFormat::BF16 => {
                    let values = random(32, rng.next_u64());
                    block = match format {
                        StoredFormat::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                        StoredFormat::F16 => values.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect(),
                        _ => values.iter().flat_map(|v| bf16::from_f32(*v).to_le_bytes()).collect(),
                    };
                }
            }
            bytes.extend(block);
        }
        StoredMatrix::from_bytes(format, rows, cols, bytes).unwrap()
    }

    fn naive_xwt(w: &[f32], rows: usize, cols: usize, x: &[f32], m: usize) -> Vec<f64> {
        let mut y = vec![0f64; m * rows];
        for i in 0..m {
            for r in 0..rows {
                y[i * rows + r] = (0..cols).map(|k| x[i * cols + k] as f64 * w[r * cols + k] as f64).sum();
            }
        }
        y
    }

    fn assert_close(got: &[f32], want: &[f64], what: &str) {
        let scale = want.iter().fold(1e-6f64, |m, v| m.max(v.abs()));
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(((*g as f64) - w).abs() <= 1e-5 * scale, "{what}: element {i}: {g} vs {w}");
        }
    }

    pub(crate) const FORMATS: [StoredFormat; 8] = [
        StoredFormat::F32,
        StoredFormat::F16,
        StoredFormat::BF16,
        StoredFormat::Q8_0,
        StoredFormat::Q4_0,
        StoredFormat::Q4_1,
        StoredFormat::Q4K,
        StoredFormat::Q6K,
    ];

    #[test]
    fn products_match_the_dequantized_matrix_in_every_format() {
        // Every size class of m: the decode path (m < 8) and the panel path, and row counts that
        // leave a ragged last chunk.
        for format in FORMATS {
            for (rows, cols, m) in [(1, 256, 1), (37, 256, 1), (130, 512, 3), (70, 768, 9), (200, 256, 33)] {
                let w = random_matrix(format, rows, cols, (rows * cols) as u64);
                let dense = w.to_f32();
                let x = random(m * cols, 11);
                assert_close(&w.matmul_transposed(&x, m), &naive_xwt(&dense, rows, cols, &x, m), &format!("{format:?} x·Wᵀ {rows}×{cols} m={m}"));

                let y = random(m * rows, 12);
                // y·W = (Wᵀ·yᵀ)ᵀ: the naive product with W transposed.
                let mut wt = vec![0f32; cols * rows];
                for r in 0..rows {
                    for c in 0..cols {
                        wt[c * rows + r] = dense[r * cols + c];
                    }
                }
                assert_close(&w.matmul(&y, m), &naive_xwt(&wt, cols, rows, &y, m), &format!("{format:?} y·W {rows}×{cols} m={m}"));
            }
        }
    }

    #[test]
    fn q8_0_quantization_follows_ggml() {
        // One block: max |x| = 2.54 → d = 0.02; 1.0 / 0.02 = 50; -2.54 → -127.
        let mut x = vec![0f32; 32];
        x[0] = 1.0;
        x[1] = -2.54;
        x[2] = 0.011; // 0.55 → rounds away from zero to 1
        let m = StoredMatrix::quantize_q8_0(&x, 1, 32).unwrap();
        let d = f16::from_f32(0.02).to_f32();
        let y = m.to_f32();
        assert_eq!((y[0], y[1], y[2], y[3]), (50.0 * d, -127.0 * d, d, 0.0));
        // Round-trip error: half a step, plus up to 127 times the f16 rounding of the step
        // (q is computed with the exact step, as ggml does, then stored with the rounded one).
        let x = random(64 * 32, 3);
        let y = StoredMatrix::quantize_q8_0(&x, 64, 32).unwrap().to_f32();
        for (block_x, block_y) in x.chunks(32).zip(y.chunks(32)) {
            let step = block_x.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
            for (a, b) in block_x.iter().zip(block_y) {
                assert!((a - b).abs() <= step * (0.5 + 127.0 / 2048.0), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn short_or_misaligned_data_is_refused() {
        assert!(StoredMatrix::from_bytes(StoredFormat::Q8_0, 2, 32, vec![0; 67]).is_err());
        assert!(StoredMatrix::from_bytes(StoredFormat::Q4_1, 1, 48, vec![0; 30]).is_err());
    }

    #[test]
    fn gathered_rows_are_the_dequantized_rows() {
        let m = random_matrix(StoredFormat::Q8_0, 10, 64, 9);
        let all = m.to_f32();
        assert_eq!(m.gather_rows(&[3, 0, 3]).unwrap(), [&all[192..256], &all[0..64], &all[192..256]].concat());
        assert!(m.gather_rows(&[10]).is_err());
    }
}
