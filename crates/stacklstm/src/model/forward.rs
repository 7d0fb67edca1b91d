//! Forward over the layers of one batch part, the part's output, and its loss.

use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};

use super::workspace::PartBuffers;
use super::Model;
use crate::error::Result;
use crate::layers::{to_batch_major, State};
use crate::loss::Loss;

impl Model {
    /// The output of layer `i` in the last forward of `p` (time-major), read from the
    /// layer's cache (an LSTM's `h` of every step, no copy).
    pub(crate) fn layer_output<'a>(&self, p: &'a PartBuffers, i: usize) -> &'a [f32] {
        self.layers[i].output(&*p.caches[i])
    }

    /// Runs every layer over the part's input `p.x`, starting stateful layers from
    /// `states` (rows of this part). The masks in the caches are applied (none at
    /// inference).
    pub(crate) fn forward_part(&self, p: &mut PartBuffers, states: &[Option<State>]) {
        for (i, layer) in self.layers.iter().enumerate() {
            let (below, rest) = p.caches.split_at_mut(i);
            let input: &[f32] = match i.checked_sub(1) {
                None => &p.x,
                Some(j) => self.layers[j].output(&*below[j]),
            };
            let state = states.get(i).and_then(Option::as_ref);
            let mask = self.layer_masked(i).then_some(p.mask.as_slice());
            layer.forward(input, p.t, p.b, state, mask, &mut *rest[0]);
        }
    }

    /// The part's output as `[b, U]` or `[b, T, U]`.
    pub(crate) fn part_output(&self, p: &PartBuffers) -> ArrayD<f32> {
        let s = self.output_shape();
        let out = self.layer_output(p, self.layers.len() - 1);
        if s.seq {
            to_batch_major(out, p.t, p.b, s.width).into_dyn()
        } else {
            ArrayD::from_shape_fn(IxDyn(&[p.b, s.width]), |ix| out[ix[0] * s.width + ix[1]])
        }
    }

    /// The un-normalised loss of the part's output against its rows of `target`, as part
    /// of a batch with `total_rows` output rows (the kept ones, when the output carries
    /// the step mask: masked rows count for nothing; see [`Loss::compute_sum`]); leaves
    /// d loss / d output (time-major) in `p.dy`.
    pub(crate) fn part_loss_sum(
        &self,
        p: &mut PartBuffers,
        target: ArrayViewD<'_, f32>,
        loss: Loss,
        total_rows: usize,
    ) -> Result<f64> {
        let s = self.output_shape();
        let target = target.slice_axis(Axis(0), ndarray::Slice::from(p.rows.clone()));
        // The target in the output's (time-major) row order.
        let mut tgt = std::mem::take(&mut p.target);
        tgt.clear();
        if s.seq {
            for step in 0..p.t {
                for i in 0..p.b {
                    let row = target.index_axis(Axis(0), i);
                    let row = row.index_axis(Axis(0), step);
                    tgt.extend(row.iter().copied());
                }
            }
        } else {
            tgt.extend(target.iter().copied());
        }
        let last = self.layers.len() - 1;
        let out = self.layers[last].output(&*p.caches[last]);
        let keep = self.output_masked().then_some(p.mask.as_slice());
        let value = loss.compute_sum(out, &tgt, s.width, &mut p.dy, total_rows, keep);
        p.target = tgt;
        value
    }
}
