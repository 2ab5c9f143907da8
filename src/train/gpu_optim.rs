//! The optimizer side of a step on the GPU backends: global-norm clipping and AdamW for every
//! LoRA factor in two kernels a factor and one for the step, where burn's ops take about
//! eighteen a factor (square, sum and the running total for the norm, the clip's multiply, then
//! fourteen element-wise ops for AdamW). The default model's 420 factors made that ~7,500 of a
//! QLoRA step's ~15,800 dispatches, each tens of microseconds on WebGPU.
//!
//! The arithmetic is [`AdamW::update`]'s and the clipping `Trainer::step`'s, op for op in f32, so
//! the two paths agree to rounding (the test below holds them to 1e-6).

use super::optim::AdamW;
use crate::gpu_reduce::workgroup_sum;
use crate::quant::gpu::elementwise_launch;
use burn::backend::TensorMetadata;
use burn::tensor::{DType, Shape, Tensor};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

/// Threads of the reduction workgroups.
const THREADS: u32 = 256;

/// `partials[slot] = Σ g²`: one workgroup.
#[cube(launch_unchecked)]
fn sum_squares_kernel(g: &[f32], partials: &mut [f32], n: u32, slot: u32) {
    let unit = UNIT_POS as usize;
    let mut acc = 0.0f32;
    let mut i = unit;
    while i < n as usize {
        let x = g[i];
        acc += x * x;
        i += comptime![THREADS as usize];
    }
    let mut s = Shared::<[f32]>::new_slice(comptime![THREADS as usize]);
    let total = workgroup_sum(&mut s, acc, THREADS);
    if unit == 0 {
        partials[slot as usize] = total;
    }
}

/// `out[0]` the gradients' global norm, `out[1]` the factor they are multiplied by:
/// `min(max_norm / (norm + 1e-6), 1)` with `clip`, 1 without. One workgroup.
#[cube(launch_unchecked)]
fn clip_kernel(partials: &[f32], out: &mut [f32], count: u32, max_norm: f32, #[comptime] clip: bool) {
    let unit = UNIT_POS as usize;
    let mut acc = 0.0f32;
    let mut i = unit;
    while i < count as usize {
        acc += partials[i];
        i += comptime![THREADS as usize];
    }
    let mut s = Shared::<[f32]>::new_slice(comptime![THREADS as usize]);
    let total = workgroup_sum(&mut s, acc, THREADS);
    if unit == 0 {
        let norm = total.sqrt();
        let mut coef = 1.0f32;
        if comptime![clip] {
            coef = (1.0f32 / (norm + 0.000001f32)) * max_norm;
            if coef > 1.0f32 {
                coef = 1.0f32;
            }
        }
        out[0] = norm;
        out[1] = coef;
    }
}

/// AdamW on one factor, its gradient first multiplied by `clip[1]` (see [`AdamW::update`]).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn adamw_kernel(
    p: &[f32],
    g: &[f32],
    m: &[f32],
    v: &[f32],
    clip: &[f32],
    p_out: &mut [f32],
    m_out: &mut [f32],
    v_out: &mut [f32],
    n: u32,
    beta1: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    bias2_sqrt: f32,
    epsilon: f32,
    decay: f32,
    step_size: f32,
) {
    let i = ABSOLUTE_POS;
    if i < n as usize {
        let grad = g[i] * clip[1];
        let m1 = m[i] * beta1 + grad * one_minus_beta1;
        let v1 = v[i] * beta2 + grad * grad * one_minus_beta2;
        let denom = v1.sqrt() / bias2_sqrt + epsilon;
        p_out[i] = p[i] * decay - m1 / denom * step_size;
        m_out[i] = m1;
        v_out[i] = v1;
    }
}

/// One factor's parameter, gradient and moments.
pub(super) struct Factor {
    pub p: Tensor<2>,
    pub g: Tensor<2>,
    pub m: Tensor<2>,
    pub v: Tensor<2>,
}

fn cube(t: &Tensor<2>) -> Option<CubeTensor> {
    t.clone().try_into_primitive::<CubeBackend>().ok().map(into_contiguous)
}

fn tensor(t: CubeTensor) -> Tensor<2> {
    Tensor::from_primitive::<CubeBackend>(t)
}

