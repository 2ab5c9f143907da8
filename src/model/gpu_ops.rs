//! A layer's small operations as one kernel each on the GPU backends: RMSNorm, RoPE applied while
//! the heads are moved in front of the positions, and SwiGLU's gate. burn's ops take five to six
//! dispatches for each norm (square, mean, add, sqrt, divide, scale), about as many for each
//! rotation (negate, concatenate, two products, a sum, and the copy that moves the heads), and
//! two to three for the gate; autodiff then derives their backward passes op by op, several
//! kernels each again. Here each has its own backward kernels (training on the GPU): the norm's
//! input gradient a workgroup a row, the rotation's the inverse rotation moving the heads back,
//! the gate's two gradients a thread a value each.
//!
//! The forward arithmetic is the ops' own, in f32 and in the same order, except where a sum is
//! reduced in another order (the norm's Σx²); the backward kernels use the closed forms of the
//! derivatives (the tests hold both to burn's ops and their autodiff).

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{AutodiffBackend, Dispatch, TensorMetadata, backend_extension};
use burn::tensor::{DType, FloatDType, Shape, Tensor};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use crate::gpu_reduce::workgroup_sum;
use crate::quant::gpu::elementwise_launch;

/// Threads a row's norm takes: a power of two (the workgroup sum's tree).
const NORM_THREADS: u32 = 128;

/// `x / sqrt(mean(x²) + eps) · weight` over each row of `d`, a workgroup a row.
#[cube(launch_unchecked)]
fn rms_norm_kernel(x: &[f32], weight: &[f32], out: &mut [f32], rows: u32, d: u32, eps: f32) {
    let threads = comptime![NORM_THREADS as usize];
    let unit = UNIT_POS as usize;
    let row = (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize;
    // A workgroup past the last row (the grid's last line) reads and writes nothing, but still
    // takes part in the sum's barriers with its threads.
    let mut end = 0usize;
    if row < rows as usize {
        end = d as usize;
    }
    let base = row * d as usize;
    let mut squares = 0.0f32;
    let mut i = unit;
    while i < end {
        let v = x[base + i];
        squares += v * v;
        i += threads;
    }
    let mut s = Shared::<[f32]>::new_slice(threads);
    let total = workgroup_sum(&mut s, squares, NORM_THREADS);
    let rms = (total / f32::cast_from(d) + eps).sqrt();
    let mut i = unit;
    while i < end {
        out[base + i] = x[base + i] / rms * weight[i];
        i += threads;
    }
}

/// `x` (`[batch, seq, heads · head_dim]`) rotated for positions `offset..offset + seq` in HF's
/// rotate-half form, written as `[batch, heads, seq, head_dim]`: a thread a value.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn rope_heads_kernel(x: &[f32], cos: &[f32], sin: &[f32], out: &mut [f32], total: u32, seq: u32, heads: u32, head_dim: u32, offset: u32) {
    let t = ABSOLUTE_POS;
    if t < total as usize {
        let (seq, heads, hd) = (seq as usize, heads as usize, head_dim as usize);
        let half = hd / 2;
        let i = t % hd;
        let s = (t / hd) % seq;
        let h = (t / (hd * seq)) % heads;
        let b = t / (hd * seq * heads);
        let row = ((b * seq + s) * heads + h) * hd;
        // rotate_half: the first half takes −(the second), the second half the first.
        let mut partner = row + i + half;
        let mut sign = f32::new(-1.0);
        if i >= half {
            partner = row + i - half;
            sign = f32::new(1.0);
        }
        let p = (offset as usize + s) * hd + i;
        out[t] = x[row + i] * cos[p] + sign * x[partner] * sin[p];
    }
}

/// `silu(gate) · up`, silu as `g · sigmoid(g)`: a thread a value.
#[cube(launch_unchecked)]
fn swiglu_kernel(gate: &[f32], up: &[f32], out: &mut [f32], n: u32) {
    let t = ABSOLUTE_POS;
    if t < n as usize {
        let g = gate[t];
        let sigmoid = 1.0f32 / (1.0f32 + (-g).exp());
        out[t] = g * sigmoid * up[t];
    }
}

