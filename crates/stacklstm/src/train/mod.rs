//! Training: the [`Trainer`] (Keras' compiled model: loss, optimizer, metrics) with
//! `train_on_batch`, `fit`, `fit_stream`, `evaluate`, checkpoints and callbacks, with Keras
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
//! - A non-finite loss or gradient stops training with [`Error::Diverged`](crate::Error::Diverged) naming the epoch
//!   and step, *before* the update, so the model keeps its last finite weights.
//! - A stop flag ([`Fit::stop_flag`], [`StreamFit::stop`]), an `Arc<AtomicBool>` that another
//!   thread or a signal handler may set, is read before every batch: once set, training ends
//!   at that batch boundary and returns normally, with [`History::interrupted`] saying where.
//!   [`Trainer::training_state_at`] saves that position and [`Fit::initial_batch`] resumes from
//!   it; for `fit` the resumed run ends with the same weights as an uninterrupted one.

pub mod callbacks;
pub mod checkpoint;
mod epochs;
mod fit;
pub mod metrics;
pub mod stream;
mod tbptt;
mod trainer;

pub use stream::StreamFit;
pub use tbptt::TbpttBatches;
pub use trainer::Trainer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ndarray::{Array3, ArrayD};

pub use callbacks::{
    Callback, Control, EarlyStopping, EpochLogger, EpochLogs, Mode, ModelCheckpoint,
    ReduceLrOnPlateau, Saver, TrainInfo,
};
pub use metrics::Metric;

/// Options of [`Trainer::fit`], Keras names and defaults.
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

pub(crate) fn mix(a: u64, b: u64) -> u64 {
    // Distinct streams per (seed, counter): SplitMix64 inside Rng spreads the bits.
    a.rotate_left(29) ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}