/// Clips and applies AdamW to every factor on the GPU: the updated (parameter, first moment,
/// second moment) of each, and the gradients' global norm (`[1]`, before clipping). `None` where
/// the tensors are not plain GPU tensors (the CPU; burn's fusion build): the caller's ops do it.
pub(super) fn clip_and_update(factors: &[Factor], adamw: &AdamW, max_grad_norm: Option<f64>) -> Option<(Vec<[Tensor<2>; 3]>, Tensor<1>)> {
    let first = cube(&factors.first()?.g)?;
    let (client, device) = (first.client.clone(), first.device.clone());
    let alloc = |n: usize| empty_device_dtype(client.clone(), device.clone(), Shape::new([n.max(1)]), DType::F32);
    let partials = alloc(factors.len());
    let clip = alloc(2);
    let mut cubes = Vec::with_capacity(factors.len());
    for (slot, f) in factors.iter().enumerate() {
        let [p, g, m, v] = [&f.p, &f.g, &f.m, &f.v].map(cube);
        let (p, g, m, v) = (p?, g?, m?, v?);
        let n = g.shape().num_elements();
        unsafe {
            sum_squares_kernel::launch_unchecked(
                &client,
                CubeCount::Static(1, 1, 1),
                CubeDim::new_1d(THREADS),
                g.clone().into_buffer_arg(),
                partials.clone().into_buffer_arg(),
                n as u32,
                slot as u32,
            );
        }
        cubes.push((p, g, m, v, n));
    }
    unsafe {
        clip_kernel::launch_unchecked(
            &client,
            CubeCount::Static(1, 1, 1),
            CubeDim::new_1d(THREADS),
            partials.into_buffer_arg(),
            clip.clone().into_buffer_arg(),
            factors.len() as u32,
            max_grad_norm.unwrap_or(0.0) as f32,
            max_grad_norm.is_some(),
        );
    }
    let updated = cubes
        .into_iter()
        .map(|(p, g, m, v, n)| {
            let shape = p.shape().clone();
            let outputs = [alloc(n), alloc(n), alloc(n)];
            let (count, dim) = elementwise_launch(&g, n);
            unsafe {
                adamw_kernel::launch_unchecked(
                    &client,
                    count,
                    dim,
                    p.into_buffer_arg(),
                    g.into_buffer_arg(),
                    m.into_buffer_arg(),
                    v.into_buffer_arg(),
                    clip.clone().into_buffer_arg(),
                    outputs[0].clone().into_buffer_arg(),
                    outputs[1].clone().into_buffer_arg(),
                    outputs[2].clone().into_buffer_arg(),
                    n as u32,
                    adamw.beta1 as f32,
                    (1.0 - adamw.beta1) as f32,
                    adamw.beta2 as f32,
                    (1.0 - adamw.beta2) as f32,
                    adamw.bias2_sqrt as f32,
                    adamw.epsilon as f32,
                    adamw.decay as f32,
                    (adamw.lr / adamw.bias1) as f32,
                );
            }
            outputs.map(|t| tensor(t).reshape(Shape::from(shape.clone())))
        })
        .collect();
    let norm = Tensor::<1>::from_primitive::<CubeBackend>(clip).narrow(0, 0, 1);
    Some((updated, norm))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use crate::train::TrainConfig;
    use burn::tensor::TensorData;

    fn random(shape: [usize; 2], rng: &mut Rng, scale: f64, device: &burn::tensor::Device) -> Tensor<2> {
        let values: Vec<f32> = (0..shape[0] * shape[1]).map(|_| (rng.normal() * scale) as f32).collect();
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn the_kernels_clip_and_update_as_the_tensor_ops_do() {
        let Some(device) = crate::device::test_gpu() else { return };
        let mut rng = Rng::new(4);
        let config = TrainConfig { weight_decay: 0.01, ..TrainConfig::default() };
        let adamw = AdamW::at_step(&config, 3, 2e-3);
        // Sizes around a workgroup's 256 threads, and a factor wider than many workgroups.
        let shapes = [[576, 16], [16, 576], [3, 5], [16, 1536], [1, 1]];
        for (max_norm, grad_scale) in [(Some(1.0), 3.0), (Some(1.0), 1e-3), (None, 1.0)] {
            let factors: Vec<Factor> = shapes
                .iter()
                .map(|&s| Factor {
                    p: random(s, &mut rng, 0.1, &device),
                    g: random(s, &mut rng, grad_scale, &device),
                    m: random(s, &mut rng, 0.01, &device),
                    v: random(s, &mut rng, 0.001, &device).abs(),
                })
                .collect();
            let (got, norm) = clip_and_update(&factors, &adamw, max_norm).expect("GPU tensors");
            // The ops' way (Trainer::step and AdamW::update).
            let norm_sq = factors.iter().map(|f| f.g.clone().square().sum()).reduce(|a, b| a + b).unwrap();
            let want_norm = norm_sq.sqrt();
            let coef = max_norm.map(|c| want_norm.clone().add_scalar(1e-6).recip().mul_scalar(c).clamp_max(1.0).reshape([1, 1]));
            let n = values(want_norm)[0];
            assert!((values(norm)[0] - n).abs() <= 1e-6 * n, "norm");
            let mut clipped = false;
            for (f, [p, m, v]) in factors.iter().zip(got) {
                let g = coef.clone().map_or(f.g.clone(), |c| f.g.clone() * c);
                clipped |= values(g.clone()) != values(f.g.clone());
                let (wp, wm, wv) = adamw.update(f.p.clone(), g, f.m.clone(), f.v.clone());
                for (what, a, b) in [("p", p, wp), ("m", m, wm), ("v", v, wv)] {
                    let (a, b) = (values(a), values(b));
                    let scale = b.iter().fold(1e-3f32, |s, x| s.max(x.abs()));
                    let diff = a.iter().zip(&b).fold(0f32, |d, (x, y)| d.max((x - y).abs()));
                    assert!(diff <= 1e-6 * scale, "{what}, max norm {max_norm:?}: {diff} (scale {scale})");
                }
            }
            // The large gradients were clipped, the small ones not: both branches ran.
            assert_eq!(clipped, grad_scale > 1.0 && max_norm.is_some(), "max norm {max_norm:?}, scale {grad_scale}");
        }
    }
}
