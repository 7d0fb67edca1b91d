//! Training: `compile`, `train_on_batch`, `fit`, `evaluate`, batched `predict`, with Keras
//! semantics.
//!
//! - The loss of an epoch is the mean of the batch losses weighted by batch size (Keras'
//!   running mean); validation runs after each epoch with dropout off.
//! - `validation_split` takes the *last* fraction of the samples, before shuffling, as Keras
//!   does.
//! - Randomness is a pure function of seeds and counters: the shuffle of epoch `e` comes
//!   from `(seed, e)`, the dropout masks of update `n` from `(model seed, n)`. So the same
//!   seed gives bit-identical weights run after run, and training resumed from a checkpoint
//!   (weights + optimizer state + epoch) continues exactly as if never interrupted.
//! - A non-finite loss or gradient stops training with [`Error::Diverged`] naming the epoch
//!   and step, *before* the update, so the model keeps its last finite weights.
//! - A stop flag ([`Fit::stop_flag`], [`StreamFit::stop`]), an `Arc<AtomicBool>` that another
//!   thread or a signal handler may set, is read before every batch: once set, training ends
//!   at that batch boundary and returns normally, with [`History::interrupted`] saying where.
//!   [`Model::training_state_at`] saves that position and [`Fit::initial_batch`] resumes from
//!   it; for `fit` the resumed run ends with the same weights as an uninterrupted one.

pub mod callbacks;
pub mod checkpoint;
pub mod metrics;
pub mod stream;

pub use stream::StreamFit;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ndarray::{Array3, ArrayD, ArrayView3, ArrayViewD, Axis, IxDyn, Slice};

use crate::error::{shape_str, Error, Result};
use crate::init::Rng;
use crate::loss::Loss;
use crate::model::Model;
use crate::optim::{Optimizer, OptimizerConfig};

pub use callbacks::{
    Callback, Control, EarlyStopping, EpochLogger, EpochLogs, Mode, ModelCheckpoint,
    ReduceLrOnPlateau, Saver, TrainInfo,
};
use metrics::Accum;
pub use metrics::Metric;

/// What `compile` sets: the loss, the optimizer with its state, the metrics.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The training loss.
    pub loss: Loss,
    /// The optimizer and its state.
    pub optimizer: Optimizer,
    /// Metrics reported by `fit` and `evaluate`.
    pub metrics: Vec<Metric>,
}

/// Options of [`Model::fit`], Keras names and defaults.
pub struct Fit {
    /// Passes over the data (default 1).
    pub epochs: usize,
    /// Samples per update (default 32; the last batch may be smaller).
    pub batch_size: usize,
    /// Shuffle the training samples every epoch (default true).
    pub shuffle: bool,
    /// Seed of the shuffles (default 0).
    pub seed: u64,
    /// Fraction of the samples, taken from the end, held out for validation.
    pub validation_split: f32,
    /// Explicit validation data (takes precedence over `validation_split`).
    pub validation_data: Option<(Array3<f32>, ArrayD<f32>)>,
    /// First epoch (0-based), to resume a run.
    pub initial_epoch: usize,
    /// Batches of `initial_epoch` already done, to resume a run interrupted mid-epoch
    /// (default 0). The loss logged for that epoch covers only the remaining batches.
    pub initial_batch: usize,
    /// Checked before every batch: once `true`, training stops there (see
    /// [`History::interrupted`]).
    pub stop: Option<Arc<AtomicBool>>,
    /// Callbacks, called in order.
    pub callbacks: Vec<Box<dyn Callback>>,
}

