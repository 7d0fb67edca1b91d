//! The trainer: a model plus everything only training needs — the loss, the optimizer and
//! its slots, the metrics, the weight gradients and the reusable buffers.

use std::ops::{Deref, DerefMut};

use ndarray::{
    Array3, ArrayD, ArrayView3, ArrayViewD, AsArray, Axis, Dimension, Ix3, IxDyn, Slice,
};

use super::metrics::Accum;
use super::{mix, Evaluation, Metric};
use crate::error::{shape_str, Error, Result};
use crate::init::Rng;
use crate::layers::to_batch_major;
use crate::loss::Loss;
use crate::model::{zero_grads, Deferred, Grads, Model, Pass, Workspace};
use crate::optim::{Optimizer, OptimizerConfig, ParamMut};

/// A model being trained: Keras' `compile`d model. Made by [`Trainer::new`] or
/// [`Model::compile`]; the model is reached with [`model`](Self::model) (or through
/// `Deref`, so `trainer.predict(..)` works) and taken back with
/// [`into_model`](Self::into_model).
///
/// # Example
/// ```
/// use ndarray::{Array2, Array3};
/// use stacklstm::{Adam, Dense, Fit, Loss, Lstm, Sequential};
///
/// let model = Sequential::new().input_shape(4, 1).add(Lstm::new(8)).add(Dense::new(1)).build()?;
/// let mut trainer = model.compile(Loss::Mse, Adam::new(1e-2))?;
/// let x = Array3::from_shape_fn((16, 4, 1), |(i, t, _)| (i + t) as f32 * 0.01);
/// let y = Array2::from_shape_fn((16, 1), |(i, _)| (i + 4) as f32 * 0.01);
/// let history = trainer.fit(&x, &y, Fit::new().epochs(2).batch_size(8))?;
/// assert_eq!(history.epochs.len(), 2);
/// let model = trainer.into_model();
/// assert_eq!(model.predict(&x)?.shape(), &[16, 1]);
/// # Ok::<(), stacklstm::Error>(())
/// ```
#[derive(Debug)]
pub struct Trainer {
    model: Model,
    loss: Loss,
    optimizer: Optimizer,
    metrics: Vec<Metric>,
    /// Per layer, per weight: the gradients of the last step.
    grads: Grads,
    /// Buffers of the training and evaluation passes.
    ws: Workspace,
}

impl Clone for Trainer {
    /// A copy with the same model, loss, optimizer state and gradients; buffers start
    /// empty.
    fn clone(&self) -> Self {
        Trainer {
            model: self.model.clone(),
            loss: self.loss,
            optimizer: self.optimizer.clone(),
            metrics: self.metrics.clone(),
            grads: self.grads.clone(),
            ws: Workspace::default(),
        }
    }
}

impl Deref for Trainer {
    type Target = Model;
    fn deref(&self) -> &Model {
        &self.model
    }
}

impl DerefMut for Trainer {
    fn deref_mut(&mut self) -> &mut Model {
        &mut self.model
    }
}

impl Model {
    /// Keras `compile`: a [`Trainer`] for this model with the loss and optimizer.
    ///
    /// # Errors
    /// As [`Trainer::new`].
    pub fn compile(self, loss: Loss, optimizer: impl Into<OptimizerConfig>) -> Result<Trainer> {
        Trainer::new(self, loss, optimizer)
    }

    /// [`compile`](Self::compile) with metrics reported by `fit` and `evaluate`.
    ///
    /// # Errors
    /// As [`Trainer::with_metrics`].
    pub fn compile_with_metrics(
        self,
        loss: Loss,
        optimizer: impl Into<OptimizerConfig>,
        metrics: &[Metric],
    ) -> Result<Trainer> {
        Trainer::with_metrics(self, loss, optimizer, metrics)
    }
}

impl Trainer {
    /// A trainer for `model` with the loss and optimizer (fresh optimizer state).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for bad optimizer settings, or a loss that cannot work with
    /// the model's output (e.g. a cross-entropy on a single output).
    pub fn new(model: Model, loss: Loss, optimizer: impl Into<OptimizerConfig>) -> Result<Self> {
        Trainer::with_metrics(model, loss, optimizer, &[])
    }