/// RMSNorm's input gradient, a workgroup a row: with `r = 1 / sqrt(mean(x²) + eps)`,
/// `dx = r·g·w − x·r³·Σ(g·w·x) / d`.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn rms_norm_backward_kernel(x: &[f32], weight: &[f32], grad: &[f32], out: &mut [f32], rows: u32, d: u32, eps: f32) {
    let threads = comptime![NORM_THREADS as usize];
    let unit = UNIT_POS as usize;
    let row = (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize;
    let mut end = 0usize;
    if row < rows as usize {
        end = d as usize;
    }
    let base = row * d as usize;
    let mut squares = 0.0f32;
    let mut dot = 0.0f32;
    let mut i = unit;
    while i < end {
        let v = x[base + i];
        squares += v * v;
        dot += grad[base + i] * weight[i] * v;
        i += threads;
    }
    let mut s = Shared::<[f32]>::new_slice(threads);
    let total = workgroup_sum(&mut s, squares, NORM_THREADS);
    let dot = workgroup_sum(&mut s, dot, NORM_THREADS);
    let r = 1.0f32 / (total / f32::cast_from(d) + eps).sqrt();
    let k = r * r * r * dot / f32::cast_from(d);
    let mut i = unit;
    while i < end {
        out[base + i] = r * grad[base + i] * weight[i] - x[base + i] * k;
        i += threads;
    }
}

/// `rope_heads`'s input gradient: `grad` (`[batch, heads, seq, head_dim]`) rotated back and laid
/// out as `[batch, seq, heads · head_dim]`, a thread a value. The rotation pairs value `i` with
/// `i ± half`, each by its own angle: `dx[i] = g[i]·cos[i] + g[i + half]·sin[i + half]` in the
/// first half, `dx[i] = g[i]·cos[i] − g[i − half]·sin[i − half]` in the second.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn rope_heads_backward_kernel(grad: &[f32], cos: &[f32], sin: &[f32], out: &mut [f32], total: u32, seq: u32, heads: u32, head_dim: u32, offset: u32) {
    let t = ABSOLUTE_POS;
    if t < total as usize {
        let (seq, heads, hd) = (seq as usize, heads as usize, head_dim as usize);
        let half = hd / 2;
        let i = t % hd;
        let h = (t / hd) % heads;
        let s = (t / (hd * heads)) % seq;
        let b = t / (hd * heads * seq);
        let row = ((b * heads + h) * seq + s) * hd;
        let p = (offset as usize + s) * hd;
        let mut partner = i + half;
        let mut sign = f32::new(1.0);
        if i >= half {
            partner = i - half;
            sign = f32::new(-1.0);
        }
        out[t] = grad[row + i] * cos[p + i] + sign * grad[row + partner] * sin[p + partner];
    }
}

/// SwiGLU's gradient for the gate: `g·up·σ(gate)·(1 + gate·(1 − σ(gate)))`, a thread a value.
#[cube(launch_unchecked)]
fn swiglu_gate_backward_kernel(gate: &[f32], up: &[f32], grad: &[f32], out: &mut [f32], n: u32) {
    let t = ABSOLUTE_POS;
    if t < n as usize {
        let g = gate[t];
        let sigmoid = 1.0f32 / (1.0f32 + (-g).exp());
        out[t] = grad[t] * up[t] * sigmoid * (1.0f32 + g * (1.0f32 - sigmoid));
    }
}

/// SwiGLU's gradient for up: `g·silu(gate)`, a thread a value.
#[cube(launch_unchecked)]
fn swiglu_up_backward_kernel(gate: &[f32], grad: &[f32], out: &mut [f32], n: u32) {
    let t = ABSOLUTE_POS;
    if t < n as usize {
        let g = gate[t];
        let sigmoid = 1.0f32 / (1.0f32 + (-g).exp());
        out[t] = grad[t] * g * sigmoid;
    }
}

