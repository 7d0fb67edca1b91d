//! Callbacks: hooks into `fit` for early stopping, checkpoints, learning-rate changes, logs
//! and progress display.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::ArrayD;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::train::Trainer;

/// What `fit` knows when training starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrainInfo {
    /// Epochs `fit` will run (at most).
    pub epochs: usize,
    /// First epoch (0-based; non-zero when resuming).
    pub initial_epoch: usize,
    /// Batches per epoch.
    pub batches: usize,
    /// Training samples.
    pub samples: usize,
}

/// The logs of one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLogs {
    /// 0-based epoch.
    pub epoch: usize,
    /// Mean training loss (weighted by batch size).
    pub loss: f64,
    /// Validation loss, when there is validation data.
    pub val_loss: Option<f64>,
    /// Training metrics by name.
    pub metrics: BTreeMap<String, f64>,
    /// Validation metrics by name.
    pub val_metrics: BTreeMap<String, f64>,
    /// Learning rate at the end of the epoch.
    pub learning_rate: f32,
    /// Wall time of the epoch in seconds.
    pub seconds: f64,
}

impl EpochLogs {
    /// A logged quantity by Keras name: `loss`, `val_loss`, `mae`, `val_mae`, ...
    pub fn get(&self, name: &str) -> Option<f64> {
        match name {
            "loss" => Some(self.loss),
            "val_loss" => self.val_loss,
            n => match n.strip_prefix("val_") {
                Some(m) => self.val_metrics.get(m).copied(),
                None => self.metrics.get(n).copied(),
            },
        }
    }
}

/// What a callback asks `fit` to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Go on.
    Continue,
    /// Stop after this epoch.
    Stop,
}

/// A hook into training. Every method has a no-op default. This is also the progress
/// observer the command line draws its bars with: `on_batch_end` is called after every
/// optimizer step. Callbacks are `Send`, so a [`Fit`](crate::train::Fit) can be built on one
/// thread and run on another.
pub trait Callback: Send {
    /// Before the first epoch.
    ///
    /// # Errors
    /// An error aborts training.
    fn on_train_begin(&mut self, _info: &TrainInfo) -> Result<()> {
        Ok(())
    }
    /// Before each epoch's first batch (after the epoch's shuffle), with the 0-based epoch:
    /// Keras' `on_epoch_begin`, e.g. to set the learning rate of the epoch.
    ///
    /// # Errors
    /// An error aborts training.
    fn on_epoch_begin(&mut self, _trainer: &mut Trainer, _epoch: usize) -> Result<()> {
        Ok(())
    }
    /// After each batch, with the batch's loss.
    ///
    /// # Errors
    /// An error aborts training.
    fn on_batch_end(&mut self, _epoch: usize, _batch: usize, _loss: f64) -> Result<()> {
        Ok(())
    }
    /// After each epoch (after validation).
    ///
    /// # Errors
    /// An error aborts training.
    fn on_epoch_end(&mut self, _trainer: &mut Trainer, _logs: &EpochLogs) -> Result<Control> {
        Ok(Control::Continue)
    }
    /// After the last epoch.
    ///
    /// # Errors
    /// An error is returned from `fit`.
    fn on_train_end(&mut self, _trainer: &mut Trainer) -> Result<()> {
        Ok(())
    }
}

/// Whether smaller or larger values of the monitored quantity are better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// Smaller is better (losses, errors).
    Min,
    /// Larger is better (accuracy).
    Max,
}

fn auto_mode(monitor: &str) -> Mode {
    if monitor.contains("acc") {
        Mode::Max
    } else {
        Mode::Min
    }
}

/// Tracks the best value of a monitored quantity.
#[derive(Debug, Clone)]
struct Tracker {
    monitor: String,
    mode: Mode,
    min_delta: f64,
    best: Option<f64>,
}

impl Tracker {
    fn new(monitor: &str, min_delta: f64) -> Self {
        Tracker {
            monitor: monitor.to_string(),
            mode: auto_mode(monitor),
            min_delta: min_delta.abs(),
            best: None,
        }
    }
    /// Reads the monitored value; `true` if it improved on the best by more than `min_delta`.
    fn update(&mut self, logs: &EpochLogs) -> Result<bool> {
        let v = logs.get(&self.monitor).ok_or_else(|| {
            Error::config(format!(
                "callback monitors '{}', which training does not log (use loss, val_loss or a compiled metric)",
                self.monitor
            ))
        })?;
        let better = match (self.best, self.mode) {
            (None, _) => true,
            (Some(b), Mode::Min) => v < b - self.min_delta,
            (Some(b), Mode::Max) => v > b + self.min_delta,
        };
        if better {
            self.best = Some(v);
        }
        Ok(better)
    }
}

/// Keras `EarlyStopping`: stop when the monitored quantity has not improved by more than
/// `min_delta` for `patience` epochs; optionally restore the best epoch's weights.
#[derive(Debug, Clone)]
pub struct EarlyStopping {
    tracker: Tracker,
    patience: usize,
    restore_best_weights: bool,
    wait: usize,
    best_weights: Option<Vec<ArrayD<f32>>>,
    /// The epoch at which training was stopped, if it was.
    pub stopped_epoch: Option<usize>,
}