    /// [`new`](Self::new) with metrics reported by `fit` and `evaluate`.
    ///
    /// # Errors
    /// As [`new`](Self::new), and for a metric that does not fit the loss.
    pub fn with_metrics(
        model: Model,
        loss: Loss,
        optimizer: impl Into<OptimizerConfig>,
        metrics: &[Metric],
    ) -> Result<Self> {
        let optimizer = Optimizer::new(optimizer)?;
        let width = model.output_shape().width;
        if matches!(
            loss,
            Loss::SparseCategoricalCrossentropy { .. } | Loss::CategoricalCrossentropy { .. }
        ) && width < 2
        {
            return Err(Error::config(format!(
                "loss {} needs an output with one column per class, but the model outputs {width}",
                loss.name()
            )));
        }
        for m in metrics {
            m.check(loss)?;
        }
        let mut grads = Grads::new();
        zero_grads(model.layers(), &mut grads);
        Ok(Trainer {
            model,
            loss,
            optimizer,
            metrics: metrics.to_vec(),
            grads,
            ws: Workspace::default(),
        })
    }

    /// Keras' re-`compile`: the same model (weights and carried state) with a new loss and
    /// optimizer; the optimizer state starts afresh.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn compile(self, loss: Loss, optimizer: impl Into<OptimizerConfig>) -> Result<Trainer> {
        Trainer::new(self.model, loss, optimizer)
    }

    /// [`compile`](Self::compile) with metrics.
    ///
    /// # Errors
    /// As [`with_metrics`](Self::with_metrics).
    pub fn compile_with_metrics(
        self,
        loss: Loss,
        optimizer: impl Into<OptimizerConfig>,
        metrics: &[Metric],
    ) -> Result<Trainer> {
        Trainer::with_metrics(self.model, loss, optimizer, metrics)
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }
    /// The model, mutable (weights, states).
    pub fn model_mut(&mut self) -> &mut Model {
        &mut self.model
    }
    /// The trained model.
    pub fn into_model(self) -> Model {
        self.model
    }
    /// The training loss.
    pub fn loss(&self) -> Loss {
        self.loss
    }
    /// The metrics reported by `fit` and `evaluate`.
    pub fn metrics(&self) -> &[Metric] {
        &self.metrics
    }
    /// The optimizer and its state.
    pub fn optimizer(&self) -> &Optimizer {
        &self.optimizer
    }
    /// The optimizer, mutable (to change its learning rate).
    pub fn optimizer_mut(&mut self) -> &mut Optimizer {
        &mut self.optimizer
    }
    /// Replaces the optimizer (with its state), e.g. when resuming.
    pub(crate) fn set_optimizer(&mut self, optimizer: Optimizer) {
        self.optimizer = optimizer;
    }

    /// One optimizer update on one batch (Keras `train_on_batch`); returns the batch's loss,
    /// computed before the update. Stateful layers carry their state on.
    ///
    /// # Errors
    /// Shape errors; [`Error::Diverged`] (epoch 1, step 1) if the loss or a gradient is
    /// not finite, in which case nothing was updated.
    pub fn train_on_batch<'a, D: Dimension>(
        &mut self,
        x: impl AsArray<'a, f32, Ix3>,
        y: impl AsArray<'a, f32, D>,
    ) -> Result<f64> {
        let y: ArrayViewD<'a, f32> = y.into().into_dyn();
        self.train_step(x.into(), y, 0, 0).map(|(v, _)| v)
    }

    /// One update at a known position (for error messages); returns the loss and the
    /// number of samples.
    pub(crate) fn train_step(
        &mut self,
        x: ArrayView3<'_, f32>,
        y: ArrayViewD<'_, f32>,
        epoch: usize,
        step: usize,
    ) -> Result<(f64, usize)> {
        // Dropout masks of this update depend only on the seed and the update count.
        let mut rng = Rng::new(mix(self.model.spec().seed, self.optimizer.iterations));
        let value = self.model.run_pass(
            &mut self.ws,
            Pass {
                x,
                target: Some((y, self.loss)),
                masks: Some(&mut rng),
                grads: Some(&mut self.grads),
                input_grad: false,
            },
        )?;
        let diverged = |what: String| Error::Diverged {
            epoch: epoch + 1,
            step: step + 1,
            what,
        };
        if !value.is_finite() {
            return Err(diverged(format!("the loss is {value}")));
        }
        let bad = self
            .grads
            .iter()
            .flatten()
            .enumerate()
            .find_map(|(k, g)| g.iter().find(|g| !g.is_finite()).map(|g| (k, *g)));
        if let Some((k, g)) = bad {
            let names = self.model.weight_names();
            let name = names.get(k).map_or("a weight", |(n, _)| n.as_str());
            return Err(diverged(format!("the gradient of {name} holds {g}")));
        }
        self.model.carry_states(&self.ws);
        // The update lands in the gradient buffers first; it is copied over the weights
        // only if every new weight is finite, so an overflowing update leaves the model as
        // it was (no copy of the weights kept aside).
        let mut params = trainable_params(&mut self.model, &mut self.grads);
        self.optimizer.step_staged(&mut params)?;
        let bad = params.iter().find_map(|p| {
            p.grad
                .iter()
                .find(|v| !v.is_finite())
                .map(|v| (p.name.clone(), *v))
        });
        if let Some((name, v)) = bad {
            return Err(diverged(format!(
                "the update overflowed {name} to {v}; the weights before it were kept"
            )));
        }
        for p in &mut params {
            p.value.copy_from_slice(p.grad);
        }
        Ok((value, x.dim().0))
    }

    /// Loss and compiled metrics over `x`, `y` in batches (Keras `evaluate`), dropout off.
    ///
    /// # Errors
    /// Shape errors; mismatched sample counts; no samples.
    pub fn evaluate<'a, D: Dimension>(
        &mut self,
        x: impl AsArray<'a, f32, Ix3>,
        y: impl AsArray<'a, f32, D>,
        batch_size: usize,
    ) -> Result<Evaluation> {
        let (x, y): (ArrayView3<'a, f32>, ArrayViewD<'a, f32>) = (x.into(), y.into().into_dyn());
        let n = x.dim().0;
        if y.ndim() == 0 || y.shape()[0] != n || n == 0 {
            return Err(Error::input(format!(
                "evaluate: x has {n} samples but y has shape {}",
                shape_str(y.shape())
            )));
        }
        let bs = batch_size.max(1);
        let mut acc = Accum::default();
        for start in (0..n).step_by(bs) {
            let end = (start + bs).min(n);
            let bx = x.slice_axis(Axis(0), Slice::from(start..end));
            let by = y.slice_axis(Axis(0), Slice::from(start..end));
            let v = self.eval_loss(bx, by)?;
            self.accumulate(&mut acc, v, end - start);
        }
        Ok(Evaluation {
            loss: acc.loss(),
            metrics: self
                .metrics
                .iter()
                .map(|m| (m.name().to_string(), acc.value(*m)))
                .collect(),
        })
    }

    /// Carries the final state of the stateful layers of the last pass on to the next.
    pub(crate) fn carry_last_states(&mut self) {
        self.model.carry_states(&self.ws);
    }

    /// Adds the last pass (its loss `value` over `samples`) to the running metrics.
    pub(crate) fn accumulate(&self, acc: &mut Accum, value: f64, samples: usize) {
        let width = self.model.output_shape().width;
        let parts = self.model.outputs_and_targets(&self.ws);
        acc.add(self.loss, value, samples, &parts, width);
    }

    /// Forward (dropout off, carried state used but not updated) and the loss, no
    /// backward.
    pub(crate) fn eval_loss(
        &mut self,
        x: ArrayView3<'_, f32>,
        y: ArrayViewD<'_, f32>,
    ) -> Result<f64> {
        self.model.run_pass(
            &mut self.ws,
            Pass {
                x,
                target: Some((y, self.loss)),
                masks: None,
                grads: None,
                input_grad: false,
            },
        )
    }

    /// Forward (dropout off), the compiled loss and backward on one batch, without an
    /// update: returns the loss and the gradient of the input `[batch, timesteps,
    /// features]` (zero for token ids); the weight gradients are then
    /// [`gradients`](Self::gradients).
    ///
    /// `target` has the output's shape, or for sparse losses the output's shape without
    /// its last axis (class ids).
    ///
    /// # Errors
    /// Shape errors for `x` or `target`, invalid targets (see [`Loss::compute`]).
    pub fn loss_and_gradients<'a, D: Dimension>(
        &mut self,
        x: impl AsArray<'a, f32, Ix3>,
        target: impl AsArray<'a, f32, D>,
    ) -> Result<(f64, Array3<f32>)> {
        let value = self.model.run_pass(
            &mut self.ws,
            Pass {
                x: x.into(),
                target: Some((target.into().into_dyn(), self.loss)),
                masks: None,
                grads: Some(&mut self.grads),
                input_grad: true,
            },
        )?;
        Ok((value, self.input_gradient()))
    }

    /// d input of the last backward, batch-major.
    fn input_gradient(&self) -> Array3<f32> {
        let p = &self.ws.parts()[0];
        to_batch_major(&p.grad_a, p.t, p.b, self.model.input_shape().1)
    }

    /// The weight gradients of the last step, in [`Model::get_weights`] order.
    pub fn gradients(&self) -> Vec<ArrayD<f32>> {
        let names = self.model.weight_names();
        names
            .iter()
            .zip(self.grads.iter().flatten())
            .filter_map(|((_, shape), g)| ArrayD::from_shape_vec(IxDyn(shape), g.clone()).ok())
            .collect()
    }

    /// Sets every gradient to zero (before accumulating several
    /// [`backward`](Self::backward) calls).
    pub fn zero_grad(&mut self) {
        zero_grads(self.model.layers(), &mut self.grads);
    }

    /// Forward pass (dropout off) that keeps what [`backward`](Self::backward) needs.
    ///
    /// # Errors
    /// As [`Model::predict`].
    pub fn forward_train<'a>(&mut self, x: impl AsArray<'a, f32, Ix3>) -> Result<ArrayD<f32>> {
        self.model.run_pass(
            &mut self.ws,
            Pass {
                x: x.into(),
                target: None,
                masks: None,
                grads: None,
                input_grad: true,
            },
        )?;
        self.model.outputs_of(&self.ws)
    }

    /// Backward of the last [`forward_train`](Self::forward_train): `dy` is the gradient
    /// of the output (same shape). **Accumulates** into the weight gradients (see
    /// [`zero_grad`](Self::zero_grad)) and returns the gradient of the input `[batch,
    /// timesteps, features]` (zero for token ids).
    ///
    /// # Errors
    /// [`Error::State`] without a preceding `forward_train` (each forward allows one
    /// backward: it overwrites the cached gates), [`Error::ShapeMismatch`] if `dy` does
    /// not have the output's shape.
    pub fn backward<'a, D: Dimension>(
        &mut self,
        dy: impl AsArray<'a, f32, D>,
    ) -> Result<Array3<f32>> {
        let dy: ArrayViewD<'a, f32> = dy.into().into_dyn();
        if !self.ws.fresh || self.ws.n_parts != 1 {
            return Err(Error::State(
                "backward needs a forward_train just before it (one backward per forward)".into(),
            ));
        }
        let (t, b) = (self.ws.t, self.ws.b);
        let want = self.model.output_dims(b, t);
        if dy.shape() != want.as_slice() {
            return Err(Error::ShapeMismatch {
                layer: "backward: output gradient".into(),
                expected: shape_str(&want),
                got: shape_str(dy.shape()),
            });
        }
        self.ws.fresh = false;
        let p = &mut self.ws.parts[0];
        p.dy.clear();
        if want.len() == 3 {
            for step in 0..t {
                for i in 0..b {
                    p.dy.extend(dy.index_axis(Axis(0), i).index_axis(Axis(0), step).iter());
                }
            }
        } else {
            p.dy.extend(dy.iter().copied());
        }
        self.model
            .backward_part(p, &mut self.grads, true, Deferred::default());
        Ok(self.input_gradient())
    }
}