impl Default for Fit {
    fn default() -> Self {
        Fit {
            epochs: 1,
            batch_size: 32,
            shuffle: true,
            seed: 0,
            validation_split: 0.0,
            validation_data: None,
            initial_epoch: 0,
            initial_batch: 0,
            stop: None,
            callbacks: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Fit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fit")
            .field("epochs", &self.epochs)
            .field("batch_size", &self.batch_size)
            .field("shuffle", &self.shuffle)
            .field("seed", &self.seed)
            .field("validation_split", &self.validation_split)
            .field("initial_epoch", &self.initial_epoch)
            .field("initial_batch", &self.initial_batch)
            .field("stop", &self.stop)
            .field("callbacks", &self.callbacks.len())
            .finish()
    }
}

impl Fit {
    /// Keras defaults (1 epoch, batch 32, shuffled).
    #[must_use]
    pub fn new() -> Self {
        Fit::default()
    }
    /// Sets `epochs`.
    #[must_use]
    pub fn epochs(mut self, n: usize) -> Self {
        self.epochs = n;
        self
    }
    /// Sets `batch_size`.
    #[must_use]
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }
    /// Sets `shuffle`.
    #[must_use]
    pub fn shuffle(mut self, on: bool) -> Self {
        self.shuffle = on;
        self
    }
    /// Sets the shuffle seed.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Sets `validation_split`.
    #[must_use]
    pub fn validation_split(mut self, f: f32) -> Self {
        self.validation_split = f;
        self
    }
    /// Sets `validation_data`.
    #[must_use]
    pub fn validation_data(mut self, x: Array3<f32>, y: ArrayD<f32>) -> Self {
        self.validation_data = Some((x, y));
        self
    }
    /// Sets `initial_epoch` (resume).
    #[must_use]
    pub fn initial_epoch(mut self, e: usize) -> Self {
        self.initial_epoch = e;
        self
    }
    /// Sets `initial_batch` (resume mid-epoch, from [`Interruption::batches_done`]).
    #[must_use]
    pub fn initial_batch(mut self, b: usize) -> Self {
        self.initial_batch = b;
        self
    }
    /// Stops training at the next batch boundary once `flag` is `true` (e.g. set by a
    /// Ctrl-C handler); `fit` then returns `Ok` with [`History::interrupted`] set.
    #[must_use]
    pub fn stop_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.stop = Some(flag);
        self
    }
    /// Adds a callback.
    #[must_use]
    pub fn callback(mut self, cb: impl Callback + 'static) -> Self {
        self.callbacks.push(Box::new(cb));
        self
    }
}

/// What `fit` returns: the logs of every epoch run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// One entry per completed epoch.
    pub epochs: Vec<EpochLogs>,
    /// Where training stopped when the stop flag was set; `None` when it ran to the end
    /// (or a callback stopped it after an epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<Interruption>,
}

/// Where a run stopped by its stop flag ended: resume with
/// `initial_epoch(epoch).initial_batch(batches_done)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interruption {
    /// The 0-based epoch that was running (all epochs before it are complete).
    pub epoch: usize,
    /// Batches of that epoch done (0-based index of the first batch not run).
    pub batches_done: usize,
}

/// Whether the optional stop flag is set.
pub(crate) fn stop_requested(flag: Option<&Arc<AtomicBool>>) -> bool {
    flag.is_some_and(|f| f.load(Ordering::Relaxed))
}

use serde::{Deserialize, Serialize};

impl History {
    /// The series of one logged quantity (`loss`, `val_loss`, `mae`, ...).
    pub fn series(&self, name: &str) -> Vec<f64> {
        self.epochs.iter().filter_map(|e| e.get(name)).collect()
    }
}

/// Evaluation results: the loss and each compiled metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Mean loss.
    pub loss: f64,
    /// Metrics by name.
    pub metrics: std::collections::BTreeMap<String, f64>,
}

