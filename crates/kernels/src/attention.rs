//! Softmax attention on the CPU, forward and backward, for prefill and LoRA training.
//!
//! Written out instead of composed from tensor ops because, composed, every step (scores,
//! scaling, mask, max, exp, sum, division) is a full `[batch, heads, seq, total]` tensor made
//! one element-wise pass at a time on one thread, and training keeps several of them per layer
//! for the backward pass. Here each head is one task on rayon's pool, its scores live in a
//! scratch block of `ROW_BLOCK` rows, the two products are `gemm` calls, and the backward pass
//! rebuilds the probabilities from one log-sum-exp per row (`p = exp(s − lse)`, as
//! FlashAttention does), so training keeps nothing of the score matrix between the passes.
//!
//! Layout, row-major: q and the output `[batch, heads, seq, head_dim]`; k and v `[batch,
//! kv_heads, total, head_dim]`. Query head `h` reads kv head `h / (heads / kv_heads)`
//! (grouped-query attention, as HF's `repeat_kv`). Causal masking is aligned bottom-right: query
//! row `r` is position `total − seq + r` and sees keys `0..=total − seq + r`, so it holds with a
//! KV cache too.

/// Query rows whose scores are formed at once: 64 rows of a 2048-key row are 512 KiB.
const ROW_BLOCK: usize = 64;

/// The sizes of one attention call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub batch: usize,
    pub heads: usize,
    pub kv_heads: usize,
    /// Query rows.
    pub seq: usize,
    /// Key rows (`seq` plus any cached positions).
    pub total: usize,
    pub head_dim: usize,
    pub causal: bool,
}

impl Shape {
    /// `1/√head_dim`, the scores' scale.
    pub fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }

    /// How many keys query row `r` sees.
    fn visible(&self, r: usize) -> usize {
        if self.causal { self.total - self.seq + r + 1 } else { self.total }
    }

    fn is_empty(&self) -> bool {
        self.batch * self.heads * self.seq * self.head_dim == 0
    }

    /// The kv head's `[total, head_dim]` slice of `k` or `v` for query head `bh` (`b·heads + h`).
    fn kv_of<'a>(&self, kv: &'a [f32], bh: usize) -> &'a [f32] {
        let (b, h) = (bh / self.heads, bh % self.heads);
        let g = h / (self.heads / self.kv_heads);
        let len = self.total * self.head_dim;
        &kv[(b * self.kv_heads + g) * len..][..len]
    }

    fn check(&self, q: &[f32], k: &[f32], v: &[f32]) {
        assert!(self.kv_heads > 0 && self.heads % self.kv_heads == 0, "attention: {} heads do not split into {} kv heads", self.heads, self.kv_heads);
        assert!(self.total >= self.seq || !self.causal, "attention: causal with fewer keys ({}) than queries ({})", self.total, self.seq);
        assert_eq!(q.len(), self.batch * self.heads * self.seq * self.head_dim, "attention: q's length");
        assert_eq!(k.len(), self.batch * self.kv_heads * self.total * self.head_dim, "attention: k's length");
        assert_eq!(v.len(), k.len(), "attention: v's length");
    }
}

/// The forward pass: `softmax(q·kᵀ/√d + mask)·v` and each query row's log-sum-exp of its
/// scaled, masked scores (`[batch, heads, seq]`), which the backward pass needs.
pub fn forward(shape: &Shape, q: &[f32], k: &[f32], v: &[f32]) -> (Vec<f32>, Vec<f32>) {
    shape.check(q, k, v);
    let (s, d) = (shape.seq, shape.head_dim);
    let mut out = vec![0f32; q.len()];
    let mut lse = vec![0f32; shape.batch * shape.heads * s];
    if shape.is_empty() {
        return (out, lse);
    }
    // Tasks are (head, block of query rows), the widest causal blocks first, so that the pool
    // balances them (heads alone left one core idle through a ninth head).
    let (heads, blocks) = (shape.batch * shape.heads, s.div_ceil(ROW_BLOCK));
    let (out_at, lse_at) = (crate::SharedOut(out.as_mut_ptr()), crate::SharedOut(lse.as_mut_ptr()));
    crate::for_each_task(heads * blocks, |t| {
        let (bh, r0) = (t % heads, (blocks - 1 - t / heads) * ROW_BLOCK);
        let (q, k, v) = (&q[bh * s * d..][..s * d], shape.kv_of(k, bh), shape.kv_of(v, bh));
        let rows = ROW_BLOCK.min(s - r0);
        // SAFETY: task (bh, r0) alone writes rows r0..r0+rows of head bh: out[(bh·s + r0)·d..]
        // for rows·d values and lse[bh·s + r0..] for rows values, in bounds as s·d and s per head.
        let (out, lse) = unsafe { (out_at.slice((bh * s + r0) * d, rows * d), lse_at.slice(bh * s + r0, rows)) };
        let width = shape.visible(r0 + rows - 1);
        let mut p = vec![0f32; rows * width];
        scores(shape, &q[r0 * d..], k, rows, width, &mut p);
        for (i, row) in p.chunks_exact_mut(width).enumerate() {
            let vis = shape.visible(r0 + i);
            let max = row[..vis].iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for x in &mut row[..vis] {
                *x = (*x - max).exp();
                sum += *x;
            }
            row[vis..].fill(0.0);
            let inv = 1.0 / sum;
            row[..vis].iter_mut().for_each(|x| *x *= inv);
            lse[i] = max + sum.ln();
        }
        // out[r0.., :] = P · v[..width]
        times(&p, v, rows, width, d, 1.0, out);
    });
    (out, lse)
}

