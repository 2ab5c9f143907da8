//! Rotary position embedding on the CPU backend as one burn operation that also moves heads in
//! front of positions (`[batch, seq, heads·d]` → `[batch, heads, seq, d]`), with its own
//! backward pass. Composed, it is a transpose copy and five single-threaded tensor ops.

use super::{contiguous, f32s, tensor};
use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Dispatch, Flex, backend_extension};
use burn::tensor::Tensor;
use cqa_kernels::rope::Shape;

#[backend_extension(Flex, Autodiff)]
pub trait RopeBackend: burn::backend::Backend {
    /// x `[batch, seq, heads·head_dim]` rotated for positions `offset..offset + seq` → `[batch,
    /// heads, seq, head_dim]`; `cos` and `sin` are the whole `[positions, head_dim]` tables.
    fn rope_heads(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>, heads: usize, offset: usize) -> FloatTensor<Self>;
}

/// The call's shape and the tables' rows for its positions.
fn layout<'a>(x: &FlexTensor, cos: &'a FlexTensor, sin: &'a FlexTensor, heads: usize, offset: usize) -> (Shape, &'a [f32], &'a [f32]) {
    let [batch, seq, width]: [usize; 3] = x.layout().shape().to_vec().try_into().expect("rope: x must be [batch, seq, heads·head_dim]");
    assert!(heads > 0 && width.is_multiple_of(heads), "rope: x's width must be a whole number of heads");
    let head_dim = width / heads;
    let rows = |t| positions(t, offset, seq, head_dim);
    (Shape { batch, seq, heads, head_dim }, rows(cos), rows(sin))
}

/// A table's rows for positions `offset..offset + seq`.
fn positions(table: &FlexTensor, offset: usize, seq: usize, head_dim: usize) -> &[f32] {
    let all = f32s(table);
    assert!(all.len() >= (offset + seq) * head_dim, "rope: position {} is past the tables", offset + seq);
    &all[offset * head_dim..(offset + seq) * head_dim]
}

impl RopeBackend for Flex {
    fn rope_heads(x: FlexTensor, cos: FlexTensor, sin: FlexTensor, heads: usize, offset: usize) -> FlexTensor {
        let (x, cos, sin) = (contiguous(x), contiguous(cos), contiguous(sin));
        let (shape, c, s) = layout(&x, &cos, &sin, heads, offset);
        let y = cqa_kernels::rope::forward(&shape, f32s(&x), c, s);
        tensor(y, vec![shape.batch, heads, shape.seq, shape.head_dim])
    }
}

impl<C: CheckpointStrategy> RopeBackend for Autodiff<Flex, C> {
    fn rope_heads(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>, heads: usize, offset: usize) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct RopeBackward;

        impl Backward<Flex, 1> for RopeBackward {
            /// The input's shape, the tables, the head count and the first position.
            type State = (Vec<usize>, FlexTensor, FlexTensor, usize, usize);

            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
                let d_y = contiguous(grads.consume::<Flex>(&ops.node));
                let (x_dims, cos, sin, heads, offset) = ops.state;
                let [parent] = ops.parents;
                if let Some(node) = parent {
                    let [batch, seq, width]: [usize; 3] = x_dims.clone().try_into().expect("rope: x is 3-D");
                    let head_dim = width / heads;
                    let shape = Shape { batch, seq, heads, head_dim };
                    let (c, s) = (positions(&cos, offset, seq, head_dim), positions(&sin, offset, seq, head_dim));
                    grads.register::<Flex>(node.id, tensor(cqa_kernels::rope::backward(&shape, f32s(&d_y), c, s), x_dims));
                }
            }
        }

        let (cos, sin) = (contiguous(cos.into_primitive()), contiguous(sin.into_primitive()));
        match RopeBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let x_dims = x.primitive().layout().shape().to_vec();
                let y = Flex::rope_heads(x.primitive().clone(), cos.clone(), sin.clone(), heads, offset);
                prep.finish((x_dims, cos, sin, heads, offset), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::rope_heads(x.into_primitive(), cos, sin, heads, offset)),
        }
    }
}

/// RoPE for positions `offset..offset + seq` with heads moved in front, as one operation on a
/// CPU device (`Rope::apply_to_heads` composes it from burn's ops elsewhere).
///
/// # Shapes
/// - x: `[batch, seq, heads·head_dim]`, cos and sin: `[positions, head_dim]` → `[batch, heads,
///   seq, head_dim]`
pub fn rope_heads(x: Tensor<3>, cos: &Tensor<2>, sin: &Tensor<2>, heads: usize, offset: usize) -> Tensor<4> {
    let (cos, sin) = (cos.clone().into_dispatch(), sin.clone().into_dispatch());
    Tensor::from_dispatch(<Dispatch as RopeBackend>::rope_heads(x.into_dispatch(), cos, sin, heads, offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::rope::Rope;
    use crate::rng::Rng;
    use burn::tensor::TensorData;

    /// Output and gradient against the composed form (reshape, swap, `Rope::apply`) under burn's
    /// autodiff, at an offset into the tables as decoding with a cache has.
    #[test]
    fn equals_the_composed_rotation_with_its_gradient() {
        let device = crate::device::cpu().autodiff();
        let (b, s, heads, hd, offset) = (2, 7, 3, 16, 5);
        let rope = Rope::new(hd, 10_000.0, 32, &device);
        let mut rng = Rng::new(9);
        let mut random = |n: usize| (0..n).map(|_| rng.normal() as f32).collect::<Vec<_>>();
        let (x0, g) = (random(b * s * heads * hd), random(b * s * heads * hd));
        let g = Tensor::<4>::from_data(TensorData::new(g, [b, heads, s, hd]), &device);
        let run = |ours: bool| {
            let x = Tensor::<3>::from_data(TensorData::new(x0.clone(), [b, s, heads * hd]), &device).require_grad();
            let y = if ours {
                rope.apply_to_heads(x.clone(), heads, offset)
            } else {
                rope.apply(x.clone().reshape([b, s, heads, hd]).swap_dims(1, 2), offset)
            };
            let grads = (y.clone() * g.clone()).sum().backward();
            [y.inner().into_data().try_to_vec::<f32>().unwrap(), x.grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap()]
        };
        let (ours, composed) = (run(true), run(false));
        // The forward pass performs the composed form's operations in its order: equal bits.
        assert_eq!(ours[0], composed[0]);
        for (x, y) in ours[1].iter().zip(&composed[1]) {
            assert!((x - y).abs() <= 1e-6 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }
}
