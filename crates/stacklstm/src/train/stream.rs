//! Truncated backpropagation through time over one long token stream (char-rnn, Zaremba et
//! al. 2014): the stream is cut into `batch_size` contiguous lanes, consecutive batches
//! continue each lane, and stateful LSTMs carry `(h, c)` from one batch to the next, with
//! gradients truncated at batch boundaries. States are reset at the start of every epoch
//! and around validation.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use ndarray::{Array3, ArrayD, IxDyn};

use crate::error::{Error, Result};
use crate::layers::embedding::EmbeddingLayer;
use crate::train::epochs::{Epochs, Run};
use crate::train::metrics::Accum;
use crate::train::{Callback, Evaluation, History, TbpttBatches, Trainer};

/// Options of [`Trainer::fit_stream`].
pub struct StreamFit {
    /// Epochs (default 1).
    pub epochs: usize,
    /// First epoch, to resume (default 0).
    pub initial_epoch: usize,
    /// Batches of `initial_epoch` already done, to resume mid-epoch (default 0). The lanes
    /// restart from a zero state there, so unlike [`crate::train::Fit::initial_batch`] the
    /// result is close to, not bit-identical with, an uninterrupted run.
    pub initial_batch: usize,
    /// Checked before every batch: once `true`, training stops there (see
    /// [`History::interrupted`]).
    pub stop: Option<Arc<AtomicBool>>,
    /// Number of lanes (default 32).
    pub batch_size: usize,
    /// Timesteps per batch, the truncation length (default 50).
    pub seq_len: usize,
    /// Validation stream, evaluated after every epoch.
    pub validation: Option<Vec<u32>>,
    /// Callbacks.
    pub callbacks: Vec<Box<dyn Callback>>,
}

impl Default for StreamFit {
    fn default() -> Self {
        StreamFit {
            epochs: 1,
            initial_epoch: 0,
            initial_batch: 0,
            stop: None,
            batch_size: 32,
            seq_len: 50,
            validation: None,
            callbacks: Vec::new(),
        }
    }
}

impl std::fmt::Debug for StreamFit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamFit")
            .field("epochs", &self.epochs)
            .field("batch_size", &self.batch_size)
            .field("seq_len", &self.seq_len)
            .finish()
    }
}

/// One batch as model input `[B, T, 1]` (ids as f32) and sparse targets `[B, T]`.
fn batch_arrays(x: &ndarray::Array2<u32>, y: &ndarray::Array2<u32>) -> (Array3<f32>, ArrayD<f32>) {
    let (b, t) = x.dim();
    let xa = Array3::from_shape_fn((b, t, 1), |(i, s, _)| x[[i, s]] as f32);
    let ya = ArrayD::from_shape_fn(IxDyn(&[b, t]), |ix| y[[ix[0], ix[1]]] as f32);
    (xa, ya)
}

impl Trainer {
    /// Stream training needs token ids in (an Embedding first) and every recurrent layer
    /// stateful and returning sequences (the state carries on from batch to batch).
    fn check_stream_model(&self) -> Result<()> {
        let model = self.model();
        if !model.layers()[0].as_any().is::<EmbeddingLayer>() {
            return Err(Error::config(
                "stream training needs a model that starts with an Embedding layer",
            ));
        }
        let stateless: Vec<&str> = model
            .spec()
            .layers
            .iter()
            .zip(model.layers())
            .zip(model.layer_shapes())
            .filter(|((spec, _), shape)| {
                spec.config().has_return_sequences() && (!spec.config().stateful() || !shape.seq)
            })
            .map(|((_, l), _)| l.name())
            .collect();
        if !stateless.is_empty() {
            return Err(Error::config(format!(
                "stream training carries state between batches: set stateful(true) and return_sequences(true) on {}",
                stateless.join(", ")
            )));
        }
        Ok(())
    }