#[backend_extension(Cube, Fusion: cfg(feature = "fusion"), Autodiff)]
pub trait LayerOpsBackend: burn::backend::Backend {
    /// RMSNorm over the last dimension; `weight` is `[d]`.
    #[fusion(dtype = x, shape = x)]
    fn rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f32) -> FloatTensor<Self>;

    /// `[batch, seq, heads · head_dim]` → `[batch, heads, seq, head_dim]`, rotated for positions
    /// `offset..offset + seq` (`cos`, `sin`: `[max_positions, head_dim]`).
    #[fusion(dtype = x, shape = Shape::new([x[0], *heads, x[1], x[2] / *heads]))]
    fn rope_heads(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>, heads: usize, offset: usize) -> FloatTensor<Self>;

    /// `silu(gate) · up`, element by element.
    #[fusion(dtype = gate, shape = gate)]
    fn swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self>;

    /// RMSNorm's gradient for `x`, given the output's gradient `grad`.
    #[fusion(dtype = x, shape = x)]
    fn rms_norm_backward(x: FloatTensor<Self>, weight: FloatTensor<Self>, grad: FloatTensor<Self>, eps: f32) -> FloatTensor<Self>;

    /// `rope_heads`'s gradient for `x`: `[batch, heads, seq, head_dim]` → `[batch, seq, heads · head_dim]`.
    #[fusion(dtype = grad, shape = Shape::new([grad[0], grad[2], grad[1] * grad[3]]))]
    fn rope_heads_backward(grad: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>, offset: usize) -> FloatTensor<Self>;

    /// `swiglu`'s gradient for the gate.
    #[fusion(dtype = gate, shape = gate)]
    fn swiglu_gate_backward(gate: FloatTensor<Self>, up: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `swiglu`'s gradient for up.
    #[fusion(dtype = gate, shape = gate)]
    fn swiglu_up_backward(gate: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl LayerOpsBackend for CubeBackend {
    fn rms_norm(x: CubeTensor, weight: CubeTensor, eps: f32) -> CubeTensor {
        let (x, weight) = (into_contiguous(x), into_contiguous(weight));
        let shape = x.shape();
        let d = *shape.to_vec().last().expect("a tensor with a last dimension");
        let rows = shape.num_elements() / d.max(1);
        let out = empty_device_dtype(x.client.clone(), x.device.clone(), shape, DType::F32);
        if rows == 0 {
            return out;
        }
        // A workgroup a row, in lines of at most 65,535 (WebGPU's limit per grid dimension).
        let (width, height) = (rows.min(65_535), rows.div_ceil(65_535));
        // In bounds: a workgroup reads and writes its own row of `d`, and none past `rows`.
        unsafe {
            rms_norm_kernel::launch_unchecked(
                &x.client,
                CubeCount::Static(width as u32, height as u32, 1),
                CubeDim::new_1d(NORM_THREADS),
                x.clone().into_buffer_arg(),
                weight.into_buffer_arg(),
                out.clone().into_buffer_arg(),
                rows as u32,
                d as u32,
                eps,
            );
        }
        out
    }

    fn rope_heads(x: CubeTensor, cos: CubeTensor, sin: CubeTensor, heads: usize, offset: usize) -> CubeTensor {
        let (x, cos, sin) = (into_contiguous(x), into_contiguous(cos), into_contiguous(sin));
        let [batch, seq, width] = x.shape().dims::<3>();
        let head_dim = width / heads;
        let out = empty_device_dtype(x.client.clone(), x.device.clone(), Shape::new([batch, heads, seq, head_dim]), DType::F32);
        let total = batch * seq * width;
        let (count, dim) = elementwise_launch(&x, total);
        // In bounds: every thread below `total` reads its own row of x and a row of the tables
        // below `offset + seq` (the caller checks the tables cover it).
        unsafe {
            rope_heads_kernel::launch_unchecked(
                &x.client,
                count,
                dim,
                x.clone().into_buffer_arg(),
                cos.into_buffer_arg(),
                sin.into_buffer_arg(),
                out.clone().into_buffer_arg(),
                total as u32,
                seq as u32,
                heads as u32,
                head_dim as u32,
                offset as u32,
            );
        }
        out
    }

    fn swiglu(gate: CubeTensor, up: CubeTensor) -> CubeTensor {
        let (gate, up) = (into_contiguous(gate), into_contiguous(up));
        let n = gate.shape().num_elements();
        let out = empty_device_dtype(gate.client.clone(), gate.device.clone(), gate.shape(), DType::F32);
        let (count, dim) = elementwise_launch(&gate, n);
        // In bounds: a thread a value below `n`.
        unsafe {
            swiglu_kernel::launch_unchecked(&gate.client, count, dim, gate.clone().into_buffer_arg(), up.into_buffer_arg(), out.clone().into_buffer_arg(), n as u32);
        }
        out
    }
    fn rms_norm_backward(x: CubeTensor, weight: CubeTensor, grad: CubeTensor, eps: f32) -> CubeTensor {
        let (x, weight, grad) = (into_contiguous(x), into_contiguous(weight), into_contiguous(grad));
        let shape = x.shape();
        let d = *shape.to_vec().last().expect("a tensor with a last dimension");
        let rows = shape.num_elements() / d.max(1);
        let out = empty_device_dtype(x.client.clone(), x.device.clone(), shape, DType::F32);
        if rows == 0 {
            return out;
        }
        let (width, height) = (rows.min(65_535), rows.div_ceil(65_535));
        // In bounds: a workgroup reads and writes its own row of `d`, and none past `rows`.
        unsafe {
            rms_norm_backward_kernel::launch_unchecked(
                &x.client,
                CubeCount::Static(width as u32, height as u32, 1),
                CubeDim::new_1d(NORM_THREADS),
                x.clone().into_buffer_arg(),
                weight.into_buffer_arg(),
                grad.into_buffer_arg(),
                out.clone().into_buffer_arg(),
                rows as u32,
                d as u32,
                eps,
            );
        }
        out
    }

    fn rope_heads_backward(grad: CubeTensor, cos: CubeTensor, sin: CubeTensor, offset: usize) -> CubeTensor {
        let (grad, cos, sin) = (into_contiguous(grad), into_contiguous(cos), into_contiguous(sin));
        let [batch, heads, seq, head_dim] = grad.shape().dims::<4>();
        let out = empty_device_dtype(grad.client.clone(), grad.device.clone(), Shape::new([batch, seq, heads * head_dim]), DType::F32);
        let total = batch * heads * seq * head_dim;
        let (count, dim) = elementwise_launch(&grad, total);
        // In bounds: every thread below `total` reads a row of grad and a row of the tables below
        // `offset + seq` (the forward pass checked the tables cover it).
        unsafe {
            rope_heads_backward_kernel::launch_unchecked(
                &grad.client,
                count,
                dim,
                grad.clone().into_buffer_arg(),
                cos.into_buffer_arg(),
                sin.into_buffer_arg(),
                out.clone().into_buffer_arg(),
                total as u32,
                seq as u32,
                heads as u32,
                head_dim as u32,
                offset as u32,
            );
        }
        out
    }

    fn swiglu_gate_backward(gate: CubeTensor, up: CubeTensor, grad: CubeTensor) -> CubeTensor {
        let (gate, up, grad) = (into_contiguous(gate), into_contiguous(up), into_contiguous(grad));
        let n = gate.shape().num_elements();
        let out = empty_device_dtype(gate.client.clone(), gate.device.clone(), gate.shape(), DType::F32);
        let (count, dim) = elementwise_launch(&gate, n);
        // In bounds: a thread a value below `n`.
        unsafe {
            swiglu_gate_backward_kernel::launch_unchecked(
                &gate.client,
                count,
                dim,
                gate.clone().into_buffer_arg(),
                up.into_buffer_arg(),
                grad.into_buffer_arg(),
                out.clone().into_buffer_arg(),
                n as u32,
            );
        }
        out
    }

    fn swiglu_up_backward(gate: CubeTensor, grad: CubeTensor) -> CubeTensor {
        let (gate, grad) = (into_contiguous(gate), into_contiguous(grad));
        let n = gate.shape().num_elements();
        let out = empty_device_dtype(gate.client.clone(), gate.device.clone(), gate.shape(), DType::F32);
        let (count, dim) = elementwise_launch(&gate, n);
        // In bounds: a thread a value below `n`.
        unsafe {
            swiglu_up_backward_kernel::launch_unchecked(&gate.client, count, dim, gate.clone().into_buffer_arg(), grad.into_buffer_arg(), out.clone().into_buffer_arg(), n as u32);
        }
        out
    }
}

// Training: each operation records its inputs and its backward kernels take the output's
// gradient. The tables (cos, sin) and the gradients' own operations are constants.
impl<B: LayerOpsBackend, C: CheckpointStrategy> LayerOpsBackend for Autodiff<B, C> {
    fn rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f32) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct RmsNormBackward;

        impl<B: LayerOpsBackend> Backward<B, 2> for RmsNormBackward {
            type State = (FloatTensor<B>, FloatTensor<B>, f32);

            fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
                let grad = grads.consume::<B>(&ops.node);
                let (x, weight, eps) = ops.state;
                let [x_node, weight_node] = ops.parents;
                if let Some(node) = weight_node {
                    // The weight's gradient, Σ over rows of g·x/rms: the norm with unit weights,
                    // then burn's ops (a LoRA run's norms are frozen, so this is rarely asked).
                    let shape = x.shape();
                    let d = *shape.to_vec().last().expect("a tensor with a last dimension");
                    let ones = B::float_ones(Shape::new([d]), &TensorMetadata::device(&x), FloatDType::F32);
                    let normed = B::rms_norm(x.clone(), ones, eps);
                    let rows = shape.num_elements() / d.max(1);
                    let product = B::float_reshape(B::float_mul(grad.clone(), normed), Shape::new([rows, d]));
                    grads.register::<B>(node.id, B::float_reshape(B::float_sum_dim(product, 0), Shape::new([d])));
                }
                if let Some(node) = x_node {
                    grads.register::<B>(node.id, B::rms_norm_backward(x, weight, grad, eps));
                }
            }
        }

        match RmsNormBackward.prepare::<C>([x.node(), weight.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (x, weight) = (x.primitive().clone(), weight.primitive().clone());
                let output = B::rms_norm(x.clone(), weight.clone(), eps);
                prep.finish((x, weight, eps), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::rms_norm(x.into_primitive(), weight.into_primitive(), eps)),
        }
    }

    fn rope_heads(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>, heads: usize, offset: usize) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct RopeHeadsBackward;

        impl<B: LayerOpsBackend> Backward<B, 1> for RopeHeadsBackward {
            type State = (FloatTensor<B>, FloatTensor<B>, usize);

            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
                let grad = grads.consume::<B>(&ops.node);
                let [x_node] = ops.parents;
                if let Some(node) = x_node {
                    let (cos, sin, offset) = ops.state;
                    grads.register::<B>(node.id, B::rope_heads_backward(grad, cos, sin, offset));
                }
            }
        }

        let (cos, sin) = (cos.into_primitive(), sin.into_primitive());
        match RopeHeadsBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let output = B::rope_heads(x.primitive().clone(), cos.clone(), sin.clone(), heads, offset);
                prep.finish((cos, sin, offset), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::rope_heads(x.into_primitive(), cos, sin, heads, offset)),
        }
    }

    fn swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct SwigluBackward;

        impl<B: LayerOpsBackend> Backward<B, 2> for SwigluBackward {
            type State = (FloatTensor<B>, FloatTensor<B>);

            fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
                let grad = grads.consume::<B>(&ops.node);
                let (gate, up) = ops.state;
                let [gate_node, up_node] = ops.parents;
                if let Some(node) = up_node {
                    grads.register::<B>(node.id, B::swiglu_up_backward(gate.clone(), grad.clone()));
                }
                if let Some(node) = gate_node {
                    grads.register::<B>(node.id, B::swiglu_gate_backward(gate, up, grad));
                }
            }
        }

        match SwigluBackward.prepare::<C>([gate.node(), up.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (gate, up) = (gate.primitive().clone(), up.primitive().clone());
                let output = B::swiglu(gate.clone(), up.clone());
                prep.finish((gate, up), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::swiglu(gate.into_primitive(), up.into_primitive())),
        }
    }

    fn rms_norm_backward(x: FloatTensor<Self>, weight: FloatTensor<Self>, grad: FloatTensor<Self>, eps: f32) -> FloatTensor<Self> {
        <Self as AutodiffBackend>::from_inner(B::rms_norm_backward(x.into_primitive(), weight.into_primitive(), grad.into_primitive(), eps))
    }

    fn rope_heads_backward(grad: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>, offset: usize) -> FloatTensor<Self> {
        <Self as AutodiffBackend>::from_inner(B::rope_heads_backward(grad.into_primitive(), cos.into_primitive(), sin.into_primitive(), offset))
    }

    fn swiglu_gate_backward(gate: FloatTensor<Self>, up: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        <Self as AutodiffBackend>::from_inner(B::swiglu_gate_backward(gate.into_primitive(), up.into_primitive(), grad.into_primitive()))
    }

    fn swiglu_up_backward(gate: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        <Self as AutodiffBackend>::from_inner(B::swiglu_up_backward(gate.into_primitive(), grad.into_primitive()))
    }
}

