//! The optimizer side of a step: the learning-rate schedule and PyTorch's AdamW.

use super::config::TrainConfig;
use burn::tensor::Tensor;

/// The learning rate at optimizer step `step` (1-based) of `total`: linear warmup to the peak
/// over `warmup` steps, then cosine decay towards 0 (reached one step after the last).
pub fn learning_rate_at(peak: f64, step: usize, total: usize, warmup: usize) -> f64 {
    if step <= warmup {
        return peak * step as f64 / warmup as f64;
    }
    let decay_steps = (total - warmup) as f64;
    let progress = (step - warmup - 1) as f64 / decay_steps;
    peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// AdamW moments for one factor pair.
#[derive(Debug, Clone)]
pub(crate) struct Moments {
    pub m_a: Tensor<2>,
    pub v_a: Tensor<2>,
    pub m_b: Tensor<2>,
    pub v_b: Tensor<2>,
}

/// One AdamW update at step `t` (1-based) with learning rate `lr`, as `torch.optim.AdamW`:
/// decoupled weight decay, bias-corrected moments.
pub(crate) struct AdamW {
    pub(super) beta1: f64,
    pub(super) beta2: f64,
    pub(super) epsilon: f64,
    pub(super) lr: f64,
    pub(super) bias1: f64,
    pub(super) bias2_sqrt: f64,
    pub(super) decay: f64,
}

impl AdamW {
    pub fn at_step(config: &TrainConfig, t: usize, lr: f64) -> Self {
        let t = t as i32;
        AdamW {
            beta1: config.beta1,
            beta2: config.beta2,
            epsilon: config.epsilon,
            lr,
            bias1: 1.0 - config.beta1.powi(t),
            bias2_sqrt: (1.0 - config.beta2.powi(t)).sqrt(),
            decay: 1.0 - lr * config.weight_decay,
        }
    }

    /// Returns the updated (parameter, first moment, second moment).
    pub fn update(&self, p: Tensor<2>, g: Tensor<2>, m: Tensor<2>, v: Tensor<2>) -> (Tensor<2>, Tensor<2>, Tensor<2>) {
        let m = m.mul_scalar(self.beta1) + g.clone().mul_scalar(1.0 - self.beta1);
        let v = v.mul_scalar(self.beta2) + g.square().mul_scalar(1.0 - self.beta2);
        let denom = v.clone().sqrt().div_scalar(self.bias2_sqrt).add_scalar(self.epsilon);
        let p = p.mul_scalar(self.decay) - m.clone().div(denom).mul_scalar(self.lr / self.bias1);
        (p, m, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn learning_rate_warms_up_peaks_and_decays_to_near_zero() {
        // 10 steps, 2 of warmup, peak 1e-3.
        let lr = |step| learning_rate_at(1e-3, step, 10, 2);
        assert!((lr(1) - 5e-4).abs() < 1e-15, "half-way through warmup");
        assert!((lr(2) - 1e-3).abs() < 1e-15, "the peak ends warmup");
        // The first decay step still sits at the peak: progress 0 → cos 0 = 1.
        assert!((lr(3) - 1e-3).abs() < 1e-15);
        // Step 7: progress (7 − 2 − 1) / 8 = 1/2 → half the peak.
        assert!((lr(7) - 5e-4).abs() < 1e-15);
        // The last step: progress 7/8 → 0.5·(1 + cos(7π/8)) = 0.0380602…
        assert!((lr(10) - 1e-3 * 0.5 * (1.0 + (7.0 * std::f64::consts::PI / 8.0).cos())).abs() < 1e-15);
        assert!(lr(10) < 4e-5 && lr(10) > 3.8e-5);
    }

    #[test]
    fn adamw_first_step_moves_each_weight_by_the_learning_rate() {
        // At t = 1 the bias-corrected update is g / (|g| + ε) ≈ sign(g), so each weight moves by
        // lr against its gradient, after the decay p·(1 − lr·wd).
        let config = TrainConfig { weight_decay: 0.1, ..TrainConfig::default() };
        let device = crate::device::cpu();
        let t = |v: [f32; 2]| Tensor::<2>::from_data(TensorData::new(v.to_vec(), [1, 2]), &device);
        let opt = AdamW::at_step(&config, 1, 0.01);
        let (p, m, v) = opt.update(t([1.0, -2.0]), t([0.5, -4.0]), t([0.0, 0.0]), t([0.0, 0.0]));
        let read = |x: Tensor<2>| x.into_data().try_to_vec::<f32>().unwrap();
        let p = read(p);
        assert!((p[0] - (1.0 * 0.999 - 0.01)).abs() < 1e-6, "{p:?}");
        assert!((p[1] - (-2.0 * 0.999 + 0.01)).abs() < 1e-6, "{p:?}");
        assert_eq!(read(m), vec![0.05, -0.4]);
        let v = read(v);
        assert!((v[0] - 0.00025).abs() < 1e-9 && (v[1] - 0.016).abs() < 1e-8, "{v:?}");
    }
}
