//! Weight matrices kept in their stored form: the blocks of any ggml type in the format registry
//! (`format.rs`, one file per format under `formats/`), row-major `[rows, cols]` as HF stores a linear weight (`[out, in]`), each row a run of
//! whole blocks, bytes exactly as in the file; and the CPU kernels that multiply by them without
//! ever holding them as f32 (`kernels`).
//!
//! Expanding a block gives the values ggml's `dequantize_row_*` gives, so a product computed
//! from the blocks differs from an f32 matmul on the dequantized matrix only in the order of its
//! sums.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod block;
mod format;
mod formats;
mod kernels;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128;
pub mod spin;
#[cfg(target_arch = "x86_64")]
mod vnni;
mod words;

pub use kernels::{int8_activations_available, with_int8_activations};
pub use format::{Format, GpuHolding, TABLE, Traits, ggml_type_name};
pub use formats::IQ4_LEVELS;
pub use words::{WordLayout, decode_row, f16_bits_to_f32, format_code};

use half::f16;

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

/// A buffer that matrices can be cut from without a copy: a model file read into memory, or
/// mapped (natively). The matrices of a model then hold ranges of the file itself, so loading
/// takes the file's size once, not twice.
pub type SharedBuffer = std::sync::Arc<dyn AsRef<[u8]> + Send + Sync>;

/// Where a matrix's bytes live.
#[derive(Clone)]
enum Storage {
    Owned(Vec<u8>),
    /// `len` bytes of a shared buffer from `start`.
    Shared { buffer: SharedBuffer, start: usize, len: usize },
}

impl Storage {
    fn as_slice(&self) -> &[u8] {
        match self {
            Storage::Owned(bytes) => bytes,
            Storage::Shared { buffer, start, len } => &(**buffer).as_ref()[*start..*start + *len],
        }
    }
}

/// A `[rows, cols]` matrix in a block format. Immutable once built; shared by `Arc` between a
/// model and its copies (adapters, tied heads).
#[derive(Clone)]
pub struct StoredMatrix {
    pub format: Format,
    pub rows: usize,
    pub cols: usize,
    bytes: Storage,
}

impl std::fmt::Debug for StoredMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoredMatrix({} {}×{})", self.format.name(), self.rows, self.cols)
    }
}

impl StoredMatrix {
    /// Wraps encoded bytes, checking that they hold exactly `rows × cols` values.
    pub fn from_bytes(format: Format, rows: usize, cols: usize, bytes: Vec<u8>) -> Result<Self> {
        Self::check_size(format, rows, cols, bytes.len())?;
        Ok(StoredMatrix { format, rows, cols, bytes: Storage::Owned(bytes) })
    }

    /// The matrix encoded in `buffer[start..start + len]`, without copying it: the matrix keeps
    /// the buffer alive.
    pub fn from_shared(format: Format, rows: usize, cols: usize, buffer: SharedBuffer, start: usize, len: usize) -> Result<Self> {
        let in_bounds = start.checked_add(len).is_some_and(|end| end <= (*buffer).as_ref().len());
        if !in_bounds {
            return Err(QuantError(format!("bytes {start}..+{len} are outside the {}-byte buffer", (*buffer).as_ref().len())));
        }
        Self::check_size(format, rows, cols, len)?;
        Ok(StoredMatrix { format, rows, cols, bytes: Storage::Shared { buffer, start, len } })
    }

    fn check_size(format: Format, rows: usize, cols: usize, len: usize) -> Result<()> {
        // The kernels also work in groups of 32 (Σx per group, 32 plain floats at a time).
        let block = format.block_elements().max(32);
        if !cols.is_multiple_of(block) {
            return Err(QuantError(format!(
                "a {} matrix needs rows of whole {block}-element blocks, but a row has {cols} elements",
                format.name()
            )));
        }
        let expected = rows * format.bytes_for(cols);
        if len != expected {
            return Err(QuantError(format!(
                "{} data of {len} bytes cannot hold a {rows}×{cols} matrix ({expected} bytes)",
                format.name()
            )));
        }
        Ok(())
    }