/// The gradients of q, k and v, given the forward pass's output and log-sum-exp and the
/// output's gradient. Probabilities are rebuilt as `exp(s − lse)`; with `D = rowsum(dO ∘ O)`,
/// `dS = P ∘ (dO·vᵀ − D)`, `dq = dS·k/√d`, `dk = dSᵀ·q/√d`, `dv = Pᵀ·dO`.
pub fn backward(shape: &Shape, q: &[f32], k: &[f32], v: &[f32], out: &[f32], lse: &[f32], d_out: &[f32]) -> Gradients {
    shape.check(q, k, v);
    assert_eq!(out.len(), q.len(), "attention backward: the output's length");
    assert_eq!(d_out.len(), q.len(), "attention backward: the output gradient's length");
    let (s, t, d) = (shape.seq, shape.total, shape.head_dim);
    assert_eq!(lse.len(), shape.batch * shape.heads * s, "attention backward: the log-sum-exp's length");
    let mut dq = vec![0f32; q.len()];
    let (mut dk, mut dv) = (vec![0f32; k.len()], vec![0f32; v.len()]);
    if shape.is_empty() || t == 0 {
        return Gradients { dq, dk, dv };
    }
    // Per query head, dk and dv for its own kv head's copy: every head is a task of its own, and
    // the heads that share a kv head are summed after.
    let mut dkv = vec![0f32; shape.batch * shape.heads * 2 * t * d];
    let scale = shape.scale();
    crate::for_each_chunk_pair(&mut dq, s * d, &mut dkv, 2 * t * d, |bh, dq, dkv| {
        let at = bh * s * d;
        let (q, o, d_o) = (&q[at..][..s * d], &out[at..][..s * d], &d_out[at..][..s * d]);
        let (k, v) = (shape.kv_of(k, bh), shape.kv_of(v, bh));
        let lse = &lse[bh * s..][..s];
        let (dk, dv) = dkv.split_at_mut(t * d);
        let mut p = vec![0f32; ROW_BLOCK.min(s) * t];
        let mut ds = vec![0f32; ROW_BLOCK.min(s) * t];
        for r0 in (0..s).step_by(ROW_BLOCK) {
            let rows = ROW_BLOCK.min(s - r0);
            let width = shape.visible(r0 + rows - 1);
            let (p, ds) = (&mut p[..rows * width], &mut ds[..rows * width]);
            scores(shape, &q[r0 * d..], k, rows, width, p);
            for (i, row) in p.chunks_exact_mut(width).enumerate() {
                let vis = shape.visible(r0 + i);
                let l = lse[r0 + i];
                row[..vis].iter_mut().for_each(|x| *x = (*x - l).exp());
                row[vis..].fill(0.0);
            }
            let d_o_rows = &d_o[r0 * d..][..rows * d];
            // dv[..width] += Pᵀ · dO, and ds = dO · v[..width]ᵀ (then P ∘ (ds − D) in place).
            add_transposed_times(p, d_o_rows, rows, width, d, 1.0, dv);
            times_transposed(d_o_rows, v, rows, width, d, 1.0, ds);
            for i in 0..rows {
                let o_row = &o[(r0 + i) * d..][..d];
                let dot: f32 = d_o_rows[i * d..][..d].iter().zip(o_row).map(|(a, b)| a * b).sum();
                let (p_row, ds_row) = (&p[i * width..][..width], &mut ds[i * width..][..width]);
                ds_row.iter_mut().zip(p_row).for_each(|(g, &p)| *g = p * (*g - dot));
            }
            // dq[r0..] = dS · k[..width] / √d, and dk[..width] += dSᵀ · q[r0..] / √d.
            times(ds, k, rows, width, d, scale, &mut dq[r0 * d..]);
            add_transposed_times(ds, &q[r0 * d..], rows, width, d, scale, dk);
        }
    });
    let group = shape.heads / shape.kv_heads;
    for (bh, head) in dkv.chunks_exact(2 * t * d).enumerate() {
        let (b, h) = (bh / shape.heads, bh % shape.heads);
        let at = (b * shape.kv_heads + h / group) * t * d;
        let (hk, hv) = head.split_at(t * d);
        dk[at..][..t * d].iter_mut().zip(hk).for_each(|(a, g)| *a += g);
        dv[at..][..t * d].iter_mut().zip(hv).for_each(|(a, g)| *a += g);
    }
    Gradients { dq, dk, dv }
}

