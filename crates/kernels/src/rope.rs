//! Rotary position embedding in rotate-half form, with the move of heads in front of positions
//! done in the same pass: `[batch, seq, heads·d]` (a projection's output) → `[batch, heads, seq,
//! d]` (what attention reads). Composed, it is a transpose copy and five tensor ops (two
//! narrows, a negation, a concatenation, two products and a sum), each one pass on one thread.
//!
//! For position p and lane i < d/2, with `c = cos[p]`, `s = sin[p]` (rows of the tables):
//! `y[i] = x[i]·c[i] − x[i+d/2]·s[i]` and `y[i+d/2] = x[i+d/2]·c[i+d/2] + x[i]·s[i+d/2]`: the
//! composed form's operations in its order (`x·cos + rotate_half(x)·sin`), so the same values.

/// The layout of one call: `rows_in` are the input's `[batch, seq]` rows of `heads · head_dim`.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub batch: usize,
    pub seq: usize,
    pub heads: usize,
    pub head_dim: usize,
}

impl Shape {
    fn len(&self) -> usize {
        self.batch * self.seq * self.heads * self.head_dim
    }

    /// Where output row `o` (`[batch, heads, seq]` order) starts in the input, and its position.
    fn source(&self, o: usize) -> (usize, usize) {
        let (pos, bh) = (o % self.seq, o / self.seq);
        let (b, h) = (bh / self.heads, bh % self.heads);
        (((b * self.seq + pos) * self.heads + h) * self.head_dim, pos)
    }
}

/// `x` `[batch, seq, heads·d]` → rotated `[batch, heads, seq, d]`; `cos` and `sin` hold the rows of
/// positions `offset..offset + seq` (`[seq, d]` each).
pub fn forward(shape: &Shape, x: &[f32], cos: &[f32], sin: &[f32]) -> Vec<f32> {
    check(shape, x, cos, sin);
    let d = shape.head_dim;
    let half = d / 2;
    let mut y = vec![0f32; shape.len()];
    crate::for_each_chunk(&mut y, rows_per_task(d) * d, |t, chunk| {
        for (j, y) in chunk.chunks_exact_mut(d).enumerate() {
            let (at, pos) = shape.source(t * rows_per_task(d) + j);
            let (x, c, s) = (&x[at..at + d], &cos[pos * d..][..d], &sin[pos * d..][..d]);
            for i in 0..half {
                y[i] = x[i] * c[i] + -x[i + half] * s[i];
                y[i + half] = x[i + half] * c[i + half] + x[i] * s[i + half];
            }
        }
    });
    y
}

/// The gradient of x (`[batch, seq, heads·d]`) given y's (`[batch, heads, seq, d]`): the
/// rotation's transpose, `dx[i] = dy[i]·c[i] + dy[i+d/2]·s[i+d/2]` and
/// `dx[i+d/2] = dy[i+d/2]·c[i+d/2] − dy[i]·s[i]`.
pub fn backward(shape: &Shape, d_y: &[f32], cos: &[f32], sin: &[f32]) -> Vec<f32> {
    check(shape, d_y, cos, sin);
    let d = shape.head_dim;
    let half = d / 2;
    let mut d_x = vec![0f32; shape.len()];
    // Tasks own rows of dy's order and scatter into dx: each dx row is one dy row's image.
    let out = crate::SharedOut(d_x.as_mut_ptr());
    let rows = shape.len() / d;
    let per_task = rows_per_task(d);
    crate::for_each_task(rows.div_ceil(per_task), |t| {
        for o in t * per_task..((t + 1) * per_task).min(rows) {
            let (at, pos) = shape.source(o);
            let (g, c, s) = (&d_y[o * d..][..d], &cos[pos * d..][..d], &sin[pos * d..][..d]);
            // SAFETY: `source` maps output rows one to one onto input rows, so each task writes
            // rows of d_x no other task writes; at + d ≤ d_x.len() (checked by `check`).
            let dx = unsafe { out.slice(at, d) };
            for i in 0..half {
                dx[i] = g[i] * c[i] + g[i + half] * s[i + half];
                dx[i + half] = g[i + half] * c[i + half] - g[i] * s[i];
            }
        }
    });
    d_x
}

fn check(shape: &Shape, x: &[f32], cos: &[f32], sin: &[f32]) {
    let d = shape.head_dim;
    assert!(d.is_multiple_of(2), "rope: the head size must be even");
    assert_eq!(x.len(), shape.len(), "rope: x must be [batch, seq, heads·head_dim]");
    assert!(cos.len() >= shape.seq * d && sin.len() >= shape.seq * d, "rope: the tables must cover every position");
}

fn rows_per_task(d: usize) -> usize {
    (crate::ELEMENTS_PER_TASK / d.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::values;

    /// The composed definition in f64: transpose, then rotate each head's row.
    fn reference(shape: &Shape, x: &[f64], cos: &[f64], sin: &[f64]) -> Vec<f64> {
        let (d, half) = (shape.head_dim, shape.head_dim / 2);
        let mut y = vec![0f64; shape.len()];
        for b in 0..shape.batch {
            for h in 0..shape.heads {
                for p in 0..shape.seq {
                    let src = ((b * shape.seq + p) * shape.heads + h) * d;
                    let dst = ((b * shape.heads + h) * shape.seq + p) * d;
                    for i in 0..d {
                        let rotated = if i < half { -x[src + i + half] } else { x[src + i - half] };
                        y[dst + i] = x[src + i] * cos[p * d + i] + rotated * sin[p * d + i];
                    }
                }
            }
        }
        y
    }

    #[test]
    fn forward_and_backward_equal_the_definition_and_its_differences() {
        // More rows than one task holds, so both passes split.
        let shape = Shape { batch: 2, seq: 83, heads: 5, head_dim: 64 };
        assert!(shape.len() / 64 > rows_per_task(64));
        let x = values(shape.len(), 1);
        let cos = values(shape.seq * 64, 2);
        let sin = values(shape.seq * 64, 3);
        let g = values(shape.len(), 4);
        let f64s = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
        let (x64, c64, s64) = (f64s(&x), f64s(&cos), f64s(&sin));
        let y = forward(&shape, &x, &cos, &sin);
        for (a, b) in y.iter().zip(reference(&shape, &x64, &c64, &s64)) {
            assert!((*a as f64 - b).abs() < 1e-6, "{a} vs {b}");
        }
        // Linear in x, so the gradient of Σ g·y is exact by differences of any step.
        let d_x = backward(&shape, &g, &cos, &sin);
        let loss = |x: &[f64]| -> f64 { reference(&shape, x, &c64, &s64).iter().zip(&g).map(|(y, g)| y * *g as f64).sum() };
        for e in (0..x.len()).step_by(307) {
            let (mut p, mut m) = (x64.clone(), x64.clone());
            p[e] += 0.5;
            m[e] -= 0.5;
            let num = loss(&p) - loss(&m);
            assert!((d_x[e] as f64 - num).abs() < 1e-5 * (1.0 + num.abs()), "dx[{e}]: {} vs {num}", d_x[e]);
        }
    }
}
