//! RMSNorm, `y = x / √(mean(x²) + ε) · w` over each row, and its backward pass. Kept for the
//! backward pass: x, w and one `1/√(mean(x²) + ε)` per row.

/// `[rows, d]` → the normalised rows and each row's inverse root mean square.
pub fn forward(x: &[f32], weight: &[f32], eps: f32) -> (Vec<f32>, Vec<f32>) {
    let d = weight.len();
    assert!(d > 0 && x.len() % d == 0, "rms_norm: x's rows must be as wide as the weight");
    let rows = x.len() / d;
    let (mut y, mut inv_rms) = (vec![0f32; x.len()], vec![0f32; rows]);
    let rows_per_task = (crate::ELEMENTS_PER_TASK / d).max(1);
    crate::for_each_chunk_pair(&mut y, rows_per_task * d, &mut inv_rms, rows_per_task, |t, y, inv_rms| {
        for (i, (y, inv)) in y.chunks_exact_mut(d).zip(inv_rms.iter_mut()).enumerate() {
            let x = &x[(t * rows_per_task + i) * d..][..d];
            *inv = inverse_rms(x, eps);
            y.iter_mut().zip(x).zip(weight).for_each(|((y, &x), &w)| *y = x * *inv * w);
        }
    });
    (y, inv_rms)
}

/// The gradients of x and w given y's: with `n = x·inv`, `dx = inv·(g∘w − n·mean(g∘w∘n))` and
/// `dw = Σ_rows g∘n`.
pub fn backward(x: &[f32], weight: &[f32], inv_rms: &[f32], d_y: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let d = weight.len();
    assert!(x.len() == d_y.len() && x.len() == inv_rms.len() * d, "rms_norm backward: lengths differ");
    let rows_per_task = (crate::ELEMENTS_PER_TASK / d).max(1);
    let tasks = inv_rms.len().div_ceil(rows_per_task);
    let mut d_x = vec![0f32; x.len()];
    // Each task sums its own rows' share of dw; the shares are added after.
    let mut d_w_parts = vec![0f32; tasks * d];
    crate::for_each_chunk_pair(&mut d_x, rows_per_task * d, &mut d_w_parts, d, |t, d_x, d_w| {
        for (i, d_x) in d_x.chunks_exact_mut(d).enumerate() {
            let r = t * rows_per_task + i;
            let (x, g, inv) = (&x[r * d..][..d], &d_y[r * d..][..d], inv_rms[r]);
            let mut dot = 0f32;
            for j in 0..d {
                let n = x[j] * inv;
                dot += g[j] * weight[j] * n;
                d_w[j] += g[j] * n;
            }
            let mean = dot / d as f32;
            for j in 0..d {
                d_x[j] = inv * (g[j] * weight[j] - x[j] * inv * mean);
            }
        }
    });
    let mut d_w = vec![0f32; d];
    for part in d_w_parts.chunks_exact(d) {
        d_w.iter_mut().zip(part).for_each(|(a, p)| *a += p);
    }
    (d_x, d_w)
}

fn inverse_rms(x: &[f32], eps: f32) -> f32 {
    let mean_square = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    1.0 / (mean_square + eps).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::values;

    fn reference(x: &[f64], w: &[f64], eps: f64) -> Vec<f64> {
        let d = w.len();
        x.chunks(d)
            .flat_map(|row| {
                let inv = 1.0 / (row.iter().map(|v| v * v).sum::<f64>() / d as f64 + eps).sqrt();
                row.iter().zip(w).map(move |(x, w)| x * inv * w)
            })
            .collect()
    }

    #[test]
    fn forward_and_backward_equal_the_definition_and_its_differences() {
        // More rows than one task holds, so dw is summed across tasks.
        let (d, rows, eps) = (96, crate::ELEMENTS_PER_TASK / 96 + 5, 1e-5);
        let x = values(rows * d, 1);
        let w: Vec<f32> = values(d, 2).iter().map(|v| 1.0 + v).collect();
        let g = values(rows * d, 3);
        let (y, inv) = forward(&x, &w, eps as f32);
        let (dx, dw) = backward(&x, &w, &inv, &g);
        let (x64, w64): (Vec<f64>, Vec<f64>) = (x.iter().map(|&v| v as f64).collect(), w.iter().map(|&v| v as f64).collect());
        for (a, b) in y.iter().zip(reference(&x64, &w64, eps)) {
            assert!((*a as f64 - b).abs() < 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
        let loss = |x: &[f64], w: &[f64]| -> f64 { reference(x, w, eps).iter().zip(&g).map(|(y, g)| y * *g as f64).sum() };
        let h = 1e-4;
        for e in (0..x.len()).step_by(997) {
            let (mut p, mut m) = (x64.clone(), x64.clone());
            p[e] += h;
            m[e] -= h;
            let num = (loss(&p, &w64) - loss(&m, &w64)) / (2.0 * h);
            assert!((dx[e] as f64 - num).abs() < 1e-3 * (1.0 + num.abs()), "dx[{e}]: {} vs {num}", dx[e]);
        }
        for e in 0..d {
            let (mut p, mut m) = (w64.clone(), w64.clone());
            p[e] += h;
            m[e] -= h;
            let num = (loss(&x64, &p) - loss(&x64, &m)) / (2.0 * h);
            assert!((dw[e] as f64 - num).abs() < 1e-3 * (1.0 + num.abs()), "dw[{e}]: {} vs {num}", dw[e]);
        }
    }
}
