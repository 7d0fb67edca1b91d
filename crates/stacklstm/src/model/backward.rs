//! Backward over the layers of one batch part.
//!
//! The gradient of the loss w.r.t. the output (`p.dy`, left by the loss) flows down the
//! stack through two ping-pong buffers: layer `i` reads d output from one and writes d
//! input into the other, which is layer `i - 1`'s d output. Each layer accumulates its
//! weight gradients (`+=`) into the buffers it is given.

use super::workspace::{Grads, PartBuffers};
use super::Model;
use crate::layers::Backward;

/// Which layers leave their weight gradients to be formed after the parts (see
/// [`crate::layers::Layer::defers_weight_grads`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Deferred {
    /// The first layer is not run backward at all: `p.grad_a` is left holding the
    /// gradient that reaches its output.
    pub first: bool,
    /// The last layer computes its `dx` (and scratch) but no weight gradient.
    pub last: bool,
}

impl Model {
    /// Backward of the part's last forward, from `p.dy`; accumulates weight gradients into
    /// `grads`. With `input_grad`, d input (time-major) is left in `p.grad_a`; without, the
    /// first layer skips its `dX` product.
    pub(crate) fn backward_part(
        &self,
        p: &mut PartBuffers,
        grads: &mut Grads,
        input_grad: bool,
        deferred: Deferred,
    ) {
        let last = self.layers.len() - 1;
        let lowest = usize::from(deferred.first);
        for i in (lowest..=last).rev() {
            let (below, rest) = p.caches.split_at_mut(i);
            let x: &[f32] = match i.checked_sub(1) {
                None => &p.x,
                Some(j) => self.layers[j].output(&*below[j]),
            };
            let dy: &[f32] = if i == last { &p.dy } else { &p.grad_a };
            let dx = (i > 0 || input_grad).then_some(&mut p.grad_b);
            let g = if i == last && deferred.last {
                None
            } else {
                Some(grads[i].as_mut_slice())
            };
            self.layers[i].backward(Backward {
                x,
                dy,
                cache: &mut *rest[0],
                mask: self.layer_masked(i).then_some(p.mask.as_slice()),
                dx,
                grads: g,
            });
            std::mem::swap(&mut p.grad_a, &mut p.grad_b);
        }
    }
}