/// The backward pass's result, shaped like q, k and v.
#[derive(Debug, Clone)]
pub struct Gradients {
    pub dq: Vec<f32>,
    pub dk: Vec<f32>,
    pub dv: Vec<f32>,
}

/// `p[rows, width] = q[rows, d] · k[..width]ᵀ / √d`.
fn scores(shape: &Shape, q: &[f32], k: &[f32], rows: usize, width: usize, p: &mut [f32]) {
    times_transposed(q, k, rows, width, shape.head_dim, shape.scale(), p);
}

// The three products of the two passes, on row-major buffers. Each asserts its bounds, so the
// raw-pointer calls into gemm stay in range.

/// `out[rows, width] = beta · a[rows, d] · b[..width]ᵀ`.
fn times_transposed(a: &[f32], b: &[f32], rows: usize, width: usize, d: usize, beta: f32, out: &mut [f32]) {
    assert!(a.len() >= rows * d && b.len() >= width * d && out.len() >= rows * width);
    // SAFETY: bounds asserted above; b is read as its transpose [d, width].
    unsafe {
        gemm::gemm(
            rows, width, d,
            out.as_mut_ptr(), 1, width as isize, false,
            a.as_ptr(), 1, d as isize,
            b.as_ptr(), d as isize, 1,
            0.0, beta, false, false, false, gemm::Parallelism::None,
        );
    }
}

/// `out[rows, d] = beta · p[rows, width] · m[..width]` (m's rows are d wide).
fn times(p: &[f32], m: &[f32], rows: usize, width: usize, d: usize, beta: f32, out: &mut [f32]) {
    assert!(p.len() >= rows * width && m.len() >= width * d && out.len() >= rows * d);
    // SAFETY: bounds asserted above.
    unsafe {
        gemm::gemm(
            rows, d, width,
            out.as_mut_ptr(), 1, d as isize, false,
            p.as_ptr(), 1, width as isize,
            m.as_ptr(), 1, d as isize,
            0.0, beta, false, false, false, gemm::Parallelism::None,
        );
    }
}