    /// Keeps f32 values exactly, 4 bytes each.
    pub fn from_f32(values: &[f32], rows: usize, cols: usize) -> Result<Self> {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self::from_bytes(Format::F32, rows, cols, bytes)
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
        Self::from_bytes(Format::Q8_0, rows, cols, bytes)
    }

    /// The same matrix in Q8_0 (for a backend without kernels for this format): exact for
    /// Q8_0 itself, a requantization otherwise.
    pub fn to_q8_0(&self) -> Result<Self> {
        if self.format == Format::Q8_0 {
            return Ok(self.clone());
        }
        Self::quantize_q8_0(&self.to_f32(), self.rows, self.cols)
    }

    /// The same matrix with its rows reordered by `reorder`, which maps a row-major buffer of
    /// `rows` rows, `row_len` items each, to the new order. Whole rows move, so the blocks stay
    /// as they are (undoing GGUF's q/k permutation).
    pub fn with_rows_reordered(self, reorder: impl Fn(&[u8], usize) -> Vec<u8>) -> Self {
        let bytes = Storage::Owned(reorder(self.bytes(), self.row_bytes()));
        StoredMatrix { bytes, ..self }
    }

    /// The encoded bytes, row after row.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.as_slice()
    }

    /// Bytes this matrix occupies (its range of a shared buffer, or its own copy).
    pub fn resident_bytes(&self) -> usize {
        self.bytes().len()
    }

    fn row_bytes(&self) -> usize {
        self.format.bytes_for(self.cols)
    }

    /// The encoded bytes of row `r`.
    pub(crate) fn row(&self, r: usize) -> &[u8] {
        let n = self.row_bytes();
        &self.bytes()[r * n..(r + 1) * n]
    }

    /// Writes row `r` as f32 into `out` (`cols` long).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        self.format.decode(self.row(r), &mut out[..self.cols]);
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

#[cfg(test)]
mod tests {
    use super::*;
    use half::bf16;

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

