//! The callbacks `fit` runs: the Python side's (progress bar and user callbacks), Ctrl-C,
//! and the library's own (`EarlyStopping`, `ModelCheckpoint`, `ReduceLROnPlateau`).
//!
//! Training runs without the GIL. [`PyHooks`] takes it only to call Python: after every
//! batch when a Python callback has batch hooks, otherwise at most every
//! [`CHECK_INTERVAL`] (the progress bar's refresh, and a check for Ctrl-C), and at every
//! epoch's start and end. Ctrl-C (`KeyboardInterrupt`) sets the run's stop flag, so training
//! ends at the next batch boundary with consistent weights, and `fit` then raises the
//! `KeyboardInterrupt`. An exception raised by a Python callback aborts training and is
//! raised from `fit` as it was.
//!
//! While a Python callback runs at an epoch boundary, the trainer is lent back to the
//! model's `Core` (a spare trainer holds its place in the run), so the callback can read and
//! change the model (`self.model.get_weights()`, `set_weights`, `save`, the learning rate).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::PyDict;
use stacklstm::io::native;
use stacklstm::loss::Loss;
use stacklstm::train::{
    Callback, Control, EarlyStopping, EpochLogs, Mode, ModelCheckpoint, ReduceLrOnPlateau, Saver,
    TrainInfo,
};
use stacklstm::{Dense, Error, Sequential, Sgd, Trainer};

use crate::core::{borrow_mut_waiting, Core, Engine};
use crate::errors::{value_error, Context};

/// How often, at most, training takes the GIL when no Python callback needs every batch
/// (Keras' progress bar refreshes at the same rate).
pub const CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// An exception raised in Python while training, raised again from `fit`.
pub type Pending = Arc<Mutex<Option<PyErr>>>;

/// The bridge to the Python side of `fit` (see the module docs). `hooks` is a Python object
/// with `train_begin(epochs, initial_epoch, batches, samples)`, `epoch_begin(epoch)`,
/// `batch_end(epoch, batch, mean_loss) -> stop`, `epoch_end(epoch, logs) -> stop` and
/// `train_end()`.
pub struct PyHooks {
    core: Py<Core>,
    hooks: Option<Py<PyAny>>,
    every_batch: bool,
    batch_size: usize,
    stop: Arc<AtomicBool>,
    pending: Pending,
    /// Holds the trainer's place in the run while the trainer is lent to the `Core`.
    spare: Option<Trainer>,
    info: Option<TrainInfo>,
    started: bool,
    last_call: Instant,
    /// Running sums of the epoch's batch losses, weighted by batch size.
    loss_sum: f64,
    seen: usize,
}

impl PyHooks {
    /// The bridge for one `fit` run.
    pub fn new(
        core: Py<Core>,
        hooks: Option<Py<PyAny>>,
        every_batch: bool,
        batch_size: usize,
        stop: Arc<AtomicBool>,
        pending: Pending,
    ) -> PyResult<PyHooks> {
        // The smallest trainer there is.
        let spare = Sequential::new()
            .input_shape(1, 1)
            .add(Dense::new(1))
            .build()
            .and_then(|m| m.compile(Loss::Mse, Sgd::default()))
            .context("")?;
        Ok(PyHooks {
            core,
            hooks,
            every_batch,
            batch_size,
            stop,
            pending,
            spare: Some(spare),
            info: None,
            started: false,
            last_call: Instant::now(),
            loss_sum: 0.0,
            seen: 0,
        })
    }

    /// Keeps `e` to raise from `fit` and stops training; the error returned aborts the run.
    fn fail(&self, e: PyErr) -> Error {
        self.stop.store(true, Ordering::Relaxed);
        *self.pending.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        Error::State("a Python callback raised an exception".into())
    }

    /// Whether an exception (or Ctrl-C) is already waiting to be raised.
    fn failed(&self) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Handles Ctrl-C: the `KeyboardInterrupt` is kept and training stops at the next
    /// batch boundary (not an error: the weights are those of the last finished batch).
    fn check_signals(&self, py: Python<'_>) -> bool {
        match py.check_signals() {
            Ok(()) => false,
            Err(e) => {
                self.stop.store(true, Ordering::Relaxed);
                *self.pending.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                true
            }
        }
    }