/// Whether these kernels serve `x`: fused GPU kernels on (`gpu_decode::enabled`), f32 on a GPU
/// device, with or without autodiff.
pub fn serves<const D: usize>(x: &Tensor<D>) -> bool {
    super::gpu_decode::enabled() && !crate::device::runs_on_cpu(&x.device()) && x.dtype() == DType::F32
}

/// RMSNorm over the last dimension in one dispatch.
///
/// # Shapes
/// - x: `[batch, seq, d]`, weight: `[d]` → like x
pub fn rms_norm(x: Tensor<3>, weight: Tensor<1>, eps: f64) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as LayerOpsBackend>::rms_norm(x.into_dispatch(), weight.into_dispatch(), eps as f32))
}

/// Splits x's last dimension into heads, moves them in front of the positions and rotates each
/// for positions `offset..offset + seq`, in one dispatch.
///
/// # Shapes
/// - x: `[batch, seq, heads * head_dim]`, cos, sin: `[max_positions, head_dim]` →
///   `[batch, heads, seq, head_dim]`
pub fn rope_heads(x: Tensor<3>, cos: &Tensor<2>, sin: &Tensor<2>, heads: usize, offset: usize) -> Tensor<4> {
    let seq = x.dims()[1];
    assert!(offset + seq <= cos.dims()[0], "positions {offset}..{} past the RoPE tables' {}", offset + seq, cos.dims()[0]);
    Tensor::from_dispatch(<Dispatch as LayerOpsBackend>::rope_heads(x.into_dispatch(), cos.clone().into_dispatch(), sin.clone().into_dispatch(), heads, offset))
}

