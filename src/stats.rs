//! The statistics of the calibration benchmark, written to agree with scipy (checked in
//! `tests/stats_reference.rs` against `tests/reference/make_calibration_fixtures.py`):
//!
//! - a paired one-sided Wilcoxon signed-rank test (H1: the differences are > 0), exact for
//!   n ≤ 25 without ties or zeros, otherwise the normal approximation with Pratt's zero handling
//!   and the tie correction (scipy: `wilcoxon(d, zero_method="pratt", correction=False,
//!   alternative="greater", method=…)`);
//! - Cohen's d for paired samples (d_z: mean difference / its sample SD);
//! - Spearman's ρ (Pearson on average ranks), as `scipy.stats.spearmanr`.

use serde::Serialize;

/// Up to this many non-zero differences, with no ties, the exact null distribution is used.
pub const WILCOXON_EXACT_MAX_N: usize = 25;

/// JSON has no NaN: an undefined statistic is written as null, the same in the CLI and the browser.
fn finite_or_null<S: serde::Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    if x.is_finite() { s.serialize_f64(*x) } else { s.serialize_none() }
}

/// Mean, median, sample SD, Wilcoxon p and Cohen's d of paired differences: the per-group
/// summary of the calibration benchmark, serialised once for every front-end.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairedSummary {
    pub n: usize,
    #[serde(serialize_with = "finite_or_null")]
    pub mean: f64,
    #[serde(serialize_with = "finite_or_null")]
    pub median: f64,
    /// NaN (null in JSON) for n < 2.
    #[serde(serialize_with = "finite_or_null")]
    pub sd: f64,
    /// One-sided, H1: differences > 0. `None` when every difference is zero (or n = 0).
    pub wilcoxon_p: Option<f64>,
    /// `exact` or `normal`.
    pub wilcoxon_method: &'static str,
    /// `None` when the SD is 0 or n < 2.
    pub cohens_d: Option<f64>,
}

pub fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

pub fn median(x: &[f64]) -> f64 {
    let mut v = x.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// Sample standard deviation (n − 1 denominator).
pub fn sample_sd(x: &[f64]) -> f64 {
    if x.len() < 2 {
        return f64::NAN;
    }
    let m = mean(x);
    (x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len() - 1) as f64).sqrt()
}

/// Average ranks (1-based), ties sharing the mean of their positions; also the tie-group sizes.
pub fn average_ranks(x: &[f64]) -> (Vec<f64>, Vec<usize>) {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut groups = Vec::new();
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        groups.push(j - i + 1);
        i = j + 1;
    }
    (ranks, groups)
}

/// One-sided Wilcoxon signed-rank test of `d > 0`: `(p, method)`.
pub fn wilcoxon_greater(d: &[f64]) -> (Option<f64>, &'static str) {
    let n_zero = d.iter().filter(|&&v| v == 0.0).count();
    let n = d.len();
    if n == 0 || n_zero == n {
        return (None, "normal");
    }
    let abs: Vec<f64> = d.iter().map(|v| v.abs()).collect();
    let (ranks, groups) = average_ranks(&abs);
    let r_plus: f64 = d.iter().zip(&ranks).filter(|(v, _)| **v > 0.0).map(|(_, r)| r).sum();
    let has_ties = groups.iter().any(|&g| g > 1);

    if n_zero == 0 && !has_ties && n <= WILCOXON_EXACT_MAX_N {
        return (Some(exact_sf(n, r_plus.floor() as usize)), "exact");
    }
    // Normal approximation, Pratt: zeros are ranked, then their share is taken out.
    let nf = n as f64;
    let zf = n_zero as f64;
    let mn = nf * (nf + 1.0) / 4.0 - zf * (zf + 1.0) / 4.0;
    let mut var = nf * (nf + 1.0) * (2.0 * nf + 1.0) - zf * (zf + 1.0) * (2.0 * zf + 1.0);
    // The zeros are the smallest |d|, so they form the first tie group; Pratt drops it.
    let tie_groups = if n_zero > 0 { &groups[1..] } else { &groups[..] };
    let tie_term: f64 = tie_groups.iter().map(|&t| (t as f64).powi(3) - t as f64).sum();
    var = (var - tie_term / 2.0) / 24.0;
    let z = (r_plus - mn) / var.sqrt();
    (Some(normal_sf(z)), "normal")
}

/// P(T+ ≥ k) under H0 for n untied, non-zero differences: each subset of ranks 1..n is
/// equally likely, so count subsets by rank sum.
fn exact_sf(n: usize, k: usize) -> f64 {
    let max = n * (n + 1) / 2;
    let mut counts = vec![0f64; max + 1];
    counts[0] = 1.0;
    for rank in 1..=n {
        for s in (rank..=max).rev() {
            counts[s] += counts[s - rank];
        }
    }
    let total = 2f64.powi(n as i32);
    counts[k.min(max + 1)..].iter().sum::<f64>() / total
}

/// Upper tail of the standard normal, `erfc(z/√2)/2`.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Complementary error function to about 1e-15 relative: W. J. Cody's rational approximations
/// (Math. Comp. 23, 1969), in his three ranges.
pub fn erfc(x: f64) -> f64 {
    if x < 0.0 {
        2.0 - erfc(-x)
    } else if x < 0.5 {
        1.0 - erf_small(x)
    } else if x <= 4.0 {
        erfc_middle(x)
    } else if x < 27.0 {
        erfc_asymptotic(x)
    } else {
        0.0
    }
}

