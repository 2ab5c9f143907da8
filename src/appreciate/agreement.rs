//! Agreement of a model's verdict distributions with the expert's scores, and a paired,
//! seeded bootstrap for the tuned − base difference of each figure. Checked against scipy
//! (Spearman) and numpy (percentiles of the same resamples) in `tests/appreciation_reference.rs`.

use crate::rng::Rng;
use crate::stats::spearman;
use serde::Serialize;

/// How well expected scores track the expert's, over records with an expert score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Agreement {
    pub n: usize,
    /// Spearman ρ of expected score vs expert score (undefined when either side is constant).
    pub spearman: Option<f64>,
    /// Mean |expected − expert|.
    pub mae: f64,
    /// Share of records with |expected − expert| ≤ 1.
    pub within_1: f64,
    /// Mean −ln p(expert's score), nats.
    pub log_loss: f64,
}

/// One record's inputs to [`Agreement`]: expert score, expected score, p(expert's score).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judged {
    pub expert: f64,
    pub expected: f64,
    pub p_expert: f64,
}

pub fn agreement(items: &[Judged]) -> Agreement {
    let n = items.len();
    let expert: Vec<f64> = items.iter().map(|j| j.expert).collect();
    let expected: Vec<f64> = items.iter().map(|j| j.expected).collect();
    let mean = |f: &dyn Fn(&Judged) -> f64| if n == 0 { f64::NAN } else { items.iter().map(f).sum::<f64>() / n as f64 };
    Agreement {
        n,
        spearman: spearman(&expert, &expected),
        mae: mean(&|j| (j.expected - j.expert).abs()),
        within_1: mean(&|j| if (j.expected - j.expert).abs() <= 1.0 { 1.0 } else { 0.0 }),
        log_loss: mean(&|j| -j.p_expert.max(f64::MIN_POSITIVE).ln()),
    }
}

/// A tuned − base difference with its bootstrap confidence interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    pub tuned_minus_base: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// Resamples on which the figure was defined (Spearman is not, on a constant resample).
    pub resamples: usize,
}

/// Tuned − base for each agreement figure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgreementDifference {
    /// The confidence level of the intervals, e.g. 0.95.
    pub level: f64,
    pub spearman: Difference,
    pub mae: Difference,
    pub within_1: Difference,
    pub log_loss: Difference,
}

/// `count` resamples of `0..n` with replacement, from `seed`.
pub fn resample_indices(n: usize, count: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = Rng::new(seed);
    (0..count).map(|_| (0..n).map(|_| (rng.next_u64() % n as u64) as usize).collect()).collect()
}

/// The `q`-quantile (0–1) of `values` with numpy's default (linear) interpolation.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(v[lo] + (v[hi] - v[lo]) * (pos - lo as f64))
}

/// Paired bootstrap of tuned − base over the same resampled records.
pub fn paired_difference(base: &[Judged], tuned: &[Judged], resamples: &[Vec<usize>], level: f64) -> AgreementDifference {
    let full = (agreement(base), agreement(tuned));
    let figure = |f: fn(&Agreement) -> Option<f64>| {
        let point = f(&full.1).zip(f(&full.0)).map(|(t, b)| t - b);
        let diffs: Vec<f64> = resamples
            .iter()
            .filter_map(|idx| {
                let pick = |s: &[Judged]| idx.iter().map(|&i| s[i]).collect::<Vec<_>>();
                let (b, t) = (agreement(&pick(base)), agreement(&pick(tuned)));
                f(&t).zip(f(&b)).map(|(t, b)| t - b)
            })
            .collect();
        let tail = (1.0 - level) / 2.0;
        Difference { tuned_minus_base: point, ci_low: percentile(&diffs, tail), ci_high: percentile(&diffs, 1.0 - tail), resamples: diffs.len() }
    };
    AgreementDifference {
        level,
        spearman: figure(|a| a.spearman),
        mae: figure(|a| Some(a.mae)),
        within_1: figure(|a| Some(a.within_1)),
        log_loss: figure(|a| Some(a.log_loss)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_interpolates_like_numpy() {
        // numpy.percentile([1, 2, 3, 4], [2.5, 50, 97.5]) = [1.075, 2.5, 3.925]
        let v = [4.0, 1.0, 3.0, 2.0];
        assert!((percentile(&v, 0.025).unwrap() - 1.075).abs() < 1e-12);
        assert!((percentile(&v, 0.5).unwrap() - 2.5).abs() < 1e-12);
        assert!((percentile(&v, 0.975).unwrap() - 3.925).abs() < 1e-12);
    }

    #[test]
    fn agreement_by_hand() {
        let j = |expert, expected, p_expert| Judged { expert, expected, p_expert };
        let a = agreement(&[j(3.0, 3.5, 0.5), j(6.0, 4.0, 0.25), j(9.0, 8.5, 1.0)]);
        assert_eq!(a.n, 3);
        assert_eq!(a.spearman, Some(1.0));
        assert!((a.mae - 1.0).abs() < 1e-12);
        assert!((a.within_1 - 2.0 / 3.0).abs() < 1e-12);
        assert!((a.log_loss - (2f64.ln() + 4f64.ln()) / 3.0).abs() < 1e-12);
    }
}