/// `acc[..width] += beta · p[rows, width]ᵀ · m[rows, d]`.
fn add_transposed_times(p: &[f32], m: &[f32], rows: usize, width: usize, d: usize, beta: f32, acc: &mut [f32]) {
    assert!(p.len() >= rows * width && m.len() >= rows * d && acc.len() >= width * d);
    // SAFETY: bounds asserted above; p is read as its transpose [width, rows].
    unsafe {
        gemm::gemm(
            width, d, rows,
            acc.as_mut_ptr(), 1, d as isize, true,
            p.as_ptr(), width as isize, 1,
            m.as_ptr(), 1, d as isize,
            1.0, beta, false, false, false, gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::values;

    /// Attention in f64, one element at a time, straight from the definition.
    fn reference_forward(sh: &Shape, q: &[f32], k: &[f32], v: &[f32]) -> Vec<f64> {
        let (s, t, d) = (sh.seq, sh.total, sh.head_dim);
        let group = sh.heads / sh.kv_heads;
        let mut out = vec![0f64; q.len()];
        for b in 0..sh.batch {
            for h in 0..sh.heads {
                let kv = (b * sh.kv_heads + h / group) * t * d;
                let qh = (b * sh.heads + h) * s * d;
                for r in 0..s {
                    let vis = if sh.causal { t - s + r + 1 } else { t };
                    let sc: Vec<f64> = (0..vis)
                        .map(|j| (0..d).map(|x| q[qh + r * d + x] as f64 * k[kv + j * d + x] as f64).sum::<f64>() / (d as f64).sqrt())
                        .collect();
                    let max = sc.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = sc.iter().map(|x| (x - max).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for x in 0..d {
                        out[qh + r * d + x] = (0..vis).map(|j| e[j] / z * v[kv + j * d + x] as f64).sum();
                    }
                }
            }
        }
        out
    }

    fn shapes() -> Vec<Shape> {
        vec![
            // Multi-block rows, grouped heads, batch 2.
            Shape { batch: 2, heads: 6, kv_heads: 2, seq: 70, total: 70, head_dim: 16, causal: true },
            // A cache: more keys than queries.
            Shape { batch: 1, heads: 4, kv_heads: 4, seq: 5, total: 12, head_dim: 8, causal: true },
            Shape { batch: 1, heads: 2, kv_heads: 1, seq: 9, total: 9, head_dim: 12, causal: false },
        ]
    }

    fn inputs(sh: &Shape, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let ql = sh.batch * sh.heads * sh.seq * sh.head_dim;
        let kl = sh.batch * sh.kv_heads * sh.total * sh.head_dim;
        // Scaled up so that softmax is far from uniform.
        let q = values(ql, seed).iter().map(|x| x * 3.0).collect();
        (q, values(kl, seed + 1), values(kl, seed + 2))
    }

    #[test]
    fn forward_equals_the_definition() {
        for (i, sh) in shapes().iter().enumerate() {
            let (q, k, v) = inputs(sh, 10 * i as u64);
            let (out, lse) = forward(sh, &q, &k, &v);
            let want = reference_forward(sh, &q, &k, &v);
            for (a, b) in out.iter().zip(&want) {
                assert!((*a as f64 - b).abs() < 1e-5, "{sh:?}: {a} vs {b}");
            }
            assert!(lse.iter().all(|l| l.is_finite()));
        }
    }

    /// The analytic gradients against central differences of `Σ out ∘ w` in f64, for every
    /// element of q, k and v.
    #[test]
    fn backward_equals_finite_differences() {
        for (i, sh) in shapes().iter().enumerate() {
            let (q, k, v) = inputs(sh, 100 + 10 * i as u64);
            let w = values(q.len(), 7);
            let (out, lse) = forward(sh, &q, &k, &v);
            let g = backward(sh, &q, &k, &v, &out, &lse, &w);
            let loss = |q: &[f32], k: &[f32], v: &[f32]| -> f64 {
                reference_forward(sh, q, k, v).iter().zip(&w).map(|(o, w)| o * *w as f64).sum()
            };
            let eps = 1e-2f32;
            for (which, grad) in [(0, &g.dq), (1, &g.dk), (2, &g.dv)] {
                let base = [&q, &k, &v][which];
                // Every element on the small shapes, a stride of them on the big one.
                let step = if base.len() > 2000 { 37 } else { 1 };
                for e in (0..base.len()).step_by(step) {
                    let mut plus = [q.clone(), k.clone(), v.clone()];
                    let mut minus = plus.clone();
                    plus[which][e] += eps;
                    minus[which][e] -= eps;
                    let num = (loss(&plus[0], &plus[1], &plus[2]) - loss(&minus[0], &minus[1], &minus[2])) / (2.0 * eps as f64);
                    let got = grad[e] as f64;
                    assert!((got - num).abs() < 2e-3 * (1.0 + num.abs()), "{sh:?} input {which} element {e}: {got} vs {num}");
                }
            }
        }
    }

    #[test]
    fn a_fully_visible_row_ignores_the_mask_and_rows_only_see_their_past() {
        // Changing a key that row 0 cannot see leaves row 0's output alone.
        let sh = Shape { batch: 1, heads: 1, kv_heads: 1, seq: 4, total: 4, head_dim: 4, causal: true };
        let (q, k, v) = inputs(&sh, 3);
        let (out, _) = forward(&sh, &q, &k, &v);
        let (mut k2, mut v2) = (k.clone(), v.clone());
        k2[3 * 4] += 5.0;
        v2[3 * 4] += 5.0;
        let (out2, _) = forward(&sh, &q, &k2, &v2);
        assert_eq!(out[..12], out2[..12]);
        assert_ne!(out[12..], out2[12..]);
    }
}
