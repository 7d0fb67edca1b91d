//! Checkpoints: the training state that, with the weights, lets training resume exactly.
//!
//! Saved with [`crate::io::native::save_checkpoint`]: the JSON part holds the compiled loss,
//! metrics, optimizer config, its update count and the next epoch; the tensors are the
//! optimizer's slots. Dropout masks and shuffles are pure functions of seeds and counters
//! (see [`crate::train`]), so nothing else is needed for a bit-exact resume.

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::io::native::TrainingState;
use crate::loss::Loss;
use crate::model::Model;
use crate::optim::{Optimizer, OptimizerConfig};
use crate::train::{Metric, Trainer};

impl Trainer {
    /// The training state to save after `epochs_done` epochs.
    pub fn training_state(&self, epochs_done: usize) -> TrainingState {
        self.training_state_at(epochs_done, 0)
    }

    /// The training state of a run stopped inside epoch `epoch` (0-based) after
    /// `batches_done` of its batches (see [`crate::train::History::interrupted`]);
    /// `training_state_at(e, 0)` equals `training_state(e)`.
    pub fn training_state_at(&self, epoch: usize, batches_done: usize) -> TrainingState {
        let lens = self.trainable_lengths();
        let tensors = self
            .optimizer()
            .state()
            .into_iter()
            .map(|(name, values)| {
                let n = values.len();
                (format!("optimizer/{name}"), vec![n], values)
            })
            .collect();
        TrainingState {
            json: json!({
                "loss": self.loss(),
                "metrics": self.metrics(),
                "optimizer": self.optimizer().config,
                "iterations": self.optimizer().iterations,
                "epoch": epoch,
                "batch": batches_done,
                "weight_lengths": lens,
            }),
            tensors,
        }
    }