    /// Runs `f` with the trainer lent to the model's `Core`.
    fn lent<R>(
        &mut self,
        py: Python<'_>,
        trainer: &mut Trainer,
        f: impl FnOnce(Python<'_>) -> PyResult<R>,
    ) -> PyResult<R> {
        let core = self.core.bind(py);
        let Some(spare) = self.spare.take() else {
            return f(py);
        };
        match core.try_borrow_mut() {
            Ok(mut c) => c.engine = Engine::Compiled(Box::new(std::mem::replace(trainer, spare))),
            Err(_) => {
                self.spare = Some(spare);
                return f(py);
            }
        }
        let r = f(py);
        // `compile` and `fit` are refused while the trainer is lent, so it comes back as a
        // trainer (its weights possibly changed by the callback).
        let mut c = borrow_mut_waiting(core);
        match std::mem::replace(&mut c.engine, Engine::Training) {
            Engine::Compiled(t) => self.spare = Some(std::mem::replace(trainer, *t)),
            other => c.engine = other,
        }
        drop(c);
        r
    }

    /// Calls `hooks.<name>(args)` with the trainer lent; `Ok(true)` when it asks to stop.
    fn call(
        &mut self,
        trainer: &mut Trainer,
        name: &str,
        args: impl for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyTuple>>,
    ) -> Result<bool, Error> {
        if self.failed() {
            return Ok(false);
        }
        let Some(hooks) = self
            .hooks
            .as_ref()
            .map(|h| Python::attach(|py| h.clone_ref(py)))
        else {
            return Ok(false);
        };
        Python::attach(|py| {
            if self.check_signals(py) {
                return Ok(false);
            }
            let r = self.lent(py, trainer, |py| {
                let out = hooks.call_method1(py, name, args(py)?)?;
                out.is_truthy(py)
            });
            self.last_call = Instant::now();
            r.map_err(|e| self.fail(e))
        })
    }
}

impl Callback for PyHooks {
    fn on_train_begin(&mut self, info: &TrainInfo) -> stacklstm::Result<()> {
        // Python's `on_train_begin` is called at the first epoch start, where the trainer
        // can be lent.
        self.info = Some(*info);
        Ok(())
    }

    fn on_epoch_begin(&mut self, trainer: &mut Trainer, epoch: usize) -> stacklstm::Result<()> {
        self.loss_sum = 0.0;
        self.seen = 0;
        if !self.started {
            self.started = true;
            if let Some(i) = self.info {
                self.call(trainer, "train_begin", |py| {
                    (i.epochs, i.initial_epoch, i.batches, i.samples).into_pyobject(py)
                })?;
            }
        }
        self.call(trainer, "epoch_begin", |py| (epoch,).into_pyobject(py))?;
        Ok(())
    }

    fn on_batch_end(&mut self, epoch: usize, batch: usize, loss: f64) -> stacklstm::Result<()> {
        let samples = self.info.map_or(self.batch_size, |i| i.samples);
        let n = self
            .batch_size
            .min(samples.saturating_sub(batch * self.batch_size))
            .max(1);
        self.loss_sum += loss * n as f64;
        self.seen += n;
        if !(self.every_batch || self.last_call.elapsed() >= CHECK_INTERVAL) || self.failed() {
            return Ok(());
        }
        self.last_call = Instant::now();
        let mean = self.loss_sum / self.seen as f64;
        Python::attach(|py| {
            if self.check_signals(py) {
                return Ok(());
            }
            let Some(h) = &self.hooks else {
                return Ok(());
            };
            match h
                .call_method1(py, "batch_end", (epoch, batch, mean))
                .and_then(|v| v.is_truthy(py))
            {
                Ok(true) => self.stop.store(true, Ordering::Relaxed),
                Ok(false) => {}
                Err(e) => return Err(self.fail(e)),
            }
            Ok(())
        })
    }

    fn on_epoch_end(
        &mut self,
        trainer: &mut Trainer,
        logs: &EpochLogs,
    ) -> stacklstm::Result<Control> {
        let stop = self.call(trainer, "epoch_end", |py| {
            (logs.epoch, logs_dict(py, logs)?).into_pyobject(py)
        })?;
        Ok(if stop {
            Control::Stop
        } else {
            Control::Continue
        })
    }

    fn on_train_end(&mut self, trainer: &mut Trainer) -> stacklstm::Result<()> {
        self.call(trainer, "train_end", |py| {
            Ok(pyo3::types::PyTuple::empty(py))
        })?;
        Ok(())
    }
}

/// One epoch's logs as Keras' dict: `loss`, the metrics, `val_loss`, `val_<metric>`.
pub fn logs_dict<'py>(py: Python<'py>, e: &EpochLogs) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("loss", e.loss)?;
    for (k, v) in &e.metrics {
        d.set_item(k, v)?;
    }
    if let Some(v) = e.val_loss {
        d.set_item("val_loss", v)?;
    }
    for (k, v) in &e.val_metrics {
        d.set_item(format!("val_{k}"), v)?;
    }
    Ok(d)
}

/// A library callback shared with the Python object that made it, so its state
/// (`stopped_epoch`, `saved_epochs`) can be read after `fit`.
struct Shared<C>(Arc<Mutex<C>>);

impl<C> Shared<C> {
    fn get(&self) -> std::sync::MutexGuard<'_, C> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<C: Callback> Callback for Shared<C> {
    fn on_train_begin(&mut self, info: &TrainInfo) -> stacklstm::Result<()> {
        self.get().on_train_begin(info)
    }
    fn on_epoch_begin(&mut self, trainer: &mut Trainer, epoch: usize) -> stacklstm::Result<()> {
        self.get().on_epoch_begin(trainer, epoch)
    }
    fn on_batch_end(&mut self, epoch: usize, batch: usize, loss: f64) -> stacklstm::Result<()> {
        self.get().on_batch_end(epoch, batch, loss)
    }
    fn on_epoch_end(
        &mut self,
        trainer: &mut Trainer,
        logs: &EpochLogs,
    ) -> stacklstm::Result<Control> {
        self.get().on_epoch_end(trainer, logs)
    }
    fn on_train_end(&mut self, trainer: &mut Trainer) -> stacklstm::Result<()> {
        self.get().on_train_end(trainer)
    }
}