fn mix(a: u64, b: u64) -> u64 {
    // Distinct streams per (seed, counter): SplitMix64 inside Rng spreads the bits.
    a.rotate_left(29) ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Rows `idx` of an array along axis 0.
fn take_rows<D: ndarray::RemoveAxis>(
    a: &ndarray::ArrayView<'_, f32, D>,
    idx: &[usize],
) -> ndarray::Array<f32, D> {
    a.select(Axis(0), idx)
}

impl Model {
    /// Sets the loss and optimizer for training (Keras `compile`), resetting the
    /// optimizer's state.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for bad optimizer settings, or a loss that cannot work with
    /// the model's output (e.g. a cross-entropy on a single output).
    pub fn compile(&mut self, loss: Loss, optimizer: impl Into<OptimizerConfig>) -> Result<()> {
        self.compile_with_metrics(loss, optimizer, &[])
    }

    /// [`compile`](Self::compile) with metrics reported by `fit` and `evaluate`.
    ///
    /// # Errors
    /// As [`compile`](Self::compile), and for a metric that does not fit the loss.
    pub fn compile_with_metrics(
        &mut self,
        loss: Loss,
        optimizer: impl Into<OptimizerConfig>,
        metrics: &[Metric],
    ) -> Result<()> {
        let optimizer = Optimizer::new(optimizer)?;
        let width = self.output_shape().width;
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
        self.compiled = Some(Compiled {
            loss,
            optimizer,
            metrics: metrics.to_vec(),
        });
        Ok(())
    }

    /// The compiled loss, optimizer and metrics.
    pub fn compiled(&self) -> Option<&Compiled> {
        self.compiled.as_ref()
    }

    /// The optimizer, once compiled (to change its learning rate, or save its state).
    pub fn optimizer_mut(&mut self) -> Option<&mut Optimizer> {
        self.compiled.as_mut().map(|c| &mut c.optimizer)
    }

    /// One optimizer update on one batch (Keras `train_on_batch`); returns the batch's loss,
    /// computed before the update. Stateful LSTMs carry their state on.
    ///
    /// # Errors
    /// [`Error::State`] before `compile`; shape errors; [`Error::Diverged`] (epoch 0, step 1)
    /// if the loss or a gradient is not finite, in which case nothing was updated.
    pub fn train_on_batch(
        &mut self,
        x: ArrayView3<'_, f32>,
        y: ArrayViewD<'_, f32>,
    ) -> Result<f64> {
        self.train_step(x, y, 0, 0).map(|(v, _)| v)
    }

    /// One update at a known position (for error messages); returns the loss and samples.
    pub(crate) fn train_step_at(
        &mut self,
        x: ArrayView3<'_, f32>,
        y: ArrayViewD<'_, f32>,
        epoch: usize,
        step: usize,
    ) -> Result<(f64, usize)> {
        self.train_step(x, y, epoch, step)
    }

    /// One update; returns the loss and the number of samples.
    fn train_step(
        &mut self,
        x: ArrayView3<'_, f32>,
        y: ArrayViewD<'_, f32>,
        epoch: usize,
        step: usize,
    ) -> Result<(f64, usize)> {
        let c = self
            .compiled
            .take()
            .ok_or_else(|| Error::State("call compile(loss, optimizer) before training".into()))?;
        // Dropout masks of this update depend only on the seed and the update count.
        self.rng = Rng::new(mix(self.spec().seed, c.optimizer.iterations));
        let r = self.loss_step(x, y, c.loss, true, false);
        let mut c = c;
        let r = r.and_then(|value| {
            let diverged = |what: String| Error::Diverged {
                epoch: epoch + 1,
                step: step + 1,
                what,
            };
            if !value.is_finite() {
                return Err(diverged(format!("the loss is {value}")));
            }
            for p in self.params_mut() {
                if let Some(g) = p.grad.iter().find(|g| !g.is_finite()) {
                    return Err(diverged(format!("the gradient of {} holds {g}", p.name)));
                }
            }
            self.carry_states();
            // The update lands in the gradient buffers first; it is copied over the
            // weights only if every new weight is finite, so an overflowing update leaves
            // the model as it was (no copy of the weights kept aside).
            let mut params = self.params_mut();
            c.optimizer.step_staged(&mut params)?;
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
        });
        self.compiled = Some(c);
        r
    }

    /// Trains for `fit.epochs` epochs (Keras `fit`). `x` is `[samples, timesteps, features]`,
    /// `y` the targets (the output's shape, or class ids for sparse losses).
    ///
    /// # Errors
    /// [`Error::State`] before `compile`; [`Error::InvalidInput`] for mismatched sample
    /// counts, an empty training set or bad options; [`Error::Diverged`] (the model keeps its
    /// last finite weights); any error a callback returns.
    pub fn fit(&mut self, x: &Array3<f32>, y: &ArrayD<f32>, mut fit: Fit) -> Result<History> {
        let Some(compiled) = self.compiled.as_ref() else {
            return Err(Error::State(
                "call compile(loss, optimizer) before fit".into(),
            ));
        };
        let (loss, metrics) = (compiled.loss, compiled.metrics.clone());
        let n = x.dim().0;
        if y.ndim() == 0 || y.shape()[0] != n {
            return Err(Error::input(format!(
                "fit: x has {n} samples but y has shape {}",
                shape_str(y.shape())
            )));
        }
        if fit.batch_size == 0 {
            return Err(Error::input("fit: batch_size must be at least 1"));
        }
        if !(0.0..1.0).contains(&fit.validation_split) {
            return Err(Error::input(format!(
                "fit: validation_split must be in [0, 1), got {}",
                fit.validation_split
            )));
        }
        let stateful = self
            .spec()
            .layers
            .iter()
            .any(|l| matches!(l, crate::LayerSpec::Lstm(l) if l.stateful));
        if stateful && fit.shuffle {
            return Err(Error::input(
                "fit: a stateful model needs shuffle(false), so that batch k of one epoch continues batch k of the previous one",
            ));
        }
        // Validation data: explicit, or the last fraction of the samples.
        let n_val = if fit.validation_data.is_some() {
            0
        } else {
            (n as f64 * f64::from(fit.validation_split)).floor() as usize
        };
        let n_train = n - n_val;
        if n_train == 0 {
            return Err(Error::input(
                "fit: no training samples (validation_split leaves none)",
            ));
        }
        let xv = x.view();
        let yv = y.view();
        let validation: Option<(Array3<f32>, ArrayD<f32>)> = match fit.validation_data.take() {
            Some((vx, vy)) => {
                if vy.ndim() == 0 || vy.shape()[0] != vx.dim().0 {
                    return Err(Error::input(
                        "fit: validation x and y have different sample counts",
                    ));
                }
                Some((vx, vy))
            }
            None if n_val > 0 => Some((
                xv.slice_axis(Axis(0), Slice::from(n_train..)).to_owned(),
                yv.slice_axis(Axis(0), Slice::from(n_train..)).to_owned(),
            )),
            None => None,
        };
        let batches = n_train.div_ceil(fit.batch_size);
        let info = TrainInfo {
            epochs: fit.epochs,
            initial_epoch: fit.initial_epoch,
            batches,
            samples: n_train,
        };
        let mut callbacks = std::mem::take(&mut fit.callbacks);
        for cb in &mut callbacks {
            cb.on_train_begin(&info)?;
        }
        if fit.initial_batch > 0 && fit.initial_batch >= batches {
            return Err(Error::input(format!(
                "fit: initial_batch {} but an epoch has only {batches} batches",
                fit.initial_batch
            )));
        }
        let mut history = History::default();
        let mut order: Vec<usize> = (0..n_train).collect();
        'epochs: for epoch in fit.initial_epoch..fit.epochs {
            let start = Instant::now();
            if fit.shuffle {
                order = (0..n_train).collect();
                Rng::new(mix(fit.seed, epoch as u64)).shuffle(&mut order);
            }
            if stateful {
                self.reset_states();
            }
            let mut acc = Accum::default();
            for (bi, idx) in order.chunks(fit.batch_size).enumerate() {
                if epoch == fit.initial_epoch && bi < fit.initial_batch {
                    continue;
                }
                if stop_requested(fit.stop.as_ref()) {
                    history.interrupted = Some(Interruption {
                        epoch,
                        batches_done: bi,
                    });
                    break 'epochs;
                }
                let bx = take_rows(&xv, idx);
                let by = take_rows(&yv, idx);
                let (value, samples) = self.train_step(bx.view(), by.view(), epoch, bi)?;
                let width = self.output_shape().width;
                acc.add(loss, value, samples, &self.last_output_and_target(), width);
                for cb in &mut callbacks {
                    cb.on_batch_end(epoch, bi, value)?;
                }
            }
            let val = match &validation {
                Some((vx, vy)) => Some(self.evaluate(vx, vy, fit.batch_size)?),
                None => None,
            };
            let (logs, stop) = self.end_epoch(epoch, start, &acc, &metrics, val, &mut callbacks)?;
            history.epochs.push(logs);
            if stop {
                break;
            }
        }
        for cb in &mut callbacks {
            cb.on_train_end(self)?;
        }
        Ok(history)
    }

    /// Logs an epoch and runs the callbacks' `on_epoch_end`; returns the logs and whether a
    /// callback asked to stop.
    pub(crate) fn end_epoch(
        &mut self,
        epoch: usize,
        start: Instant,
        acc: &Accum,
        metrics: &[Metric],
        val: Option<Evaluation>,
        callbacks: &mut [Box<dyn Callback>],
    ) -> Result<(EpochLogs, bool)> {
        let logs = EpochLogs {
            epoch,
            loss: acc.loss(),
            val_loss: val.as_ref().map(|e| e.loss),
            metrics: metrics
                .iter()
                .map(|m| (m.name().to_string(), acc.value(*m)))
                .collect(),
            val_metrics: val.map(|e| e.metrics).unwrap_or_default(),
            learning_rate: self
                .compiled
                .as_ref()
                .map_or(0.0, |c| c.optimizer.current_learning_rate()),
            seconds: start.elapsed().as_secs_f64(),
        };
        let mut stop = false;
        for cb in callbacks.iter_mut() {
            stop |= cb.on_epoch_end(self, &logs)? == Control::Stop;
        }
        Ok((logs, stop))
    }

    /// Loss and compiled metrics over `x`, `y` in batches (Keras `evaluate`), dropout off.
    ///
    /// # Errors
    /// [`Error::State`] before `compile`; shape errors.
    pub fn evaluate(
        &mut self,
        x: &Array3<f32>,
        y: &ArrayD<f32>,
        batch_size: usize,
    ) -> Result<Evaluation> {
        let Some(c) = self.compiled.as_ref() else {
            return Err(Error::State(
                "call compile(loss, optimizer) before evaluate".into(),
            ));
        };
        let (loss, metrics) = (c.loss, c.metrics.clone());
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
            let v = self.eval_loss(bx, by, loss)?;
            let width = self.output_shape().width;
            acc.add(loss, v, end - start, &self.last_output_and_target(), width);
        }
        Ok(Evaluation {
            loss: acc.loss(),
            metrics: metrics
                .iter()
                .map(|m| (m.name().to_string(), acc.value(*m)))
                .collect(),
        })
    }

    /// [`predict`](Self::predict) in batches of `batch_size` samples (bounded memory for
    /// large inputs); results equal the unbatched call.
    ///
    /// # Errors
    /// As [`predict`](Self::predict), and for `batch_size == 0`.
    pub fn predict_batched(&self, x: &Array3<f32>, batch_size: usize) -> Result<ArrayD<f32>> {
        if batch_size == 0 {
            return Err(Error::input("predict: batch_size must be at least 1"));
        }
        let n = x.dim().0;
        let mut ws = crate::model::Workspace::default();
        let mut parts = Vec::new();
        for start in (0..n).step_by(batch_size) {
            let end = (start + batch_size).min(n);
            parts.push(self.predict_with(x.slice_axis(Axis(0), Slice::from(start..end)), &mut ws)?);
        }
        if parts.is_empty() {
            return self.predict_with(x.view(), &mut ws);
        }
        let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
        ndarray::concatenate(Axis(0), &views).map_err(|e| Error::input(e.to_string()))
    }
}

/// Convenience: an `ArrayD` from a shape and values (for tests and examples).
pub fn array(shape: &[usize], values: Vec<f32>) -> Result<ArrayD<f32>> {
    ArrayD::from_shape_vec(IxDyn(shape), values).map_err(|e| Error::input(e.to_string()))
}