    /// Loss of one batch that carries stateful state on (Keras `test_on_batch`), dropout off.
    ///
    /// # Errors
    /// As [`Trainer::evaluate`].
    pub fn test_on_batch<'a, D: ndarray::Dimension>(
        &mut self,
        x: impl ndarray::AsArray<'a, f32, ndarray::Ix3>,
        y: impl ndarray::AsArray<'a, f32, D>,
    ) -> Result<f64> {
        let v = self.eval_loss(x.into(), y.into().into_dyn())?;
        self.carry_last_states();
        Ok(v)
    }

    /// Trains a language model on a token stream with truncated BPTT (see the module docs).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a model that is not an Embedding + stateful LSTM stack,
    /// [`Error::InvalidInput`] for a stream too short for one batch, and the errors of
    /// [`Trainer::train_on_batch`].
    pub fn fit_stream(&mut self, ids: &[u32], mut opts: StreamFit) -> Result<History> {
        self.check_stream_model()?;
        let batches = TbpttBatches::new(ids, opts.batch_size, opts.seq_len)?;
        let n = batches.num_batches();
        if n == 0 {
            return Err(Error::input(format!(
                "a stream of {} tokens is too short for one batch of {} lanes x {} steps",
                ids.len(),
                opts.batch_size,
                opts.seq_len
            )));
        }
        let mut src = Stream {
            batches,
            validation: opts.validation.take(),
            lanes: opts.batch_size,
            seq_len: opts.seq_len,
        };
        self.run_epochs(
            &mut src,
            Run {
                what: "fit_stream",
                epochs: opts.epochs,
                initial_epoch: opts.initial_epoch,
                initial_batch: opts.initial_batch,
                stop: opts.stop.as_ref(),
                callbacks: std::mem::take(&mut opts.callbacks),
            },
        )
    }

    /// Loss and metrics of a language model over a token stream, lanes and truncation as in
    /// training (states reset before and after).
    ///
    /// # Errors
    /// As [`fit_stream`](Self::fit_stream).
    pub fn evaluate_stream(
        &mut self,
        ids: &[u32],
        batch_size: usize,
        seq_len: usize,
    ) -> Result<Evaluation> {
        self.check_stream_model()?;
        let metrics = self.metrics().to_vec();
        // Short validation streams use fewer lanes rather than failing.
        let lanes = batch_size
            .min(ids.len().saturating_sub(1) / (seq_len + 1))
            .max(1);
        let batches = TbpttBatches::new(ids, lanes, seq_len)?;
        if batches.num_batches() == 0 {
            return Err(Error::input(format!(
                "a stream of {} tokens is too short to evaluate with {seq_len} steps",
                ids.len()
            )));
        }
        self.reset_states();
        let mut acc = Accum::default();
        for (bx, by) in batches {
            let (xa, ya) = batch_arrays(&bx, &by);
            let v = self.test_on_batch(&xa, &ya)?;
            self.accumulate(&mut acc, v, bx.dim().0);
        }
        self.reset_states();
        Ok(Evaluation {
            loss: acc.loss(),
            metrics: metrics
                .iter()
                .map(|m| (m.name().to_string(), acc.value(*m)))
                .collect(),
        })
    }
}

/// The epochs of `fit_stream`: consecutive batches of the lanes, state carried from one
/// to the next and reset at every epoch start and around validation.
struct Stream<'a> {
    batches: TbpttBatches<'a>,
    validation: Option<Vec<u32>>,
    lanes: usize,
    seq_len: usize,
}

impl Epochs for Stream<'_> {
    fn batches(&self) -> usize {
        self.batches.num_batches()
    }
    fn samples(&self) -> usize {
        self.batches.num_batches() * self.lanes
    }
    fn begin(&mut self, trainer: &mut Trainer, _: usize) {
        trainer.reset_states();
    }
    fn step(&mut self, trainer: &mut Trainer, epoch: usize, k: usize) -> Result<(f64, usize)> {
        let Some((bx, by)) = self.batches.batch(k) else {
            return Err(Error::input(format!("fit_stream: no batch {k}")));
        };
        let (xa, ya) = batch_arrays(&bx, &by);
        trainer.train_step(xa.view(), ya.view(), epoch, k)
    }
    fn validate(&mut self, trainer: &mut Trainer) -> Result<Option<Evaluation>> {
        let val = match &self.validation {
            Some(v) => Some(trainer.evaluate_stream(v, self.lanes, self.seq_len)?),
            None => None,
        };
        trainer.reset_states();
        Ok(val)
    }
}

#[cfg(test)]
mod tests {
    use crate::train::{Metric, StreamFit};
    use crate::{Adam, Dense, Embedding, Loss, Lstm, Sequential};

    #[test]
    fn learns_a_periodic_stream_and_refuses_stateless_models() {
        let ids: Vec<u32> = (0..2000).map(|i| [0u32, 1, 2, 3, 2, 1][i % 6]).collect();
        let m = Sequential::new()
            .input_features(1)
            .add(Embedding::new(4, 4))
            .add(Lstm::new(16).return_sequences(true).stateful(true))
            .add(Dense::new(4))
            .seed(2)
            .build()
            .unwrap();
        let loss = Loss::SparseCategoricalCrossentropy { from_logits: true };
        let mut m = m
            .compile_with_metrics(loss, Adam::new(0.02), &[Metric::Accuracy])
            .unwrap();
        let h = m
            .fit_stream(
                &ids[..1600],
                StreamFit {
                    epochs: 8,
                    batch_size: 8,
                    seq_len: 10,
                    validation: Some(ids[1600..].to_vec()),
                    ..StreamFit::default()
                },
            )
            .unwrap();
        let last = h.epochs.last().unwrap();
        // After a 2 the next symbol depends on the direction; state tells it: accuracy 1.
        assert!(last.val_metrics["accuracy"] > 0.99, "{last:?}");
        let stateless = Sequential::new()
            .input_features(1)
            .add(Embedding::new(4, 4))
            .add(Lstm::new(4).return_sequences(true))
            .add(Dense::new(4))
            .build()
            .unwrap();
        let mut stateless = stateless.compile(loss, Adam::new(0.01)).unwrap();
        let err = stateless
            .fit_stream(&ids, StreamFit::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("stateful(true)"), "{err}");
    }
}
