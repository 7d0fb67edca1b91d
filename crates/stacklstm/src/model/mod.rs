//! The model: a [`Sequential`] spec built into layers with weights, and inference.
//!
//! A [`Model`] holds the spec, the built layers, the carried state of stateful layers and
//! the buffers `predict` reuses; it is `Send + Sync`, and any number of threads may call
//! [`predict`](Model::predict) at once. Training (loss, optimizer, gradients, dropout
//! randomness, workspaces) lives in [`crate::train::Trainer`].
//!
//! Files, one job each: `spec` (the spec, names, shape inference, build), `forward` and
//! `backward` (one batch part through the layers), `exec` (the executor: one pass over a
//! batch as one part or two halves on two threads), `workspace` (the reusable buffers),
//! `summary` (the Keras-style table).
//!
//! Between layers, activations live in time-major buffers (`[T, B, D]`, or `[B, D]`
//! after a layer that removes the time axis); the conversion from and to the batch-major
//! `[batch, timesteps, features]` of the API happens once, at the model's boundary.

mod backward;
mod exec;
mod forward;
mod spec;
mod summary;
mod workspace;

use ndarray::{ArrayD, ArrayView3, ArrayViewD, AsArray, Axis, Ix3, IxDyn, Slice};

use crate::error::{shape_str, Error, Result};
use crate::layers::{check_finite, Layer, OutShape, State};
use crate::loss::Loss;

pub(crate) use backward::Deferred;
pub(crate) use exec::{Pass, Scored};
pub use spec::{Sequential, MAX_DIM};
pub use workspace::Workspace;
pub(crate) use workspace::{zero_grads, Grads};

/// The buffers [`Model::predict`] keeps between calls (behind a lock, since `predict`
/// takes `&self`; a clone of the model starts with none).
#[derive(Debug, Default)]
struct PredictBuffers(std::sync::Mutex<Workspace>);

impl Clone for PredictBuffers {
    fn clone(&self) -> Self {
        PredictBuffers::default()
    }
}

/// Batches of up to this many `timesteps x samples` rows keep their buffers for the next
/// `predict` (a one-off huge batch does not pin its memory to the model).
const PREDICT_KEEP_ROWS: usize = 1 << 16;

/// A built model: layers with weights, ready for inference (and for a
/// [`Trainer`](crate::train::Trainer)).
#[derive(Debug, Clone)]
pub struct Model {
    spec: Sequential,
    timesteps: Option<usize>,
    features: usize,
    layers: Vec<Box<dyn Layer>>,
    shapes: Vec<OutShape>,
    /// Per layer: whether it gets the step mask (it makes it, or its input carries it).
    masked: Vec<bool>,
    /// Whether the model output carries the step mask (the loss counts kept steps only).
    output_masked: bool,
    /// Per layer: the carried state of a stateful layer.
    pub(crate) states: Vec<Option<State>>,
    /// Buffers `predict` reuses from call to call.
    predict_ws: PredictBuffers,
}

impl Model {
    /// A model from its checked parts (see [`Sequential::build`]).
    fn from_parts(
        spec: Sequential,
        timesteps: Option<usize>,
        features: usize,
        layers: Vec<Box<dyn Layer>>,
        shapes: Vec<OutShape>,
    ) -> Model {
        let n = layers.len();
        // The mask starts at a first layer that makes one and travels while the outputs
        // keep the time axis.
        let mut carried = false;
        let mut masked = Vec::with_capacity(n);
        for (i, (l, s)) in spec.layers.iter().zip(&shapes).enumerate() {
            let makes = i == 0 && l.config().makes_mask();
            masked.push(carried || makes);
            carried = (carried || makes) && s.seq;
        }
        Model {
            spec,
            timesteps,
            features,
            layers,
            shapes,
            masked,
            output_masked: carried,
            states: vec![None; n],
            predict_ws: PredictBuffers::default(),
        }
    }