/// erfc for 0.5 ≤ x ≤ 4 (Cody's second range).
#[allow(clippy::excessive_precision)] // Cody's published constants, kept digit for digit
fn erfc_middle(x: f64) -> f64 {
    let c = [
        5.641_884_969_886_701e-1,
        8.883_149_794_388_376,
        6.611_919_063_714_163e1,
        2.986_351_381_974_001e2,
        8.819_522_212_417_69e2,
        1.712_047_612_634_070_7e3,
        2.051_078_377_826_071_6e3,
        1.230_339_354_797_997_2e3,
        2.153_115_354_744_038_3e-8,
    ];
    let d = [
        1.574_492_611_070_983_4e1,
        1.176_939_508_913_125e2,
        5.371_811_018_620_099e2,
        1.621_389_574_566_690_3e3,
        3.290_799_235_733_459_6e3,
        4.362_619_090_143_247e3,
        3.439_367_674_143_721_6e3,
        1.230_339_354_803_749_4e3,
    ];
    let mut num = c[8] * x;
    let mut den = x;
    for i in 0..7 {
        num = (num + c[i]) * x;
        den = (den + d[i]) * x;
    }
    exp_neg_sq(x) * (num + c[7]) / (den + d[7])
}

/// erf for |x| < 0.5 (Cody's first range).
#[allow(clippy::excessive_precision)] // Cody's published constants, kept digit for digit
fn erf_small(x: f64) -> f64 {
    let a = [3.161_123_743_870_565_6, 1.138_641_541_510_501_6e2, 3.774_852_376_853_02e2, 3.209_377_589_138_469_5e3, 1.857_777_061_846_031_5e-1];
    let b = [2.360_129_095_234_412_1e1, 2.440_246_379_344_441_7e2, 1.282_616_526_077_372_3e3, 2.844_236_833_439_171e3];
    let z = x * x;
    let mut num = a[4] * z;
    let mut den = z;
    for i in 0..3 {
        num = (num + a[i]) * z;
        den = (den + b[i]) * z;
    }
    x * (num + a[3]) / (den + b[3])
}

/// erfc for x > 4 (Cody's third range).
#[allow(clippy::excessive_precision)] // Cody's published constants, kept digit for digit
fn erfc_asymptotic(x: f64) -> f64 {
    let p = [3.053_266_349_612_323_4e-1, 3.603_448_999_498_044_4e-1, 1.257_817_261_112_292_5e-1, 1.608_378_514_874_227_6e-2, 6.587_491_615_298_378e-4, 1.631_538_713_730_71e-2];
    let q = [2.568_520_192_289_822, 1.872_952_849_923_460_5, 5.279_051_029_514_285e-1, 6.051_834_131_244_132e-2, 2.335_204_976_268_691_8e-3];
    let z = 1.0 / (x * x);
    let mut num = p[5] * z;
    let mut den = z;
    for i in 0..4 {
        num = (num + p[i]) * z;
        den = (den + q[i]) * z;
    }
    let r = z * (num + p[4]) / (den + q[4]);
    let r = (1.0 / std::f64::consts::PI.sqrt() - r) / x;
    exp_neg_sq(x) * r
}

/// exp(−x²) computed as exp(−xs²)·exp(−(x−xs)(x+xs)) with xs = x rounded to 1/16, which keeps
/// the error of the large exponent small.
fn exp_neg_sq(x: f64) -> f64 {
    let xs = (x * 16.0).trunc() / 16.0;
    let del = (x - xs) * (x + xs);
    (-xs * xs).exp() * (-del).exp()
}

/// Cohen's d for paired samples: mean(d) / SD(d).
pub fn cohens_d_paired(d: &[f64]) -> Option<f64> {
    let sd = sample_sd(d);
    (sd.is_finite() && sd > 0.0).then(|| mean(d) / sd)
}

/// The full summary of paired differences.
pub fn paired_summary(d: &[f64]) -> PairedSummary {
    let (wilcoxon_p, wilcoxon_method) = wilcoxon_greater(d);
    PairedSummary {
        n: d.len(),
        mean: if d.is_empty() { f64::NAN } else { mean(d) },
        median: if d.is_empty() { f64::NAN } else { median(d) },
        sd: sample_sd(d),
        wilcoxon_p,
        wilcoxon_method,
        cohens_d: cohens_d_paired(d),
    }
}

/// Spearman's rank correlation; `None` if either side is constant or n < 2.
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    assert_eq!(x.len(), y.len());
    if x.len() < 2 {
        return None;
    }
    let (rx, _) = average_ranks(x);
    let (ry, _) = average_ranks(y);
    let (mx, my) = (mean(&rx), mean(&ry));
    let cov: f64 = rx.iter().zip(&ry).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f64 = rx.iter().map(|a| (a - mx).powi(2)).sum();
    let vy: f64 = ry.iter().map(|b| (b - my).powi(2)).sum();
    (vx > 0.0 && vy > 0.0).then(|| cov / (vx * vy).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erfc_matches_the_c_library() {
        // Python's math.erfc (glibc) at points in each of Cody's ranges.
        let cases = [
            (-1.5, 1.9661051464753108),
            (0.1, 0.8875370839817152),
            (0.49, 0.4883317388114769),
            (0.5, 0.4795001221869535),
            (1.0, 0.15729920705028513),
            (2.0, 0.004677734981047265),
            (3.9, 3.479224859723177e-08),
            (4.0, 1.541725790028002e-08),
            (4.1, 6.700027654084918e-09),
            (6.0, 2.1519736712498916e-17),
            (10.0, 2.088487583762545e-45),
        ];
        for (x, want) in cases {
            let got = erfc(x);
            assert!(((got - want) / want).abs() < 1e-13, "erfc({x}) = {got}, want {want}");
        }
    }

    #[test]
    fn ranks_average_ties() {
        let (r, groups) = average_ranks(&[3.0, 1.0, 3.0, 2.0]);
        assert_eq!(r, [3.5, 1.0, 3.5, 2.0]);
        assert_eq!(groups, [1, 1, 2]);
    }
}
