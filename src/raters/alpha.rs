//! Krippendorff's α for several raters with missing ratings, at the interval and ordinal levels,
//! computed through the coincidence matrix (Krippendorff, "Computing Krippendorff's
//! Alpha-Reliability", 2011). It agrees with the `krippendorff` PyPI package to 1e-9 on the
//! fixtures of `tests/reference/make_agreement_fixtures.py` (`tests/agreement_reference.rs`).
//!
//! - The value domain is every distinct value in the data, sorted.
//! - A unit (an item) with fewer than two ratings is not pairable and adds nothing.
//! - Each ordered pair of ratings in a unit of m ratings adds 1/(m − 1) to the coincidence of
//!   its two values; nᶜ, the column sums, count the pairable values.
//! - α = 1 − D_o / D_e, with D_o = Σ o_ck δ²_ck and D_e = Σ nᶜ nᵏ δ²_ck / (n − 1) over c ≠ k.
//! - Interval: δ²_ck = (c − k)². Ordinal: δ²_ck = (Σ_{g=c..k} n_g − (n_c + n_k)/2)², the ranks
//!   the pairable values would take.

use serde::{Deserialize, Serialize};

/// How distances between two ratings are measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Differences of the scores themselves: 3 and 5 are as far apart as 7 and 9.
    Interval,
    /// Only the order counts, and a step is as wide as the number of ratings it crosses.
    Ordinal,
}

/// Krippendorff's α over `units`, each the ratings one item received (missing ones left out).
/// `None` when fewer than two values are pairable or every pairable value is the same, where
/// α is undefined (the `krippendorff` package returns NaN or refuses).
pub fn krippendorff_alpha<U: AsRef<[f64]>>(units: &[U], level: Level) -> Option<f64> {
    let mut domain: Vec<f64> = units.iter().flat_map(|u| u.as_ref().iter().copied()).collect();
    domain.sort_by(f64::total_cmp);
    domain.dedup();
    let v = domain.len();
    let index = |x: f64| domain.binary_search_by(|d| d.total_cmp(&x)).expect("every value is in the domain");

    // o: (v, v), the coincidences of values within units.
    let mut o = vec![0.0; v * v];
    for unit in units {
        let unit = unit.as_ref();
        let m = unit.len();
        if m < 2 {
            continue;
        }
        let weight = 1.0 / (m - 1) as f64;
        let idx: Vec<usize> = unit.iter().map(|&x| index(x)).collect();
        for (i, &a) in idx.iter().enumerate() {
            for (j, &b) in idx.iter().enumerate() {
                if i != j {
                    o[a * v + b] += weight;
                }
            }
        }
    }
    let n_v: Vec<f64> = (0..v).map(|c| (0..v).map(|k| o[c * v + k]).sum()).collect();
    let n: f64 = n_v.iter().sum();
    if n < 2.0 {
        return None;
    }
    let distance = |c: usize, k: usize| -> f64 {
        match level {
            Level::Interval => (domain[c] - domain[k]).powi(2),
            Level::Ordinal => {
                let (lo, hi) = if c <= k { (c, k) } else { (k, c) };
                let between: f64 = n_v[lo..=hi].iter().sum();
                (between - (n_v[lo] + n_v[hi]) / 2.0).powi(2)
            }
        }
    };
    let (mut observed, mut expected) = (0.0, 0.0);
    for c in 0..v {
        for k in 0..v {
            if c == k {
                continue;
            }
            let d = distance(c, k);
            observed += o[c * v + k] * d;
            expected += n_v[c] * n_v[k] * d;
        }
    }
    expected /= n - 1.0;
    (expected > 0.0).then(|| 1.0 - observed / expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_agreement_is_one_and_missing_ratings_are_skipped() {
        let units: Vec<Vec<f64>> = vec![vec![1.0, 1.0], vec![5.0, 5.0, 5.0], vec![9.0], vec![3.0, 3.0]];
        assert_eq!(krippendorff_alpha(&units, Level::Interval), Some(1.0));
        assert_eq!(krippendorff_alpha(&units, Level::Ordinal), Some(1.0));
    }

    #[test]
    fn undefined_without_variation_or_pairs() {
        assert_eq!(krippendorff_alpha(&[vec![4.0, 4.0], vec![4.0, 4.0]], Level::Interval), None);
        assert_eq!(krippendorff_alpha(&[vec![4.0], vec![6.0]], Level::Interval), None);
    }

    #[test]
    fn interval_by_hand() {
        // Two units (1, 2) and (2, 3): o = {1→2: 1, 2→1: 1, 2→3: 1, 3→2: 1}, so n = (1, 2, 1),
        // n = 4. D_o = 4 · 1 = 4. D_e = Σ_{c≠k} n_c n_k (c − k)² / 3
        //   = (2·(1·2·1) + 2·(1·1·4) + 2·(2·1·1)) / 3 = 16 / 3. α = 1 − 4 / (16/3) = 0.25.
        let a = krippendorff_alpha(&[vec![1.0, 2.0], vec![2.0, 3.0]], Level::Interval).unwrap();
        assert!((a - 0.25).abs() < 1e-12, "{a}");
        // Ordinal: δ²(1,2) = (1 + 2 − 1.5)² = 2.25, δ²(2,3) = 2.25, δ²(1,3) = (4 − 1)² = 9.
        // D_o = 4 · 2.25 = 9; D_e = (2·2·2.25 + 2·1·9 + 2·2·2.25) / 3 = 12. α = 1 − 9/12 = 0.25.
        let a = krippendorff_alpha(&[vec![1.0, 2.0], vec![2.0, 3.0]], Level::Ordinal).unwrap();
        assert!((a - 0.25).abs() < 1e-12, "{a}");
    }
}