    /// The spec this model was built from.
    pub fn spec(&self) -> &Sequential {
        &self.spec
    }
    /// The built layers, input side first (reach a concrete layer with
    /// `layer.as_any().downcast_ref::<LstmLayer>()`).
    pub fn layers(&self) -> &[Box<dyn Layer>] {
        &self.layers
    }
    /// The layer named `name`.
    pub fn layer(&self, name: &str) -> Option<&dyn Layer> {
        self.layers.iter().find(|l| l.name() == name).map(|l| &**l)
    }
    /// The built layers, mutable (for the trainer's optimizer step).
    pub(crate) fn layers_mut(&mut self) -> &mut [Box<dyn Layer>] {
        &mut self.layers
    }
    /// `(timesteps, features)` of one input sample.
    pub fn input_shape(&self) -> (Option<usize>, usize) {
        (self.timesteps, self.features)
    }
    /// Output shape of one sample of every layer, input side first.
    pub fn layer_shapes(&self) -> &[OutShape] {
        &self.shapes
    }
    /// Whether the model masks padded steps (its first layer is a `Masking` or an
    /// `Embedding` with `mask_zero`).
    pub fn has_mask(&self) -> bool {
        self.masked.first().copied().unwrap_or(false)
    }
    /// Whether the model output carries the step mask, so that the loss and metrics count
    /// the kept positions only (a masked model whose last recurrent layer returns
    /// sequences).
    pub fn output_masked(&self) -> bool {
        self.output_masked
    }
    /// Whether layer `i` gets the step mask.
    pub(crate) fn layer_masked(&self, i: usize) -> bool {
        self.masked[i]
    }
    /// Output shape of one sample of the model's last layer.
    pub fn output_shape(&self) -> OutShape {
        self.shapes[self.shapes.len() - 1]
    }
    /// Total number of weights.
    pub fn param_count(&self) -> usize {
        self.layers.iter().map(|l| layer_params(&**l)).sum()
    }
    /// Number of weights training updates (the layers with `trainable` true).
    pub fn trainable_param_count(&self) -> usize {
        self.layers
            .iter()
            .enumerate()
            .filter(|(i, _)| self.is_trainable(*i))
            .map(|(_, l)| layer_params(&**l))
            .sum()
    }
    /// Whether training updates layer `i`.
    pub(crate) fn is_trainable(&self, i: usize) -> bool {
        self.spec.layers[i].config().trainable()
    }
    /// Freezes (`false`) or unfreezes the layer named `name` (Keras `layer.trainable`):
    /// a frozen layer still passes gradients to the layers below, but training leaves its
    /// weights as they are. Takes effect for trainers made after the call.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when no layer has that name.
    pub fn set_trainable(&mut self, name: &str, on: bool) -> Result<()> {
        let i = self
            .layers
            .iter()
            .position(|l| l.name() == name)
            .ok_or_else(|| {
                Error::config(format!(
                    "set_trainable: the model has no layer named '{name}' (its layers: {})",
                    self.layers
                        .iter()
                        .map(|l| l.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        self.spec.layers[i].config_mut().set_trainable(on);
        Ok(())
    }

    /// Every weight tensor, in Keras `model.get_weights()` order.
    pub fn get_weights(&self) -> Vec<ArrayD<f32>> {
        let mut out = Vec::new();
        for l in &self.layers {
            for w in l.weights() {
                // Shapes come from the built layer, so they always match the data.
                if let Ok(a) = ArrayD::from_shape_vec(IxDyn(w.shape), w.values.to_vec()) {
                    out.push(a);
                }
            }
        }
        out
    }

    /// Every weight as `("layer/weight", shape)`, in [`get_weights`](Self::get_weights)
    /// order.
    pub fn weight_names(&self) -> Vec<(String, Vec<usize>)> {
        self.layers
            .iter()
            .flat_map(|l| {
                l.weights()
                    .into_iter()
                    .map(|w| (format!("{}/{}", l.name(), w.name), w.shape.to_vec()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Replaces every weight, in Keras `model.set_weights()` order.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] naming the layer and weight whose shape differs, or a count
    /// mismatch; nothing is changed unless every shape fits.
    pub fn set_weights(&mut self, weights: &[ArrayD<f32>]) -> Result<()> {
        let expected = self.weight_names();
        if weights.len() != expected.len() {
            return Err(Error::input(format!(
                "set_weights: the model has {} weight tensors, got {}",
                expected.len(),
                weights.len()
            )));
        }
        for ((name, shape), w) in expected.iter().zip(weights) {
            if w.shape() != shape.as_slice() {
                return Err(Error::ShapeMismatch {
                    layer: name.clone(),
                    expected: shape_str(shape),
                    got: shape_str(w.shape()),
                });
            }
            if let Some(v) = w.iter().find(|v| !v.is_finite()) {
                return Err(Error::input(format!(
                    "set_weights: {name} holds a non-finite value {v}"
                )));
            }
        }
        let mut it = weights.iter();
        for l in &mut self.layers {
            for value in l.weights_mut() {
                if let Some(w) = it.next() {
                    for (dst, src) in value.iter_mut().zip(w.iter()) {
                        *dst = *src;
                    }
                }
            }
        }
        Ok(())
    }

    /// Forgets the carried state of every stateful layer (the next batch starts from zero).
    pub fn reset_states(&mut self) {
        self.states.iter_mut().for_each(|s| *s = None);
    }

    /// Whether any layer carries state from batch to batch.
    pub fn is_stateful(&self) -> bool {
        self.layers.iter().any(|l| l.stateful())
    }

    /// Checks an input batch against the model's input shape (and token ids against the
    /// vocabulary, and the batch size against carried stateful state).
    pub(crate) fn check_input(&self, x: ArrayView3<'_, f32>) -> Result<()> {
        let (b, t, f) = x.dim();
        let bad_t = t == 0 || self.timesteps.is_some_and(|want| want != t);
        if f != self.features || bad_t {
            let ts = self
                .timesteps
                .map_or_else(|| "timesteps >= 1".to_string(), |t| t.to_string());
            return Err(Error::ShapeMismatch {
                layer: format!("model '{}' input", self.spec.name),
                expected: format!("[batch, {ts}, {}]", self.features),
                got: shape_str(&[b, t, f]),
            });
        }
        if !x.iter().all(|v| v.is_finite()) {
            check_finite(x, &format!("model '{}'", self.spec.name))?;
        }
        self.layers[0].check_input(x)?;
        for (l, st) in self.layers.iter().zip(&self.states) {
            if let Some(st) = st.as_ref().filter(|st| st.batch != b) {
                return Err(Error::ShapeMismatch {
                    layer: format!("stateful layer '{}'", l.name()),
                    expected: format!(
                        "batch {} (the batch its state was carried from; call reset_states() to start over)",
                        st.batch
                    ),
                    got: format!("batch {b}"),
                });
            }
        }
        Ok(())
    }

    /// Checks `target` against the output of a `[b, t, ..]` batch.
    pub(crate) fn check_target(
        &self,
        b: usize,
        t: usize,
        target: &ArrayViewD<'_, f32>,
        loss: Loss,
    ) -> Result<()> {
        let mut want = self.output_dims(b, t);
        if loss.sparse_targets() {
            want.pop();
        }
        if target.shape() != want.as_slice() {
            return Err(Error::ShapeMismatch {
                layer: format!("loss {} target", loss.name()),
                expected: shape_str(&want),
                got: shape_str(target.shape()),
            });
        }
        Ok(())
    }

    /// The output's dimensions for a `[b, t, ..]` batch.
    pub(crate) fn output_dims(&self, b: usize, t: usize) -> Vec<usize> {
        let s = self.output_shape();
        if s.seq {
            vec![b, t, s.width]
        } else {
            vec![b, s.width]
        }
    }

    /// Runs the model on `x` `[batch, timesteps, features]` (inference: dropout off).
    /// Stateful layers start from their carried state, which is left unchanged (see
    /// [`predict_on_batch`](Self::predict_on_batch) to carry it on). `x` may be an array,
    /// a reference to one or a view.
    ///
    /// # Shapes
    /// Output `[batch, units]`, or `[batch, timesteps, units]` when the last layer returns
    /// sequences.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for a wrong feature count or timesteps, and
    /// [`Error::InvalidInput`] for a NaN or infinite value (with its position) or a token id
    /// outside the vocabulary.
    pub fn predict<'a>(&self, x: impl AsArray<'a, f32, Ix3>) -> Result<ArrayD<f32>> {
        let x = x.into();
        let (b, t, _) = x.dim();
        // Reuse the buffers of the last call unless another thread is predicting with them.
        if b * t <= PREDICT_KEEP_ROWS {
            if let Ok(mut ws) = self.predict_ws.0.try_lock() {
                return self.predict_with(x, &mut ws);
            }
        }
        self.predict_with(x, &mut Workspace::default())
    }

    /// [`predict`](Self::predict) reusing the buffers of `ws` (no allocation once warm).
    ///
    /// # Errors
    /// As [`predict`](Self::predict).
    pub fn predict_with(&self, x: ArrayView3<'_, f32>, ws: &mut Workspace) -> Result<ArrayD<f32>> {
        self.run_pass(
            ws,
            Pass {
                x,
                target: None,
                masks: None,
                grads: None,
                input_grad: false,
            },
        )?;
        self.outputs_of(ws)
    }

    /// The output of the last pass in `ws`, the parts joined.
    pub(crate) fn outputs_of(&self, ws: &Workspace) -> Result<ArrayD<f32>> {
        let parts: Vec<ArrayD<f32>> = ws.parts().iter().map(|p| self.part_output(p)).collect();
        if let [one] = parts.as_slice() {
            return Ok(one.clone());
        }
        let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
        ndarray::concatenate(Axis(0), &views).map_err(|e| Error::input(e.to_string()))
    }

    /// [`predict`](Self::predict) in batches of `batch_size` samples (bounded memory for
    /// large inputs); results equal the unbatched call.
    ///
    /// # Errors
    /// As [`predict`](Self::predict), and for `batch_size == 0`.
    pub fn predict_batched<'a>(
        &self,
        x: impl AsArray<'a, f32, Ix3>,
        batch_size: usize,
    ) -> Result<ArrayD<f32>> {
        let x = x.into();
        if batch_size == 0 {
            return Err(Error::input("predict: batch_size must be at least 1"));
        }
        let n = x.dim().0;
        let mut ws = Workspace::default();
        let mut parts = Vec::new();
        for start in (0..n).step_by(batch_size) {
            let end = (start + batch_size).min(n);
            parts.push(self.predict_with(x.slice_axis(Axis(0), Slice::from(start..end)), &mut ws)?);
        }
        if parts.is_empty() {
            return self.predict_with(x, &mut ws);
        }
        let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
        ndarray::concatenate(Axis(0), &views).map_err(|e| Error::input(e.to_string()))
    }

    /// Inference on one batch that carries the state of stateful layers on to the next
    /// call (Keras `predict_on_batch` on a stateful model), e.g. to generate step by step.
    ///
    /// # Errors
    /// As [`predict`](Self::predict).
    pub fn predict_on_batch<'a>(&mut self, x: impl AsArray<'a, f32, Ix3>) -> Result<ArrayD<f32>> {
        let mut ws =
            std::mem::take(&mut *self.predict_ws.0.lock().unwrap_or_else(|e| e.into_inner()));
        let r = self.predict_with(x.into(), &mut ws);
        if r.is_ok() {
            self.carry_states(&ws);
        }
        *self.predict_ws.0.lock().unwrap_or_else(|e| e.into_inner()) = ws;
        r
    }

    /// The Keras-style summary table (layer, output shape, params, totals).
    pub fn summary(&self) -> String {
        self.to_string()
    }
}

/// Number of weights of one layer.
fn layer_params(l: &dyn Layer) -> usize {
    l.weights().iter().map(|w| w.values.len()).sum()
}

#[cfg(test)]
mod tests;
