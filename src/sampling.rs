//! Picking the next token from a row of logits: the settings (greedy, temperature, top-k,
//! top-p, repetition penalty, seed) and the host sampler. The GPU decode step picks on the device
//! with the same algorithm (`model::gpu_decode`'s `sample_kernel`), from the same hash and order
//! functions as here, so both give the same token from the same logits.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Sampling settings. Defaults follow transformers' `generate` defaults for a fair comparison:
/// repetition penalty off, and `temperature = 0` means greedy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// Softmax temperature; `0` selects greedy decoding.
    pub temperature: f32,
    /// Keep only the `k` most likely tokens (`0` = off).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability mass reaches `p` (`1.0` = off).
    pub top_p: f32,
    /// HF-style repetition penalty over prompt and output (`1.0` = off).
    pub repetition_penalty: f32,
    /// Seed of the sampling RNG.
    pub seed: u64,
    /// Upper bound on generated tokens.
    pub max_new_tokens: usize,
    /// Decode with f32 activations: every product of a decode step as the reference stack
    /// computes it. By default (`false`), on CPUs with AVX-512 VNNI, a decode step's products
    /// with quantized weights take x rounded to 8 bits a value (a scale per 32), as llama.cpp
    /// decodes: up to twice as fast, and a logit moves by about as much as a second rounding of
    /// the weights would move it (`cqa_quant::with_int8_activations`). Scoring never rounds x.
    pub f32_activations: bool,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams { temperature: 0.0, top_k: 0, top_p: 1.0, repetition_penalty: 1.0, seed: 42, max_new_tokens: 128, f32_activations: false }
    }
}

/// Picks the next token from a logits row.
///
/// Sampling is Gumbel-max: every token the filters keep gets noise `g = -ln(-ln u)`, and the
/// largest `(l - max) / T + g` wins, which draws from the softmax of the kept logits exactly as
/// the inverse CDF would. Each `u` comes from a counter-based hash of (seed, draw, token id), so
/// a token's noise depends on nothing else: the GPU computes them all in parallel and picks the
/// same token from the same logits (`model::gpu_decode`'s `sample_kernel` follows this function
/// step by step). Top-k and top-p are floors on the logits' order: the k-th largest logit (its
/// ties kept too), then the smallest logit of the shortest run from the top whose mass reaches p.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    /// Draws made so far: the counter of the next one.
    draws: u32,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Result<Self> {
        let p = &params;
        if !(p.temperature >= 0.0 && p.temperature.is_finite()) {
            return Err(Error::Input(format!("temperature must be ≥ 0, got {}", p.temperature)));
        }
        if !(p.top_p > 0.0 && p.top_p <= 1.0) {
            return Err(Error::Input(format!("top-p must be in (0, 1], got {}", p.top_p)));
        }
        if !(p.repetition_penalty > 0.0 && p.repetition_penalty.is_finite()) {
            return Err(Error::Input(format!("repetition penalty must be > 0, got {}", p.repetition_penalty)));
        }
        Ok(Sampler { params, draws: 0 })
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// The counter of the next draw.
    pub fn draws(&self) -> u32 {
        self.draws
    }

    /// Counts a draw made elsewhere (on the GPU), so that a host draw after it uses the next counter.
    pub fn count_draw(&mut self) {
        self.draws = self.draws.wrapping_add(1);
    }

    /// Whether each pick is the plain argmax (greedy, no repetition penalty).
    pub fn is_plain_greedy(&self) -> bool {
        self.params.temperature == 0.0 && self.params.repetition_penalty == 1.0
    }

    /// `1 / T` as the GPU gets it (multiplying by it, not dividing, so both sides round alike).
    pub fn inverse_temperature(&self) -> f32 {
        if self.params.temperature == 0.0 { 0.0 } else { 1.0 / self.params.temperature }
    }

    /// Chooses a token given the logits of the last position and the ids so far (the logits are
    /// left penalized).
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        let draw = self.draws;
        self.count_draw();
        let p = &self.params;
        if p.repetition_penalty != 1.0 {
            let mut seen = history.to_vec();
            seen.sort_unstable();
            seen.dedup();
            for id in seen {
                if let Some(l) = logits.get_mut(id as usize) {
                    *l = if *l > 0.0 { *l / p.repetition_penalty } else { *l * p.repetition_penalty };
                }
            }
        }
        if p.temperature == 0.0 || logits.is_empty() {
            return argmax(logits);
        }
        let inv_t = self.inverse_temperature();
        let max = logits.iter().copied().fold(-3.4e38f32, f32::max);
        let keys: Vec<u32> = logits.iter().map(|&l| order_key(l)).collect();
        let mut floor = 0u32;
        if p.top_k > 0 && p.top_k < logits.len() {
            let mut sorted = keys.clone();
            let (_, kth, _) = sorted.select_nth_unstable_by(p.top_k - 1, |a, b| b.cmp(a));
            floor = *kth;
        }
        if p.top_p < 1.0 {
            let mut kept: Vec<(u32, f64)> = keys
                .iter()
                .zip(logits.iter())
                .filter(|(k, _)| **k >= floor)
                .map(|(&k, &l)| (k, ((l - max) * inv_t).exp() as f64))
                .collect();
            kept.sort_unstable_by(|a, b| b.0.cmp(&a.0));
            let target = p.top_p as f64 * kept.iter().map(|(_, w)| w).sum::<f64>();
            let mut mass = 0.0;
            for &(key, w) in &kept {
                mass += w;
                if mass >= target {
                    floor = floor.max(key);
                    break;
                }
            }
        }
        let key = draw_key(p.seed, draw);
        let mut best = (f32::NEG_INFINITY, None);
        for (i, (&l, &k)) in logits.iter().zip(&keys).enumerate() {
            if k >= floor {
                let score = (l - max) * inv_t + gumbel(key, i as u32);
                if best.1.is_none() || score > best.0 {
                    best = (score, Some(i as u32));
                }
            }
        }
        best.1.unwrap_or(0)
    }
}