impl EarlyStopping {
    /// Monitors `monitor` (e.g. `"val_loss"`) with patience 0, min_delta 0.
    pub fn new(monitor: &str) -> Self {
        EarlyStopping {
            tracker: Tracker::new(monitor, 0.0),
            patience: 0,
            restore_best_weights: false,
            wait: 0,
            best_weights: None,
            stopped_epoch: None,
        }
    }
    /// Epochs without improvement before stopping.
    #[must_use]
    pub fn patience(mut self, n: usize) -> Self {
        self.patience = n;
        self
    }
    /// Minimum change that counts as an improvement.
    #[must_use]
    pub fn min_delta(mut self, d: f64) -> Self {
        self.tracker.min_delta = d.abs();
        self
    }
    /// Restore the weights of the best epoch when stopping.
    #[must_use]
    pub fn restore_best_weights(mut self, on: bool) -> Self {
        self.restore_best_weights = on;
        self
    }
    /// Overrides whether smaller or larger is better.
    #[must_use]
    pub fn mode(mut self, mode: Mode) -> Self {
        self.tracker.mode = mode;
        self
    }
}

impl Callback for EarlyStopping {
    fn on_train_begin(&mut self, _info: &TrainInfo) -> Result<()> {
        self.wait = 0;
        self.tracker.best = None;
        self.best_weights = None;
        self.stopped_epoch = None;
        Ok(())
    }
    fn on_epoch_end(&mut self, trainer: &mut Trainer, logs: &EpochLogs) -> Result<Control> {
        if self.tracker.update(logs)? {
            self.wait = 0;
            if self.restore_best_weights {
                self.best_weights = Some(trainer.get_weights());
            }
            return Ok(Control::Continue);
        }
        // Keras 3 counts this epoch in `wait` and stops once `wait >= patience`: `patience`
        // epochs without improvement, the last of them included.
        self.wait += 1;
        if self.wait >= self.patience {
            self.stopped_epoch = Some(logs.epoch);
            if let Some(w) = &self.best_weights {
                trainer.set_weights(w)?;
            }
            return Ok(Control::Stop);
        }
        Ok(Control::Continue)
    }
}

/// How [`ModelCheckpoint`] writes a model: `(trainer, path, epochs done)` (the trainer
/// gives the model and, for a checkpoint, its training state).
pub type Saver = Box<dyn FnMut(&Trainer, &Path, usize) -> Result<()> + Send>;

/// Keras `ModelCheckpoint`: saves the model after an epoch, every epoch or only when the
/// monitored quantity improved (`save_best_only`).
pub struct ModelCheckpoint {
    path: PathBuf,
    tracker: Tracker,
    save_best_only: bool,
    every: usize,
    saver: Saver,
    /// Epochs at which a file was written.
    pub saved_epochs: Vec<usize>,
}

impl std::fmt::Debug for ModelCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelCheckpoint")
            .field("path", &self.path)
            .field("save_best_only", &self.save_best_only)
            .finish()
    }
}

impl ModelCheckpoint {
    /// Saves to `path` with `saver` (e.g. the native format's save), monitoring `val_loss`.
    pub fn new(path: impl Into<PathBuf>, saver: Saver) -> Self {
        ModelCheckpoint {
            path: path.into(),
            tracker: Tracker::new("val_loss", 0.0),
            save_best_only: false,
            every: 1,
            saver,
            saved_epochs: Vec::new(),
        }
    }
    /// Saves the model in the native format (weights and architecture, no training state)
    /// with [`crate::io::native::save`].
    pub fn native(path: impl Into<PathBuf>) -> Self {
        ModelCheckpoint::new(
            path,
            Box::new(|t: &Trainer, p: &Path, _| crate::io::native::save(p, t.model(), None)),
        )
    }
    /// Considers saving only every `n` epochs (default 1).
    #[must_use]
    pub fn every(mut self, n: usize) -> Self {
        self.every = n.max(1);
        self
    }
    /// The quantity that decides "best".
    #[must_use]
    pub fn monitor(mut self, monitor: &str) -> Self {
        self.tracker = Tracker::new(monitor, self.tracker.min_delta);
        self
    }
    /// Save only when the monitored quantity improved.
    #[must_use]
    pub fn save_best_only(mut self, on: bool) -> Self {
        self.save_best_only = on;
        self
    }
}

impl Callback for ModelCheckpoint {
    fn on_epoch_end(&mut self, trainer: &mut Trainer, logs: &EpochLogs) -> Result<Control> {
        let improved = self.tracker.update(logs)?;
        let due = (logs.epoch + 1).is_multiple_of(self.every);
        if due && (!self.save_best_only || improved) {
            (self.saver)(trainer, &self.path, logs.epoch + 1)?;
            self.saved_epochs.push(logs.epoch);
        }
        Ok(Control::Continue)
    }
}