/// The trainable weights of `model` with their gradients, for the optimizer.
fn trainable_params<'a>(model: &'a mut Model, grads: &'a mut Grads) -> Vec<ParamMut<'a>> {
    let names = model.weight_names();
    let trainable: Vec<bool> = (0..model.layers().len())
        .map(|i| model.is_trainable(i))
        .collect();
    let mut names = names.into_iter();
    let mut out = Vec::new();
    for ((layer, g), on) in model
        .layers_mut()
        .iter_mut()
        .zip(grads.iter_mut())
        .zip(trainable)
    {
        for (value, grad) in layer.weights_mut().into_iter().zip(g.iter_mut()) {
            let name = names.next().map(|(n, _)| n).unwrap_or_default();
            if on {
                out.push(ParamMut {
                    name,
                    value,
                    grad: grad.as_mut_slice(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use ndarray::{Array3, ArrayD, IxDyn};

    use super::*;
    use crate::layers::test_util::fd_check;
    use crate::{Dense, Lstm, Sequential, Sgd};

    #[test]
    fn model_gradients_match_finite_differences() {
        let m = Sequential::new()
            .input_shape(4, 2)
            .add(Lstm::new(3).return_sequences(true))
            .add(Lstm::new(3).return_sequences(true))
            .add(Dense::new(2).activation(crate::Activation::Tanh))
            .seed(3)
            .build()
            .unwrap();
        let mut m = m.compile(Loss::Mse, Sgd::new(0.1)).unwrap();
        let mut rng = Rng::new(8);
        let x = Array3::from_shape_fn((2, 4, 2), |_| rng.uniform(-1.0, 1.0) as f32);
        let y = ArrayD::from_shape_fn(IxDyn(&[2, 4, 2]), |_| rng.uniform(-1.0, 1.0) as f32);
        let (_, dx) = m.loss_and_gradients(&x, &y).unwrap();
        let grads = m.gradients();
        let weights = m.get_weights();
        let base = m.clone();
        let eval = |m: &mut Trainer, x: &Array3<f32>| m.eval_loss(x.view(), y.view()).unwrap();
        let dxs: Vec<f32> = dx.iter().copied().collect();
        fd_check("input", &dxs, x.len(), |i, e| {
            let mut x2 = x.clone();
            x2.as_slice_mut().unwrap()[i] += e;
            eval(&mut base.clone(), &x2)
        });
        for (k, (g, w)) in grads.iter().zip(&weights).enumerate() {
            let g: Vec<f32> = g.iter().copied().collect();
            fd_check(&format!("weight {k}"), &g, w.len(), |i, e| {
                let mut ws2 = weights.clone();
                ws2[k].as_slice_mut().unwrap()[i] += e;
                let mut m2 = base.clone();
                m2.set_weights(&ws2).unwrap();
                eval(&mut m2, &x)
            });
        }
    }

    #[test]
    fn forward_train_then_backward_once_and_only_once() {
        let mut m = Sequential::new()
            .input_shape(5, 2)
            .add(Lstm::new(4).return_sequences(true))
            .add(Dense::new(1))
            .seed(2)
            .build()
            .unwrap()
            .compile(Loss::Mse, Sgd::new(0.1))
            .unwrap();
        let x = Array3::from_shape_fn((3, 5, 2), |(i, t, f)| (i + t + f) as f32 * 0.1);
        let dy = ArrayD::from_elem(IxDyn(&[3, 5, 1]), 0.5f32);
        assert!(matches!(m.backward(&dy), Err(Error::State(_))));
        m.zero_grad();
        m.forward_train(&x).unwrap();
        m.backward(&dy).unwrap();
        let g = m.gradients();
        // The gates were consumed: a second backward is refused, not computed from garbage.
        let e = m.backward(&dy).unwrap_err();
        assert!(matches!(e, Error::State(_)), "{e}");
        assert!(e.to_string().contains("forward_train"), "{e}");
        // A new forward allows it again, with the same result.
        m.zero_grad();
        m.forward_train(&x).unwrap();
        m.backward(&dy).unwrap();
        assert_eq!(m.gradients(), g);
    }

    #[test]
    fn a_frozen_layer_keeps_its_weights_and_still_passes_gradients() {
        let mut model = Sequential::new()
            .input_shape(4, 2)
            .add(Lstm::new(3).return_sequences(true).trainable(false))
            .add(Lstm::new(3))
            .add(Dense::new(1))
            .seed(7)
            .build()
            .unwrap();
        let frozen = model.get_weights();
        let s = model.summary();
        assert!(s.contains("Non-trainable params: 72 (288.00 B)"), "{s}");
        model.set_trainable("lstm", true).unwrap();
        assert_eq!(model.trainable_param_count(), model.param_count());
        model.set_trainable("lstm", false).unwrap();
        let err = model.set_trainable("nope", false).unwrap_err().to_string();
        assert!(err.contains("'nope'") && err.contains("lstm_1"), "{err}");
        let mut t = model.compile(Loss::Mse, Sgd::new(0.5)).unwrap();
        let x = Array3::from_shape_fn((6, 4, 2), |(i, s, f)| ((i + s + f) as f32 * 0.3).sin());
        let y = ndarray::Array2::from_shape_fn((6, 1), |(i, _)| i as f32 * 0.1);
        t.train_on_batch(&x, &y).unwrap();
        let after = t.get_weights();
        // The frozen LSTM's three tensors are untouched, the rest moved.
        assert_eq!(after[..3], frozen[..3]);
        assert!(after[3..].iter().zip(&frozen[3..]).all(|(a, b)| a != b));
        // Its gradient was computed (the layers below a frozen one still learn through it).
        assert!(t.gradients()[0].iter().any(|g| *g != 0.0));
    }
}
