//! Throughput of the stored-weight products on this CPU, for the shapes of SmolLM2-135M:
//! `cargo run --release -p cqa-quant --example matvec` (add `--features gemm/x86-v4` for gemm's
//! AVX-512 kernels, as the cqa binary has them). Prints GB/s of weights read (decode, m = 1) and
//! GFLOP/s (panels, m = 256), per format and shape (decode with f32 x and with x rounded to
//! bytes, `with_int8_activations`), after a plain f32 gemm of one shape. An
//! argument such as `Q5_0,Q4_K` limits it to those formats.

use cqa_quant::{Format, StoredMatrix};
use std::time::Instant;

fn matrix(format: Format, rows: usize, cols: usize) -> StoredMatrix {
    let values: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 5000.0).collect();
    match format {
        Format::Q8_0 => StoredMatrix::quantize_q8_0(&values, rows, cols).unwrap(),
        Format::F32 => StoredMatrix::from_f32(&values, rows, cols).unwrap(),
        other => {
            // Any bytes with small finite scales will do for timing.
            let n = other.bytes_for(rows * cols);
            let bytes: Vec<u8> = (0..n).map(|i| if i % other.block_bytes() == 1 { 0x20 } else { (i * 31) as u8 & 0x77 }).collect();
            StoredMatrix::from_bytes(other, rows, cols, bytes).unwrap()
        }
    }
}

fn main() {
    plain_f32_gemm();
    let shapes = [(1536, 576, "gate/up"), (576, 1536, "down"), (576, 576, "q/o"), (49152, 576, "tied head")];
    // Every format of the registry, on the shapes whose rows are whole blocks of it (a K-quant
    // never sits on a 576-wide row: llama.cpp writes those as Q5_0/Q5_1/Q8_0).
    let only: Option<Vec<String>> = std::env::args().nth(1).map(|a| a.split(',').map(str::to_string).collect());
    for format in Format::ALL {
        if only.as_ref().is_some_and(|names| !names.iter().any(|n| n == format.name())) {
            continue;
        }
        for (rows, cols, name) in shapes {
            if !(cols as usize).is_multiple_of(format.block_elements().max(32)) {
                continue;
            }
            let w = matrix(format, rows, cols);
            for m in [1usize, 256] {
                let x: Vec<f32> = (0..m * cols).map(|i| (i % 13) as f32 * 0.01).collect();
                let reps = if m == 1 { (2_000_000_000 / w.resident_bytes()).clamp(3, 2000) } else { 10 };
                let _ = w.matmul_transposed(&x, m);
                let t = Instant::now();
                for _ in 0..reps {
                    std::hint::black_box(w.matmul_transposed(&x, m));
                }
                let s = t.elapsed().as_secs_f64() / reps as f64;
                if m == 1 {
                    // The same product with x rounded to bytes, as a generation's decode steps take it.
                    let _ = cqa_quant::with_int8_activations(|| w.matmul_transposed(&x, m));
                    let t = Instant::now();
                    for _ in 0..reps {
                        std::hint::black_box(cqa_quant::with_int8_activations(|| w.matmul_transposed(&x, m)));
                    }
                    let s8 = t.elapsed().as_secs_f64() / reps as f64;
                    let gbs = |s: f64| w.resident_bytes() as f64 / s / 1e9;
                    println!("{:5} {name:9} {rows}x{cols} m=1   {:8.1} µs  {:6.2} GB/s   int8 x: {:8.1} µs  {:6.2} GB/s", format.name(), s * 1e6, gbs(s), s8 * 1e6, gbs(s8));
                } else {
                    println!("{:5} {name:9} {rows}x{cols} m={m} {:8.1} µs  {:6.1} GFLOP/s", format.name(), s * 1e6, 2.0 * (m * rows * cols) as f64 / s / 1e9);
                }
            }
        }
    }
}

/// The same product as a plain f32 gemm on a row-major `[in, out]` weight (burn's layout): what
/// the panel path costs over having the f32 matrix at hand.
fn plain_f32_gemm() {
    let (m, k, n) = (256usize, 576usize, 1536usize);
    let x: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.01).collect();
    let w: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 * 0.01).collect();
    let mut y = vec![0f32; m * n];
    for par in [gemm::Parallelism::None, gemm::Parallelism::Rayon(2)] {
        for _ in 0..2 {
            let t = Instant::now();
            unsafe {
                gemm::gemm(m, n, k, y.as_mut_ptr(), 1, n as isize, false, x.as_ptr(), 1, k as isize, w.as_ptr(), 1, n as isize, 0.0, 1.0, false, false, false, par);
            }
            let threads = if matches!(par, gemm::Parallelism::None) { 1 } else { 2 };
            let s = t.elapsed().as_secs_f64();
            println!("f32 gemm  {n}x{k} m={m} {threads} thread(s) {:8.1} µs  {:6.1} GFLOP/s", s * 1e6, 2.0 * (m * n * k) as f64 / s / 1e9);
        }
    }
}