fn lock<C>(c: &Arc<Mutex<C>>) -> std::sync::MutexGuard<'_, C> {
    c.lock().unwrap_or_else(|p| p.into_inner())
}

/// `"min"`, `"max"` or `"auto"` (`None`).
fn mode(mode: &str) -> PyResult<Option<Mode>> {
    match mode {
        "auto" => Ok(None),
        "min" => Ok(Some(Mode::Min)),
        "max" => Ok(Some(Mode::Max)),
        other => Err(value_error(format!(
            "mode must be 'auto', 'min' or 'max', got '{other}'"
        ))),
    }
}

/// The library's `EarlyStopping`.
#[pyclass(module = "stacklstm._native")]
pub struct EarlyStoppingCore(Arc<Mutex<EarlyStopping>>);

#[pymethods]
impl EarlyStoppingCore {
    #[new]
    fn new(
        monitor: &str,
        patience: usize,
        min_delta: f64,
        restore_best_weights: bool,
        mode_name: &str,
    ) -> PyResult<Self> {
        let mut es = EarlyStopping::new(monitor)
            .patience(patience)
            .min_delta(min_delta)
            .restore_best_weights(restore_best_weights);
        if let Some(m) = mode(mode_name)? {
            es = es.mode(m);
        }
        Ok(EarlyStoppingCore(Arc::new(Mutex::new(es))))
    }

    /// The 0-based epoch at which the last run stopped, if it did.
    #[getter]
    fn stopped_epoch(&self) -> Option<usize> {
        lock(&self.0).stopped_epoch
    }
}

/// The library's `ModelCheckpoint`, saving native checkpoints (model and training state).
#[pyclass(module = "stacklstm._native")]
pub struct CheckpointCore(Arc<Mutex<ModelCheckpoint>>);

#[pymethods]
impl CheckpointCore {
    /// `filepath`, or `path_for(epoch)` (1-based) when given: Keras' `{epoch}` templates.
    #[new]
    #[pyo3(signature = (filepath, monitor, save_best_only, path_for=None))]
    fn new(
        filepath: PathBuf,
        monitor: &str,
        save_best_only: bool,
        path_for: Option<Py<PyAny>>,
    ) -> Self {
        let saver: Saver = Box::new(move |t: &Trainer, path: &Path, epochs: usize| {
            let path = match &path_for {
                Some(f) => Python::attach(|py| f.call1(py, (epochs,))?.extract::<PathBuf>(py))
                    .map_err(|e| Error::input(format!("ModelCheckpoint filepath: {e}")))?,
                None => path.to_path_buf(),
            };
            native::save_checkpoint(&path, t.model(), None, Some(&t.training_state(epochs)))
        });
        let cp = ModelCheckpoint::new(filepath, saver)
            .monitor(monitor)
            .save_best_only(save_best_only);
        CheckpointCore(Arc::new(Mutex::new(cp)))
    }

    /// The 0-based epochs after which a file was written.
    #[getter]
    fn saved_epochs(&self) -> Vec<usize> {
        lock(&self.0).saved_epochs.clone()
    }
}

/// The library's `ReduceLrOnPlateau`.
#[pyclass(module = "stacklstm._native")]
pub struct ReduceLrCore(Arc<Mutex<ReduceLrOnPlateau>>);

#[pymethods]
impl ReduceLrCore {
    #[new]
    fn new(
        monitor: &str,
        factor: f32,
        patience: usize,
        min_delta: f64,
        cooldown: usize,
        min_lr: f32,
    ) -> Self {
        ReduceLrCore(Arc::new(Mutex::new(
            ReduceLrOnPlateau::new(monitor)
                .factor(factor)
                .patience(patience)
                .min_delta(min_delta)
                .cooldown(cooldown)
                .min_lr(min_lr),
        )))
    }
}

/// The library callback behind one of the `*Core` objects.
pub fn native_callback(obj: &Bound<'_, PyAny>) -> PyResult<Box<dyn Callback>> {
    if let Ok(c) = obj.cast::<EarlyStoppingCore>() {
        return Ok(Box::new(Shared(c.borrow().0.clone())));
    }
    if let Ok(c) = obj.cast::<CheckpointCore>() {
        return Ok(Box::new(Shared(c.borrow().0.clone())));
    }
    if let Ok(c) = obj.cast::<ReduceLrCore>() {
        return Ok(Box::new(Shared(c.borrow().0.clone())));
    }
    Err(pyo3::exceptions::PyTypeError::new_err(format!(
        "not a callback of the engine: {}",
        obj.repr()?
    )))
}