/// A 32-bit mixer (the "lowbias32" constants), as `sample_kernel`'s.
pub fn mix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

/// The key of draw number `draw` of `seed`: every token's noise in that draw hangs on it.
pub fn draw_key(seed: u64, draw: u32) -> u32 {
    mix32(mix32(mix32((seed >> 32) as u32 ^ 0x9e37_79b9) ^ seed as u32) ^ draw)
}

/// Token `token`'s Gumbel noise in the draw `key`: `u` an odd multiple of 2⁻²⁴ in (0, 1), exact
/// in f32 everywhere, then `-ln(-ln u)`.
pub fn gumbel(key: u32, token: u32) -> f32 {
    let h = mix32(key ^ mix32(token));
    let u = ((h >> 9) * 2 + 1) as f32 * (1.0 / (1u32 << 24) as f32);
    -(-u.ln()).ln()
}

/// A float's place in the total order as an unsigned integer: larger floats, larger keys.
pub fn order_key(v: f32) -> u32 {
    let bits = v.to_bits();
    if bits >> 31 == 1 { !bits } else { bits | 0x8000_0000 }
}

/// Index of the largest value; the first one on ties (as `torch.argmax`).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_k: usize, top_p: f32) -> SamplingParams {
        SamplingParams { temperature, top_k, top_p, ..Default::default() }
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = Sampler::new(params(0.0, 0, 1.0)).unwrap();
        assert_eq!(s.sample(&mut [0.1, 3.0, 3.0, -1.0], &[]), 1);
    }

    #[test]
    fn top_k_one_is_greedy() {
        let mut s = Sampler::new(params(1.5, 1, 1.0)).unwrap();
        for _ in 0..20 {
            assert_eq!(s.sample(&mut [0.1, 0.2, 2.0, 1.9], &[]), 2);
        }
    }

    #[test]
    fn top_p_cuts_the_tail() {
        // probs ≈ [0.88, 0.12, ~0]: with p = 0.5 only the first survives.
        let mut s = Sampler::new(params(1.0, 0, 0.5)).unwrap();
        for _ in 0..50 {
            assert_eq!(s.sample(&mut [4.0, 2.0, -10.0], &[]), 0);
        }
    }

    #[test]
    fn sampling_follows_the_distribution_and_the_seed() {
        let logits = [0.0f32, (3.0f32).ln()]; // p = [0.25, 0.75]
        let mut s = Sampler::new(params(1.0, 0, 1.0)).unwrap();
        let ones = (0..4000).filter(|_| s.sample(&mut logits.clone(), &[]) == 1).count();
        assert!((ones as f64 / 4000.0 - 0.75).abs() < 0.03, "{ones}");
        let draw = |seed| {
            let mut s = Sampler::new(SamplingParams { seed, temperature: 1.0, ..Default::default() }).unwrap();
            (0..32).map(|_| s.sample(&mut logits.clone(), &[])).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }

    #[test]
    fn repetition_penalty_is_hf_style() {
        let mut s = Sampler::new(SamplingParams { repetition_penalty: 2.0, ..Default::default() }).unwrap();
        let mut logits = [3.0, 2.0, -1.0];
        // Token 0 seen: 3.0 → 1.5, so token 1 (2.0) wins.
        assert_eq!(s.sample(&mut logits, &[0, 0, 2]), 1);
        assert_eq!(logits, [1.5, 2.0, -2.0]);
    }

    #[test]
    fn bad_parameters_are_rejected() {
        assert!(Sampler::new(params(-1.0, 0, 1.0)).is_err());
        assert!(Sampler::new(params(1.0, 0, 0.0)).is_err());
    }
}