    /// Random bytes that are valid blocks of `format`: every f16 field that scales values set to
    /// a small finite number (where each format keeps them: see its file under `formats/`).
    pub(crate) fn random_matrix(format: Format, rows: usize, cols: usize, seed: u64) -> StoredMatrix {
        let mut rng = Rng::new(seed);
        if matches!(format, Format::F32 | Format::F16 | Format::BF16) {
            let values = random(rows * cols, rng.next_u64());
            let bytes = match format {
                Format::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                Format::F16 => values.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect(),
                _ => values.iter().flat_map(|v| bf16::from_f32(*v).to_le_bytes()).collect(),
            };
            return StoredMatrix::from_bytes(format, rows, cols, bytes).unwrap();
        }
        let n_blocks = rows * cols / format.block_elements();
        let mut bytes = Vec::new();
        for _ in 0..n_blocks {
            let mut block: Vec<u8> = (0..format.block_bytes()).map(|_| (rng.uniform() * 256.0) as u8).collect();
            let mut scale = |at: usize, lo: f32, width: f32| {
                let v = lo + rng.uniform() as f32 * width;
                block[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
            };
            match format {
                Format::Q8_0 | Format::Q4_0 | Format::Q5_0 | Format::IQ4NL => scale(0, 0.01, 0.05),
                Format::Q4_1 | Format::Q5_1 => {
                    scale(0, 0.01, 0.05);
                    scale(2, -0.2, 0.1);
                }
                Format::Q4K | Format::Q5K => {
                    scale(0, 0.0005, 0.001);
                    scale(2, 0.0005, 0.001);
                }
                Format::Q2K => {
                    scale(80, 0.005, 0.01);
                    scale(82, 0.005, 0.01);
                }
                Format::Q3K => scale(108, 0.001, 0.002),
                Format::Q6K => scale(208, 0.0002, 0.0005),
                Format::IQ4XS => scale(0, 0.0002, 0.0005),
                Format::TQ1_0 => scale(52, 0.01, 0.05),
                Format::TQ2_0 => scale(64, 0.01, 0.05),
                // The exponent byte: scales of 2^-8 to 2^-5.
                Format::MXFP4 => block[0] = 120 + (rng.uniform() * 4.0) as u8,
                Format::IQ2XXS | Format::IQ2XS | Format::IQ2S | Format::IQ3XXS | Format::IQ3S => scale(0, 0.0005, 0.001),
                Format::IQ1S => scale(0, 0.005, 0.01),
                // IQ1_M's d is the top nibble of each of its last four u16.
                Format::IQ1M => {
                    let d = f16::from_f32(0.005 + rng.uniform() as f32 * 0.01).to_bits();
                    for i in 0..4 {
                        block[49 + 2 * i] = (block[49 + 2 * i] & 0x0f) | ((((d >> (4 * i)) & 0x0f) as u8) << 4);
                    }
                }
                Format::F32 | Format::F16 | Format::BF16 => unreachable!("plain floats returned above"),
            }
            bytes.extend(block);
        }
        StoredMatrix::from_bytes(format, rows, cols, bytes).unwrap()
    }

    /// `x·Wᵀ` in f64, and beside each element the sum of its terms' magnitudes (what its f32
    /// rounding error scales with: a sum that cancels to near zero is no more exact than that).
    fn naive_xwt(w: &[f32], rows: usize, cols: usize, x: &[f32], m: usize) -> (Vec<f64>, Vec<f64>) {
        let (mut y, mut magnitude) = (vec![0f64; m * rows], vec![0f64; m * rows]);
        for i in 0..m {
            for r in 0..rows {
                let terms = (0..cols).map(|k| x[i * cols + k] as f64 * w[r * cols + k] as f64);
                y[i * rows + r] = terms.clone().sum();
                magnitude[i * rows + r] = terms.map(f64::abs).sum();
            }
        }
        (y, magnitude)
    }

    fn assert_close(got: &[f32], (want, magnitude): &(Vec<f64>, Vec<f64>), what: &str) {
        let scale = want.iter().fold(1e-6f64, |m, v| m.max(v.abs()));
        for (i, ((g, w), a)) in got.iter().zip(want).zip(magnitude).enumerate() {
            assert!(((*g as f64) - w).abs() <= 1e-5 * scale + 1e-6 * a, "{what}: element {i}: {g} vs {w} (terms' magnitudes {a})");
        }
    }

    pub(crate) const FORMATS: [Format; 25] = Format::ALL;

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
        assert!(StoredMatrix::from_bytes(Format::Q8_0, 2, 32, vec![0; 67]).is_err());
        assert!(StoredMatrix::from_bytes(Format::Q4_1, 1, 48, vec![0; 30]).is_err());
    }

    #[test]
    fn a_matrix_cut_from_a_shared_buffer_equals_its_copy() {
        let m = random_matrix(Format::Q5_0, 4, 64, 3);
        let mut file = vec![7u8; 10];
        file.extend_from_slice(m.bytes());
        file.extend([9u8; 5]);
        let buffer: SharedBuffer = std::sync::Arc::new(file);
        let shared = StoredMatrix::from_shared(Format::Q5_0, 4, 64, buffer.clone(), 10, m.bytes().len()).unwrap();
        assert_eq!(shared.to_f32(), m.to_f32());
        assert_eq!(shared.resident_bytes(), m.resident_bytes());
        assert!(StoredMatrix::from_shared(Format::Q5_0, 4, 64, buffer.clone(), 16, m.bytes().len()).is_err(), "past the end");
        assert!(StoredMatrix::from_shared(Format::Q5_0, 4, 64, buffer, usize::MAX, 2).is_err(), "overflowing range");
    }

    #[test]
    fn gathered_rows_are_the_dequantized_rows() {
        let m = random_matrix(Format::Q8_0, 10, 64, 9);
        let all = m.to_f32();
        assert_eq!(m.gather_rows(&[3, 0, 3]).unwrap(), [&all[192..256], &all[0..64], &all[192..256]].concat());
        assert!(m.gather_rows(&[10]).is_err());
    }
}
