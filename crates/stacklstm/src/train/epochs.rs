//! The epoch loop `fit` and `fit_stream` share: callbacks, the stop flag, the resume
//! position (first epoch and batch), per-epoch logs and early stops. What differs between
//! them — where an epoch's batches come from, what happens before an epoch, validation — is
//! an [`Epochs`] implementation.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use super::metrics::Accum;
use super::{
    stop_requested, Callback, Control, EpochLogs, Evaluation, History, Interruption, TrainInfo,
    Trainer,
};
use crate::error::{Error, Result};

/// The batches of an epoch and what surrounds them.
pub(crate) trait Epochs {
    /// Batches in one epoch.
    fn batches(&self) -> usize;
    /// Training samples per epoch (for [`TrainInfo`]).
    fn samples(&self) -> usize;
    /// Before epoch `epoch` (0-based): shuffle, reset carried state.
    fn begin(&mut self, trainer: &mut Trainer, epoch: usize);
    /// One optimizer step on batch `k` of epoch `epoch`; returns its loss and samples.
    ///
    /// # Errors
    /// As [`Trainer::train_on_batch`].
    fn step(&mut self, trainer: &mut Trainer, epoch: usize, k: usize) -> Result<(f64, usize)>;
    /// After the epoch's batches: the validation results, if there is validation data.
    ///
    /// # Errors
    /// As [`Trainer::evaluate`].
    fn validate(&mut self, trainer: &mut Trainer) -> Result<Option<Evaluation>>;
}

/// The options of a run that are the same for `fit` and `fit_stream`.
pub(crate) struct Run<'a> {
    /// `fit` or `fit_stream`, for error messages.
    pub what: &'static str,
    /// Epochs to reach (exclusive end).
    pub epochs: usize,
    /// First epoch.
    pub initial_epoch: usize,
    /// Batches of the first epoch already done.
    pub initial_batch: usize,
    /// Checked before every batch.
    pub stop: Option<&'a Arc<AtomicBool>>,
    /// Called in order.
    pub callbacks: Vec<Box<dyn Callback>>,
}

impl Trainer {
    /// Runs epochs `run.initial_epoch..run.epochs` of `src`, from batch `run.initial_batch`
    /// of the first.
    pub(crate) fn run_epochs(&mut self, src: &mut dyn Epochs, mut run: Run<'_>) -> Result<History> {
        let batches = src.batches();
        if run.initial_batch > 0 && run.initial_batch >= batches {
            return Err(Error::input(format!(
                "{}: initial_batch {} but an epoch has only {batches} batches",
                run.what, run.initial_batch
            )));
        }
        let info = TrainInfo {
            epochs: run.epochs,
            initial_epoch: run.initial_epoch,
            batches,
            samples: src.samples(),
        };
        for cb in &mut run.callbacks {
            cb.on_train_begin(&info)?;
        }
        let metrics = self.metrics().to_vec();
        let mut history = History::default();
        'epochs: for epoch in run.initial_epoch..run.epochs {
            let start = Instant::now();
            src.begin(self, epoch);
            for cb in &mut run.callbacks {
                cb.on_epoch_begin(self, epoch)?;
            }
            let mut acc = Accum::default();
            let first = if epoch == run.initial_epoch {
                run.initial_batch
            } else {
                0
            };
            for k in first..batches {
                if stop_requested(run.stop) {
                    history.interrupted = Some(Interruption {
                        epoch,
                        batches_done: k,
                    });
                    break 'epochs;
                }
                let (value, samples) = src.step(self, epoch, k)?;
                self.accumulate(&mut acc, value, samples);
                for cb in &mut run.callbacks {
                    cb.on_batch_end(epoch, k, value)?;
                }
            }
            let val = src.validate(self)?;
            let logs = EpochLogs {
                epoch,
                loss: acc.loss(),
                val_loss: val.as_ref().map(|e| e.loss),
                metrics: metrics
                    .iter()
                    .map(|m| (m.name().to_string(), acc.value(*m)))
                    .collect(),
                val_metrics: val.map(|e| e.metrics).unwrap_or_default(),
                learning_rate: self.optimizer().current_learning_rate(),
                seconds: start.elapsed().as_secs_f64(),
            };
            let mut stop = false;
            for cb in &mut run.callbacks {
                stop |= cb.on_epoch_end(self, &logs)? == Control::Stop;
            }
            history.epochs.push(logs);
            if stop {
                break;
            }
        }
        for cb in &mut run.callbacks {
            cb.on_train_end(self)?;
        }
        Ok(history)
    }
}