/// `silu(gate) · up` in one dispatch.
pub fn swiglu(gate: Tensor<3>, up: Tensor<3>) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as LayerOpsBackend>::swiglu(gate.into_dispatch(), up.into_dispatch()))
}

#[cfg(all(test, feature = "native"))]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use burn::tensor::TensorData;
    use burn::tensor::activation::silu;

    fn random<const D: usize>(dims: [usize; D], seed: u64, device: &burn::tensor::Device) -> Tensor<D> {
        let mut rng = Rng::new(seed);
        let n = dims.iter().product();
        Tensor::from_data(TensorData::new((0..n).map(|_| rng.normal() as f32).collect::<Vec<_>>(), dims), device)
    }

    fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        assert_eq!(a.dims(), b.dims());
        let (a, b) = (a.into_data().try_to_vec::<f32>().unwrap(), b.into_data().try_to_vec::<f32>().unwrap());
        a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max)
    }

    #[test]
    fn each_kernel_gives_burns_ops() {
        let Some(device) = crate::device::test_gpu() else { return };
        // Rows narrower and wider than a workgroup's threads, and 3 × 37 rows.
        for d in [48, 576, 1000] {
            let (x, w) = (random([3, 37, d], 1, &device), random([d], 2, &device));
            let rms = x.clone().square().mean_dim(2).add_scalar(1e-5).sqrt();
            let want = x.clone().div(rms) * w.clone().reshape([1, 1, d]);
            let diff = max_diff(rms_norm(x, w, 1e-5), want);
            assert!(diff < 1e-5, "RMSNorm, d = {d}: max |Δ| = {diff}");
        }
        // 2 sequences of 11 positions after 5, 3 heads of 16.
        let rope = crate::model::rope::Rope::new(16, 10_000.0, 64, &device);
        let x = random([2, 11, 48], 3, &device);
        let want = rope.apply(x.clone().reshape([2, 11, 3, 16]).swap_dims(1, 2), 5);
        let (cos, sin) = rope.tables_covering(64);
        let (cos, sin) = (&cos, &sin);
        let got = rope_heads(x.clone(), cos, sin, 3, 5);
        assert!(max_diff(got.clone(), want.clone()) < 1e-6, "RoPE: {}", max_diff(got, want.clone()));
        // The comparison can fail: another offset rotates by other angles.
        assert!(max_diff(rope_heads(x, cos, sin, 3, 6), want) > 1e-2);

        let (g, u) = (random([2, 9, 40], 4, &device).mul_scalar(4.0), random([2, 9, 40], 5, &device));
        let diff = max_diff(swiglu(g.clone(), u.clone()), silu(g) * u);
        assert!(diff < 1e-5, "SwiGLU: max |Δ| = {diff}");
    }

    /// Training: each operation's output and its inputs' gradients under burn's autodiff on the
    /// GPU, against burn's composed ops and the gradients autodiff derives for them.
    #[test]
    fn each_backward_kernel_gives_burns_gradients() {
        let Some(device) = crate::device::test_gpu() else { return };
        let device = device.autodiff();
        // The gradient of Σ(y · w) for a fixed random w is w: every output position weighs in.
        let check = |name: &str, ours: Vec<Tensor<3>>, theirs: Vec<Tensor<3>>, tolerance: f32| {
            for (i, (a, b)) in ours.into_iter().zip(theirs).enumerate() {
                assert_eq!(a.dims(), b.dims(), "{name}, tensor {i}");
                let (a, b) = (a.into_data().try_to_vec::<f32>().unwrap(), b.into_data().try_to_vec::<f32>().unwrap());
                let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
                let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
                assert!(diff < tolerance * scale, "{name}, tensor {i}: max |Δ| = {diff} (largest {scale})");
            }
        };

        // RMSNorm: x's gradient and the weight's, rows narrower and wider than a workgroup.
        for d in [48, 576, 1000] {
            let (x0, w0) = (random([3, 7, d], 11, &device), random([d], 12, &device));
            let out_weights = random([3, 7, d], 13, &device);
            let run = |ours: bool| {
                let (x, w) = (x0.clone().require_grad(), w0.clone().require_grad());
                let y = if ours {
                    rms_norm(x.clone(), w.clone(), 1e-5)
                } else {
                    let rms = x.clone().square().mean_dim(2).add_scalar(1e-5).sqrt();
                    x.clone().div(rms) * w.clone().reshape([1, 1, d])
                };
                let grads = (y.clone() * out_weights.clone()).sum().backward();
                let dw = w.grad(&grads).unwrap().reshape([1, 1, d]);
                vec![y.inner(), x.grad(&grads).unwrap(), dw]
            };
            check(&format!("RMSNorm, d = {d}"), run(true), run(false), 1e-5);
        }

        // RoPE into heads: 2 sequences of 11 positions after 5, 3 heads of 16.
        let rope = crate::model::rope::Rope::new(16, 10_000.0, 64, &device);
        let (cos, sin) = rope.tables_covering(64);
        let (cos, sin) = (&cos, &sin);
        let x0 = random([2, 11, 48], 14, &device);
        let out_weights = random([2, 3, 11, 16], 15, &device);
        let run = |ours: bool, offset: usize| {
            let x = x0.clone().require_grad();
            let y = if ours { rope_heads(x.clone(), cos, sin, 3, offset) } else { rope.apply(x.clone().reshape([2, 11, 3, 16]).swap_dims(1, 2), offset) };
            let grads = (y.clone() * out_weights.clone()).sum().backward();
            vec![y.inner().reshape([2, 33, 16]), x.grad(&grads).unwrap()]
        };
        check("RoPE", run(true, 5), run(false, 5), 1e-6);
        // The comparison can fail: the gradient of another offset's rotation differs.
        assert!(max_diff(run(true, 6).pop().unwrap(), run(false, 5).pop().unwrap()) > 1e-2);

        // SwiGLU: both gradients, gates large enough to saturate the sigmoid.
        let (g0, u0) = (random([2, 9, 40], 16, &device).mul_scalar(6.0), random([2, 9, 40], 17, &device));
        let out_weights = random([2, 9, 40], 18, &device);
        let run = |ours: bool| {
            let (g, u) = (g0.clone().require_grad(), u0.clone().require_grad());
            let y = if ours { swiglu(g.clone(), u.clone()) } else { silu(g.clone()) * u.clone() };
            let grads = (y.clone() * out_weights.clone()).sum().backward();
            vec![y.inner(), g.grad(&grads).unwrap(), u.grad(&grads).unwrap()]
        };
        check("SwiGLU", run(true), run(false), 1e-5);
    }
}
