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
use crate::train::Metric;

impl Model {
    /// The training state to save after `epochs_done` epochs.
    ///
    /// # Errors
    /// [`Error::State`] before `compile`.
    pub fn training_state(&self, epochs_done: usize) -> Result<TrainingState> {
        let c = self
            .compiled()
            .ok_or_else(|| Error::State("a checkpoint needs a compiled model".into()))?;
        let lens: Vec<usize> = self.get_weights().iter().map(|w| w.len()).collect();
        let tensors = c
            .optimizer
            .state()
            .into_iter()
            .map(|(name, values)| {
                let n = values.len();
                (format!("optimizer/{name}"), vec![n], values)
            })
            .collect();
        Ok(TrainingState {
            json: json!({
                "loss": c.loss,
                "metrics": c.metrics,
                "optimizer": c.optimizer.config,
                "iterations": c.optimizer.iterations,
                "epoch": epochs_done,
                "weight_lengths": lens,
            }),
            tensors,
        })
    }

    /// Compiles the model from a saved training state and restores the optimizer. Returns
    /// the number of epochs already done (the `initial_epoch` to resume with).
    ///
    /// # Errors
    /// [`Error::Format`] when the state is incomplete or does not fit the model.
    pub fn restore_training(&mut self, state: &TrainingState) -> Result<usize> {
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
        self.compile_with_metrics(loss, config, &metrics)?;
        let lens: Vec<usize> = self.get_weights().iter().map(|w| w.len()).collect();
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
        if let Some(o) = self.optimizer_mut() {
            *o = opt;
        }
        Ok(epoch)
    }
}

#[cfg(test)]
mod tests {
    use crate::train::Fit;
    use crate::{Adam, Dense, Loss, Lstm, Sequential};
    use ndarray::{Array3, ArrayD, IxDyn};

    #[test]
    fn two_plus_two_epochs_through_a_checkpoint_file_equal_four() {
        let x = Array3::from_shape_fn((24, 10, 1), |(i, t, _)| ((i + t) as f32 * 0.3).sin());
        let y = ArrayD::from_shape_fn(IxDyn(&[24, 1]), |ix| ((ix[0] + 10) as f32 * 0.3).sin());
        let build = || {
            let mut m = Sequential::new()
                .input_shape(10, 1)
                .add(Lstm::new(5).return_sequences(true).dropout(0.1))
                .add(Lstm::new(4))
                .add(Dense::new(1))
                .seed(3)
                .build()
                .unwrap();
            m.compile(Loss::Mse, Adam::new(0.01)).unwrap();
            m
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
        let state = first.training_state(2).unwrap();
        crate::io::native::save_checkpoint(&path, &first, None, Some(&state)).unwrap();
        let file = crate::io::native::load(&path).unwrap();
        let mut resumed = file.model;
        let epoch = resumed
            .restore_training(file.training.as_ref().unwrap())
            .unwrap();
        assert_eq!(epoch, 2);
        resumed.fit(&x, &y, fit(epoch, 4)).unwrap();
        assert_eq!(resumed.get_weights(), straight.get_weights());
        std::fs::remove_dir_all(&dir).ok();
    }
}