/// Keras `ReduceLROnPlateau`: multiply the learning rate by `factor` after `patience`
/// epochs without improvement, then wait `cooldown` epochs; never below `min_lr`.
#[derive(Debug, Clone)]
pub struct ReduceLrOnPlateau {
    tracker: Tracker,
    factor: f32,
    patience: usize,
    cooldown: usize,
    min_lr: f32,
    wait: usize,
    cooldown_left: usize,
}

impl ReduceLrOnPlateau {
    /// Keras defaults: factor 0.1, patience 10, min_delta 1e-4, cooldown 0, min_lr 0.
    pub fn new(monitor: &str) -> Self {
        ReduceLrOnPlateau {
            tracker: Tracker::new(monitor, 1e-4),
            factor: 0.1,
            patience: 10,
            cooldown: 0,
            min_lr: 0.0,
            wait: 0,
            cooldown_left: 0,
        }
    }
    /// Multiplier in `(0, 1)`.
    #[must_use]
    pub fn factor(mut self, f: f32) -> Self {
        self.factor = f;
        self
    }
    /// Epochs without improvement before reducing.
    #[must_use]
    pub fn patience(mut self, n: usize) -> Self {
        self.patience = n;
        self
    }
    /// Epochs to wait after a reduction.
    #[must_use]
    pub fn cooldown(mut self, n: usize) -> Self {
        self.cooldown = n;
        self
    }
    /// Lower bound of the learning rate.
    #[must_use]
    pub fn min_lr(mut self, lr: f32) -> Self {
        self.min_lr = lr;
        self
    }
    /// Minimum change that counts as an improvement.
    #[must_use]
    pub fn min_delta(mut self, d: f64) -> Self {
        self.tracker.min_delta = d.abs();
        self
    }
}

impl Callback for ReduceLrOnPlateau {
    fn on_train_begin(&mut self, _info: &TrainInfo) -> Result<()> {
        if !(self.factor > 0.0 && self.factor < 1.0) {
            return Err(Error::config(format!(
                "ReduceLROnPlateau: factor must be in (0, 1), got {}",
                self.factor
            )));
        }
        Ok(())
    }
    fn on_epoch_end(&mut self, trainer: &mut Trainer, logs: &EpochLogs) -> Result<Control> {
        let improved = self.tracker.update(logs)?;
        if self.cooldown_left > 0 {
            self.cooldown_left -= 1;
            self.wait = 0;
        }
        if improved {
            self.wait = 0;
        } else if self.cooldown_left == 0 {
            self.wait += 1;
            if self.wait >= self.patience {
                let opt = trainer.optimizer_mut();
                let lr = opt.config.learning_rate;
                if lr > self.min_lr {
                    opt.set_learning_rate((lr * self.factor).max(self.min_lr));
                }
                self.cooldown_left = self.cooldown;
                self.wait = 0;
            }
        }
        Ok(Control::Continue)
    }
}

/// Writes one row per epoch to a CSV file (`.csv`) or one JSON object per line (any other
/// extension). The file is rewritten atomically after every epoch, so it is never
/// half-written.
#[derive(Debug, Clone)]
pub struct EpochLogger {
    path: PathBuf,
    rows: Vec<EpochLogs>,
}

impl EpochLogger {
    /// Logs to `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        EpochLogger {
            path: path.into(),
            rows: Vec::new(),
        }
    }

    fn render(&self) -> Result<String> {
        let csv = self
            .path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        let mut out = String::new();
        if csv {
            let mut cols = vec!["epoch".to_string(), "loss".to_string()];
            if let Some(first) = self.rows.first() {
                cols.extend(first.metrics.keys().cloned());
                if first.val_loss.is_some() {
                    cols.push("val_loss".into());
                }
                cols.extend(first.val_metrics.keys().map(|k| format!("val_{k}")));
            }
            cols.push("learning_rate".into());
            out.push_str(&cols.join(","));
            out.push('\n');
            for r in &self.rows {
                let vals: Vec<String> = cols
                    .iter()
                    .map(|c| match c.as_str() {
                        "epoch" => r.epoch.to_string(),
                        "learning_rate" => r.learning_rate.to_string(),
                        other => r.get(other).map_or_else(String::new, |v| v.to_string()),
                    })
                    .collect();
                out.push_str(&vals.join(","));
                out.push('\n');
            }
        } else {
            for r in &self.rows {
                out.push_str(&serde_json::to_string(r).map_err(|e| Error::input(e.to_string()))?);
                out.push('\n');
            }
        }
        Ok(out)
    }
}

impl Callback for EpochLogger {
    fn on_train_begin(&mut self, _info: &TrainInfo) -> Result<()> {
        self.rows.clear();
        Ok(())
    }
    fn on_epoch_end(&mut self, _: &mut Trainer, logs: &EpochLogs) -> Result<Control> {
        self.rows.push(logs.clone());
        let text = self.render()?;
        crate::io::write_atomic(&self.path, text.as_bytes())?;
        Ok(Control::Continue)
    }
}
