//! `fit`: epochs of shuffled mini-batches with validation and callbacks (Keras `fit`).

use ndarray::{ArrayView3, ArrayViewD, AsArray, Axis, Dimension, Ix3, Slice};

use super::epochs::{Epochs, Run};
use super::{mix, Evaluation, Fit, History, Trainer};
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
        let mut src = Samples {
            x: xv.slice_axis(Axis(0), Slice::from(..n_train)),
            y: yv.slice_axis(Axis(0), Slice::from(..n_train)),
            validation,
            order: (0..n_train).collect(),
            batch_size: fit.batch_size,
            shuffle: fit.shuffle.then_some(fit.seed),
            stateful,
        };
        self.run_epochs(
            &mut src,
            Run {
                what: "fit",
                epochs: fit.epochs,
                initial_epoch: fit.initial_epoch,
                initial_batch: fit.initial_batch,
                stop: fit.stop.as_ref(),
                callbacks: std::mem::take(&mut fit.callbacks),
            },
        )
    }
}

/// The epochs of `fit`: mini-batches of samples, shuffled per epoch from `(seed, epoch)`.
struct Samples<'a> {
    /// The training samples.
    x: ArrayView3<'a, f32>,
    y: ArrayViewD<'a, f32>,
    validation: Option<(ArrayView3<'a, f32>, ArrayViewD<'a, f32>)>,
    /// Sample order of the current epoch.
    order: Vec<usize>,
    batch_size: usize,
    /// The shuffle seed, when shuffling.
    shuffle: Option<u64>,
    /// Whether carried state is reset at every epoch start.
    stateful: bool,
}

impl Epochs for Samples<'_> {
    fn batches(&self) -> usize {
        self.order.len().div_ceil(self.batch_size)
    }
    fn samples(&self) -> usize {
        self.order.len()
    }
    fn begin(&mut self, trainer: &mut Trainer, epoch: usize) {
        if let Some(seed) = self.shuffle {
            self.order = (0..self.order.len()).collect();
            Rng::new(mix(seed, epoch as u64)).shuffle(&mut self.order);
        }
        if self.stateful {
            trainer.reset_states();
        }
    }
    fn step(&mut self, trainer: &mut Trainer, epoch: usize, k: usize) -> Result<(f64, usize)> {
        let n = self.order.len();
        let idx = &self.order[k * self.batch_size..((k + 1) * self.batch_size).min(n)];
        let bx = self.x.select(Axis(0), idx);
        let by = self.y.select(Axis(0), idx);
        trainer.train_step(bx.view(), by.view(), epoch, k)
    }
    fn validate(&mut self, trainer: &mut Trainer) -> Result<Option<Evaluation>> {
        match &self.validation {
            Some((vx, vy)) => trainer
                .evaluate(vx.view(), vy.view(), self.batch_size)
                .map(Some),
            None => Ok(None),
        }
    }
}
