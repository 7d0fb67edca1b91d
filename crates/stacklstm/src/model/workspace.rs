//! The buffers a pass over a batch uses, kept between calls so that a warm pass allocates
//! nothing: per batch part the time-major input, every layer's cache, the loss target and
//! gradient, and two ping-pong buffers for the gradient flowing down the stack.

use std::any::TypeId;
use std::ops::Range;

use crate::layers::{Cache, Layer};

/// Weight gradients: per layer, one buffer per weight in [`Layer::weights`] order.
pub(crate) type Grads = Vec<Vec<Vec<f32>>>;

/// Sizes `grads` like the weights of `layers` and sets every entry to zero.
pub(crate) fn zero_grads(layers: &[Box<dyn Layer>], grads: &mut Grads) {
    grads.resize_with(layers.len(), Vec::new);
    for (l, g) in layers.iter().zip(grads.iter_mut()) {
        let w = l.weights();
        g.resize_with(w.len(), Vec::new);
        for (buf, w) in g.iter_mut().zip(&w) {
            buf.clear();
            buf.resize(w.values.len(), 0.0);
        }
    }
}

/// Reusable buffers for [`Model::predict_with`](super::Model::predict_with) (and, inside
/// the trainer, for training passes). A workspace may be used with any model; one made for
/// another model's layers is rebuilt on first use.
#[derive(Debug, Default)]
pub struct Workspace {
    /// Timesteps and batch rows of the last pass.
    pub(crate) t: usize,
    pub(crate) b: usize,
    /// The batch parts of the last pass (one, or two halves run on two threads); only the
    /// first `n_parts` are current.
    pub(crate) parts: Vec<PartBuffers>,
    pub(crate) n_parts: usize,
    /// Per layer, caches that hold the dropout masks drawn for the whole batch when it is
    /// split (each part copies its rows).
    pub(crate) full: Vec<Box<dyn Cache>>,
    /// Weight gradients of the second part of a split pass (summed into the first's).
    pub(crate) part_grads: Grads,
    /// `[T, B]`: the step mask of the whole batch (empty for a model without one).
    pub(crate) mask: Vec<bool>,
    /// Whether the caches hold a forward that no backward has consumed yet (backward
    /// overwrites an LSTM's gates with their gradients).
    pub(crate) fresh: bool,
    /// The concrete layer types the caches were made for.
    types: Vec<TypeId>,
}

impl Clone for Workspace {
    /// Buffers are scratch: a clone starts empty.
    fn clone(&self) -> Self {
        Workspace::default()
    }
}

/// The buffers of one batch part.
#[derive(Debug, Default)]
pub(crate) struct PartBuffers {
    /// The batch rows this part runs.
    pub(crate) rows: Range<usize>,
    /// Timesteps and rows.
    pub(crate) t: usize,
    pub(crate) b: usize,
    /// `[T, b, D]`: the part's input, time-major.
    pub(crate) x: Vec<f32>,
    /// `[T, b]`: the part's rows of the step mask (empty for a model without one).
    pub(crate) mask: Vec<bool>,
    /// Per layer: its cache.
    pub(crate) caches: Vec<Box<dyn Cache>>,
    /// The loss target in the output's time-major row order.
    pub(crate) target: Vec<f32>,
    /// d loss / d output of the last layer (time-major).
    pub(crate) dy: Vec<f32>,
    /// Ping-pong buffers for d output of the layer below; after backward, `grad_a` holds
    /// d input of the lowest layer run.
    pub(crate) grad_a: Vec<f32>,
    pub(crate) grad_b: Vec<f32>,
}

impl Workspace {
    /// Prepares `n_parts` parts for a `[b, t, ..]` batch of a model with `layers`: the row
    /// ranges, and caches of the right types (kept when they already are).
    pub(crate) fn prepare(
        &mut self,
        layers: &[Box<dyn Layer>],
        t: usize,
        b: usize,
        n_parts: usize,
    ) {
        let same = self.types.len() == layers.len()
            && self
                .types
                .iter()
                .zip(layers)
                .all(|(t, l)| *t == l.as_any().type_id());
        if !same {
            self.parts.clear();
            self.full.clear();
            self.types = layers.iter().map(|l| l.as_any().type_id()).collect();
        }
        let caches = |v: &mut Vec<Box<dyn Cache>>| {
            if v.len() != layers.len() {
                *v = layers.iter().map(|l| l.new_cache()).collect();
            }
        };
        if n_parts > 1 {
            caches(&mut self.full);
        }
        self.parts
            .resize_with(self.parts.len().max(n_parts), PartBuffers::default);
        let half = b / 2;
        for (k, p) in self.parts.iter_mut().take(n_parts).enumerate() {
            caches(&mut p.caches);
            p.rows = match (n_parts, k) {
                (1, _) => 0..b,
                (_, 0) => 0..half,
                _ => half..b,
            };
            p.t = t;
            p.b = p.rows.len();
        }
        self.t = t;
        self.b = b;
        self.n_parts = n_parts;
        self.fresh = false;
    }

    /// The current parts.
    pub(crate) fn parts(&self) -> &[PartBuffers] {
        &self.parts[..self.n_parts]
    }
}
