//! SwiGLU's gating, `silu(g) · u = g·σ(g)·u`, and its backward pass. Only g and u are kept:
//! σ(g) is recomputed in the backward pass instead of being stored as two more activations.

use crate::ELEMENTS_PER_TASK;

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `silu(gate) · up`, element by element.
pub fn forward(gate: &[f32], up: &[f32]) -> Vec<f32> {
    assert_eq!(gate.len(), up.len(), "swiglu: gate and up differ in length");
    let mut out = vec![0f32; gate.len()];
    crate::for_each_chunk(&mut out, ELEMENTS_PER_TASK, |i, out| {
        let at = i * ELEMENTS_PER_TASK;
        for ((y, &g), &u) in out.iter_mut().zip(&gate[at..]).zip(&up[at..]) {
            *y = g * sigmoid(g) * u;
        }
    });
    out
}

/// The gradients of gate and up given the output's: `dg = dy·u·σ(g)·(1 + g·(1 − σ(g)))`,
/// `du = dy·g·σ(g)`.
pub fn backward(gate: &[f32], up: &[f32], d_out: &[f32]) -> (Vec<f32>, Vec<f32>) {
    assert!(gate.len() == up.len() && gate.len() == d_out.len(), "swiglu backward: lengths differ");
    let (mut d_gate, mut d_up) = (vec![0f32; gate.len()], vec![0f32; gate.len()]);
    crate::for_each_chunk_pair(&mut d_gate, ELEMENTS_PER_TASK, &mut d_up, ELEMENTS_PER_TASK, |i, dg, du| {
        let at = i * ELEMENTS_PER_TASK;
        for (j, (dg, du)) in dg.iter_mut().zip(du.iter_mut()).enumerate() {
            let (g, u, dy) = (gate[at + j], up[at + j], d_out[at + j]);
            let s = sigmoid(g);
            *dg = dy * u * s * (1.0 + g * (1.0 - s));
            *du = dy * g * s;
        }
    });
    (d_gate, d_up)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::values;

    fn reference(g: f64, u: f64) -> f64 {
        g / (1.0 + (-g).exp()) * u
    }

    #[test]
    fn forward_and_backward_equal_the_definition_and_its_differences() {
        // Past one task's chunk, with gates far into both tails.
        let n = ELEMENTS_PER_TASK + 77;
        let gate: Vec<f32> = values(n, 1).iter().map(|x| x * 12.0).collect();
        let (up, dy) = (values(n, 2), values(n, 3));
        let y = forward(&gate, &up);
        let (dg, du) = backward(&gate, &up, &dy);
        let eps = 1e-3f64;
        for i in (0..n).step_by(13) {
            let (g, u) = (gate[i] as f64, up[i] as f64);
            assert!((y[i] as f64 - reference(g, u)).abs() < 1e-5 * (1.0 + reference(g, u).abs()), "y[{i}]");
            let num_g = (reference(g + eps, u) - reference(g - eps, u)) / (2.0 * eps) * dy[i] as f64;
            let num_u = (reference(g, u + eps) - reference(g, u - eps)) / (2.0 * eps) * dy[i] as f64;
            assert!((dg[i] as f64 - num_g).abs() < 1e-4 * (1.0 + num_g.abs()), "dg[{i}]: {} vs {num_g}", dg[i]);
            assert!((du[i] as f64 - num_u).abs() < 1e-4 * (1.0 + num_u.abs()), "du[{i}]: {} vs {num_u}", du[i]);
        }
    }
}
