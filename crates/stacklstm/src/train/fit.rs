//! `fit`: epochs of shuffled mini-batches with validation and callbacks (Keras `fit`).

use std::time::Instant;

use ndarray::{ArrayView3, ArrayViewD, AsArray, Axis, Dimension, Ix3, Slice};

use super::metrics::Accum;
use super::{
    mix, stop_requested, Callback, Control, EpochLogs, Evaluation, Fit, History, Interruption,
    Metric, TrainInfo, Trainer,
};
use crate::error::{shape_str, Error, Result};
use crate::init::Rng;

impl Trainer {
    /// Trains for `fit.epochs` epochs (Keras `fit`). `x` is `[samples, timesteps, features]`,
    /// `y` the targets (the output's shape, or class ids for sparse losses).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for mismatched sample
    /// counts, an empty training set or bad options; [`Error::Diverged`] (the model keeps its
    /// last finite weights); any error a callback returns.
    pub fn fit<'a, D: Dimension>(
        &mut self,
        x: impl AsArray<'a, f32, Ix3>,
        y: impl AsArray<'a, f32, D>,
        mut fit: Fit,
    ) -> Result<History> {
        let (xv, yv): (ArrayView3<'a, f32>, ArrayViewD<'a, f32>) = (x.into(), y.into().into_dyn());
        let metrics = self.metrics().to_vec();
        let n = xv.dim().0;
        let y = &yv;
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
        let stateful = self.model().is_stateful();
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
        let explicit = fit.validation_data.take();
        let validation: Option<(ArrayView3<'_, f32>, ArrayViewD<'_, f32>)> = match &explicit {
            Some((vx, vy)) => {
                if vy.ndim() == 0 || vy.shape()[0] != vx.dim().0 {
                    return Err(Error::input(
                        "fit: validation x and y have different sample counts",
                    ));
                }
                Some((vx.view(), vy.view()))
            }
            None if n_val > 0 => Some((
                xv.slice_axis(Axis(0), Slice::from(n_train..)),
                yv.slice_axis(Axis(0), Slice::from(n_train..)),
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
                let bx = xv.select(Axis(0), idx);
                let by = yv.select(Axis(0), idx);
                let (value, samples) = self.train_step(bx.view(), by.view(), epoch, bi)?;
                self.accumulate(&mut acc, value, samples);
                for cb in &mut callbacks {
                    cb.on_batch_end(epoch, bi, value)?;
                }
            }
            let val = match &validation {
                Some((vx, vy)) => Some(self.evaluate(vx.view(), vy.view(), fit.batch_size)?),
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
            learning_rate: self.optimizer().current_learning_rate(),
            seconds: start.elapsed().as_secs_f64(),
        };
        let mut stop = false;
        for cb in callbacks.iter_mut() {
            stop |= cb.on_epoch_end(self, &logs)? == Control::Stop;
        }
        Ok((logs, stop))
    }
}