    /// The lengths of the weights the optimizer updates, in order.
    fn trainable_lengths(&self) -> Vec<usize> {
        let model = self.model();
        model
            .layers()
            .iter()
            .enumerate()
            .filter(|(i, _)| model.is_trainable(*i))
            .flat_map(|(_, l)| {
                l.weights()
                    .into_iter()
                    .map(|w| w.values.len())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// A trainer for `model` from a saved training state: the loss, metrics and
    /// optimizer (with its slots) as they were. Returns it with the number of epochs
    /// already done (the `initial_epoch` to resume with).
    ///
    /// # Errors
    /// [`Error::Format`] when the state is incomplete or does not fit the model.
    pub fn restore(model: Model, state: &TrainingState) -> Result<(Trainer, usize)> {
        Trainer::restore_at(model, state).map(|(t, epoch, _)| (t, epoch))
    }

    /// [`restore`](Self::restore) that also returns the batches of that epoch already
    /// done (0 for a checkpoint written at the end of an epoch): resume with
    /// `Fit::new().initial_epoch(epoch).initial_batch(batch)`.
    ///
    /// # Errors
    /// As [`restore`](Self::restore).
    pub fn restore_at(model: Model, state: &TrainingState) -> Result<(Trainer, usize, usize)> {
        let bad = |m: &str| Error::format("checkpoint", m.to_string());
        let j: &Value = &state.json;
        let loss: Loss =
            serde_json::from_value(j["loss"].clone()).map_err(|e| bad(&format!("loss: {e}")))?;
        let metrics: Vec<Metric> = serde_json::from_value(j["metrics"].clone())
            .map_err(|e| bad(&format!("metrics: {e}")))?;
        let config: OptimizerConfig = serde_json::from_value(j["optimizer"].clone())
            .map_err(|e| bad(&format!("optimizer: {e}")))?;
        let iterations = j["iterations"]
            .as_u64()
            .ok_or_else(|| bad("iterations missing"))?;
        let epoch = j["epoch"].as_u64().ok_or_else(|| bad("epoch missing"))? as usize;
        // Absent in checkpoints written at epoch ends by older versions.
        let batch = j.get("batch").and_then(Value::as_u64).unwrap_or(0) as usize;
        let mut trainer = Trainer::with_metrics(model, loss, config, &metrics)?;
        let lens = trainer.trainable_lengths();
        let slots: Vec<(String, Vec<f32>)> = state
            .tensors
            .iter()
            .filter_map(|(n, _, v)| {
                n.strip_prefix("optimizer/")
                    .map(|s| (s.to_string(), v.clone()))
            })
            .collect();
        let mut opt = Optimizer::new(config)?;
        if iterations > 0 {
            opt.load_state(iterations, &lens, &slots)
                .map_err(|e| bad(&e.to_string()))?;
        }
        trainer.set_optimizer(opt);
        Ok((trainer, epoch, batch))
    }
}

#[cfg(test)]
mod tests {
    use crate::train::{Fit, Trainer};
    use crate::{Adam, Dense, Loss, Lstm, Sequential};
    use ndarray::{Array3, ArrayD, IxDyn};

    #[test]
    fn two_plus_two_epochs_through_a_checkpoint_file_equal_four() {
        let x = Array3::from_shape_fn((24, 10, 1), |(i, t, _)| ((i + t) as f32 * 0.3).sin());
        let y = ArrayD::from_shape_fn(IxDyn(&[24, 1]), |ix| ((ix[0] + 10) as f32 * 0.3).sin());
        let build = || {
            Sequential::new()
                .input_shape(10, 1)
                .add(Lstm::new(5).return_sequences(true).dropout(0.1))
                .add(Lstm::new(4))
                .add(Dense::new(1))
                .seed(3)
                .build()
                .unwrap()
                .compile(Loss::Mse, Adam::new(0.01))
                .unwrap()
        };
        let fit = |e0: usize, e1: usize| {
            Fit::new()
                .epochs(e1)
                .initial_epoch(e0)
                .batch_size(8)
                .seed(9)
        };
        let mut straight = build();
        straight.fit(&x, &y, fit(0, 4)).unwrap();
        let mut first = build();
        first.fit(&x, &y, fit(0, 2)).unwrap();
        let dir = std::env::temp_dir().join(format!("stacklstm-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ckpt.safetensors");
        let state = first.training_state(2);
        crate::io::native::save_checkpoint(&path, &first, None, Some(&state)).unwrap();
        let file = crate::io::native::load(&path).unwrap();
        let (mut resumed, epoch) =
            Trainer::restore(file.model, file.training.as_ref().unwrap()).unwrap();
        assert_eq!(epoch, 2);
        resumed.fit(&x, &y, fit(epoch, 4)).unwrap();
        assert_eq!(resumed.get_weights(), straight.get_weights());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_run_stopped_mid_epoch_by_its_flag_resumes_to_the_same_weights() {
        use crate::train::{Callback, Interruption};
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        // Sets the flag after batch 1 of epoch 1, as a signal handler would.
        struct Trip(Arc<AtomicBool>);
        impl Callback for Trip {
            fn on_batch_end(&mut self, epoch: usize, batch: usize, _: f64) -> crate::Result<()> {
                if (epoch, batch) == (1, 1) {
                    self.0.store(true, Ordering::Relaxed);
                }
                Ok(())
            }
        }
        let x = Array3::from_shape_fn((24, 6, 1), |(i, t, _)| ((i + t) as f32 * 0.3).sin());
        let y = ArrayD::from_shape_fn(IxDyn(&[24, 1]), |ix| ((ix[0] + 6) as f32 * 0.3).sin());
        let build = || {
            Sequential::new()
                .input_shape(6, 1)
                .add(Lstm::new(4).dropout(0.1))
                .add(Dense::new(1))
                .seed(5)
                .build()
                .unwrap()
                .compile(Loss::Mse, Adam::new(0.01))
                .unwrap()
        };
        let fit = || Fit::new().epochs(3).batch_size(8).seed(1);
        let mut straight = build();
        straight.fit(&x, &y, fit()).unwrap();

        let flag = Arc::new(AtomicBool::new(false));
        let mut first = build();
        let h = first
            .fit(&x, &y, fit().stop_flag(flag.clone()).callback(Trip(flag)))
            .unwrap();
        let at = h.interrupted.expect("stopped by the flag");
        assert_eq!(
            at,
            Interruption {
                epoch: 1,
                batches_done: 2
            }
        );
        assert_eq!(h.epochs.len(), 1);
        let bytes = crate::io::native::to_bytes(
            &first,
            None,
            Some(&first.training_state_at(at.epoch, at.batches_done)),
        )
        .unwrap();
        let file = crate::io::native::from_bytes(&bytes, "ckpt").unwrap();
        let (mut resumed, epoch, batch) =
            Trainer::restore_at(file.model, file.training.as_ref().unwrap()).unwrap();
        assert_eq!((epoch, batch), (1, 2));
        let h = resumed
            .fit(&x, &y, fit().initial_epoch(epoch).initial_batch(batch))
            .unwrap();
        assert_eq!(h.interrupted, None);
        assert_eq!(resumed.get_weights(), straight.get_weights());
    }
}
