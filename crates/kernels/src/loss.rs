//! The next-token loss: each scored row's log-probability of its target token,
//! `logits[target] − logsumexp(logits)`, and its backward pass, `g·(onehot − softmax)`.
//!
//! Composed from tensor ops this is a full-vocabulary log-softmax (a `[rows, vocab]` tensor
//! kept for the backward pass), a gather, and a scatter into a zeroed `[rows, vocab]` gradient.
//! Here the forward pass keeps one float per row, and the backward pass writes the logits'
//! gradient once, row by row, on every core.

/// Each row's log-probability of its target and its log-sum-exp, for `logits` `[rows, vocab]`.
pub fn target_log_probs(logits: &[f32], vocab: usize, targets: &[usize]) -> (Vec<f32>, Vec<f32>) {
    check(logits, vocab, targets);
    let rows = targets.len();
    let (mut log_probs, mut lse) = (vec![0f32; rows], vec![0f32; rows]);
    crate::for_each_chunk_pair(&mut log_probs, 1, &mut lse, 1, |r, log_prob, lse| {
        let row = &logits[r * vocab..][..vocab];
        lse[0] = log_sum_exp(row);
        log_prob[0] = row[targets[r]] - lse[0];
    });
    (log_probs, lse)
}

/// The logits' gradient, `[rows, vocab]`, given each row's log-probability gradient.
pub fn target_log_probs_backward(logits: &[f32], vocab: usize, targets: &[usize], lse: &[f32], d_log_probs: &[f32]) -> Vec<f32> {
    check(logits, vocab, targets);
    assert!(lse.len() == targets.len() && d_log_probs.len() == targets.len(), "loss backward: one value per row");
    let mut d_logits = vec![0f32; logits.len()];
    crate::for_each_chunk(&mut d_logits, vocab, |r, d_row| {
        let (row, l, g) = (&logits[r * vocab..][..vocab], lse[r], d_log_probs[r]);
        for (d, &x) in d_row.iter_mut().zip(row) {
            *d = -g * (x - l).exp();
        }
        d_row[targets[r]] += g;
    });
    d_logits
}

fn check(logits: &[f32], vocab: usize, targets: &[usize]) {
    assert_eq!(logits.len(), targets.len() * vocab, "loss: logits must be [rows, vocab]");
    if let Some(t) = targets.iter().find(|&&t| t >= vocab) {
        panic!("loss: target token {t} is outside the vocabulary of {vocab}");
    }
}

/// `max + ln Σ exp(x − max)`, the sum in f64: a 150k-token vocabulary's sum in f32 would lose
/// digits to the running total.
fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = row.iter().map(|&x| (x - max).exp() as f64).sum();
    max + sum.ln() as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::values;

    fn reference(row: &[f32], target: usize) -> f64 {
        let z: f64 = row.iter().map(|&x| (x as f64).exp()).sum();
        row[target] as f64 - z.ln()
    }

    #[test]
    fn log_probs_and_gradient_equal_the_definition_and_its_differences() {
        let (rows, vocab) = (5, 1000);
        let logits: Vec<f32> = values(rows * vocab, 1).iter().map(|x| x * 8.0).collect();
        let targets = [0, 999, 17, 17, 500];
        let g = values(rows, 2);
        let (lp, lse) = target_log_probs(&logits, vocab, &targets);
        let d = target_log_probs_backward(&logits, vocab, &targets, &lse, &g);
        let eps = 1e-2f32;
        for r in 0..rows {
            let row = &logits[r * vocab..][..vocab];
            assert!((lp[r] as f64 - reference(row, targets[r])).abs() < 1e-5, "row {r}");
            for c in (0..vocab).step_by(7).chain([targets[r]]) {
                let (mut plus, mut minus) = (row.to_vec(), row.to_vec());
                plus[c] += eps;
                minus[c] -= eps;
                let num = (reference(&plus, targets[r]) - reference(&minus, targets[r])) / (2.0 * eps as f64) * g[r] as f64;
                let got = d[r * vocab + c] as f64;
                assert!((got - num).abs() < 1e-4, "row {r} col {c}: {got} vs {num}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "outside the vocabulary")]
    fn a_target_past_the_vocabulary_is_refused() {
        target_log_probs(&[0.0; 8], 4, &[1, 4]);
    }
}
