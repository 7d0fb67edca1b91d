//! Training and evaluation metrics, accumulated over batches.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::loss::Loss;
use crate::model::Scored;

/// A metric reported by `fit` and `evaluate` (Keras names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Metric {
    /// Mean absolute error.
    Mae,
    /// Root mean squared error.
    Rmse,
    /// Mean squared error (the value of the `mse` loss, as a metric beside another loss).
    Mse,
    /// Fraction of correct predictions: argmax for several classes (sparse or one-hot
    /// targets), a 0.5 threshold (0 for logits) for a single output.
    Accuracy,
    /// `exp(mean cross-entropy)`: only with a cross-entropy loss.
    Perplexity,
}

impl Metric {
    /// Keras name (`mae`, `rmse`, `mse`, `accuracy`, `perplexity`).
    pub fn name(self) -> &'static str {
        match self {
            Metric::Mae => "mae",
            Metric::Rmse => "rmse",
            Metric::Mse => "mse",
            Metric::Accuracy => "accuracy",
            Metric::Perplexity => "perplexity",
        }
    }

    /// Parses a name.
    ///
    /// # Errors
    /// [`Error::UnsupportedFormat`] listing the known metrics.
    pub fn from_name(s: &str) -> Result<Self> {
        Ok(match s {
            "mae" => Metric::Mae,
            "rmse" => Metric::Rmse,
            "mse" => Metric::Mse,
            "accuracy" | "acc" => Metric::Accuracy,
            "perplexity" | "ppl" => Metric::Perplexity,
            other => {
                return Err(Error::UnsupportedFormat {
                    found: format!("metric '{other}'"),
                    supported: "mae, rmse, mse, accuracy, perplexity".into(),
                })
            }
        })
    }

    /// Checks that the metric makes sense with the loss.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] (e.g. perplexity without cross-entropy, mae on class ids).
    pub fn check(self, loss: Loss) -> Result<()> {
        let ce = matches!(
            loss,
            Loss::SparseCategoricalCrossentropy { .. }
                | Loss::CategoricalCrossentropy { .. }
                | Loss::BinaryCrossentropy { .. }
        );
        match self {
            Metric::Perplexity if !ce => Err(Error::config(format!(
                "metric perplexity needs a cross-entropy loss, not {}",
                loss.name()
            ))),
            Metric::Mae | Metric::Rmse | Metric::Mse if loss.sparse_targets() => {
                Err(Error::config(format!(
                    "metric {} compares values, but {} targets are class ids",
                    self.name(),
                    loss.name()
                )))
            }
            _ => Ok(()),
        }
    }
}

/// Running sums for the loss and the metrics over an epoch.
#[derive(Debug, Clone, Default)]
pub(crate) struct Accum {
    loss_sum: f64,
    samples: usize,
    abs_sum: f64,
    sq_sum: f64,
    elems: usize,
    correct: usize,
    rows: usize,
}

impl Accum {
    /// Adds one batch: its mean loss, sample count, and its parts (one, or one per batch
    /// half when the batch was split over threads) of output rows `[rows, width]` and
    /// targets (`[rows, width]`, or `[rows]` of class ids); with a masked output only the
    /// kept rows are scored (Keras turns the mask into 0/1 sample weights).
    pub(crate) fn add(
        &mut self,
        loss: Loss,
        value: f64,
        samples: usize,
        parts: &[Scored<'_>],
        width: usize,
    ) {
        self.loss_sum += value * samples as f64;
        self.samples += samples;
        for p in parts {
            self.add_rows(loss, p, width.max(1));
        }
    }

    /// The metric sums of the (kept) output rows of `p` against their targets.
    fn add_rows(&mut self, loss: Loss, p: &Scored<'_>, width: usize) {
        let argmax = |r: &[f32]| {
            r.iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc },
                )
                .0
        };
        let sparse = loss.sparse_targets();
        let threshold = if loss == (Loss::BinaryCrossentropy { from_logits: true }) {
            0.0
        } else {
            0.5
        };
        for (r, yr) in p.y.chunks_exact(width).enumerate() {
            if p.keep.is_some_and(|k| !k.get(r).copied().unwrap_or(true)) {
                continue;
            }
            let ok = if sparse {
                p.target.get(r).is_some_and(|&c| argmax(yr) as f32 == c)
            } else {
                let tr = p.target.get(r * width..(r + 1) * width).unwrap_or(&[]);
                for (a, b) in yr.iter().zip(tr) {
                    let e = f64::from(a - b);
                    self.abs_sum += e.abs();
                    self.sq_sum += e * e;
                }
                self.elems += tr.len();
                if width == 1 {
                    (yr[0] > threshold) == (tr.first().copied().unwrap_or(0.0) > 0.5)
                } else {
                    argmax(yr) == argmax(tr)
                }
            };
            self.correct += usize::from(ok);
            self.rows += 1;
        }
    }

    /// Mean loss over the samples seen.
    pub(crate) fn loss(&self) -> f64 {
        self.loss_sum / self.samples.max(1) as f64
    }

    /// The value of a metric.
    pub(crate) fn value(&self, m: Metric) -> f64 {
        match m {
            Metric::Mae => self.abs_sum / self.elems.max(1) as f64,
            Metric::Rmse => (self.sq_sum / self.elems.max(1) as f64).sqrt(),
            Metric::Mse => self.sq_sum / self.elems.max(1) as f64,
            Metric::Accuracy => self.correct as f64 / self.rows.max(1) as f64,
            Metric::Perplexity => self.loss().exp(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sce_loss() -> Loss {
        Loss::SparseCategoricalCrossentropy { from_logits: true }
    }

    #[test]
    fn values_by_hand() {
        let mut a = Accum::default();
        let part = |y, target, keep| Scored { y, target, keep };
        a.add(
            Loss::Mse,
            2.5,
            2,
            &[part(&[1.0, 3.0], &[0.0, 1.0], None)],
            1,
        );
        assert!((a.value(Metric::Mae) - 1.5).abs() < 1e-12);
        assert!((a.value(Metric::Rmse) - 2.5f64.sqrt()).abs() < 1e-12);
        assert!((a.value(Metric::Mse) - 2.5).abs() < 1e-12);
        assert_eq!(Metric::from_name("mse").unwrap(), Metric::Mse);
        assert!(Metric::Mse.check(sce_loss()).is_err());
        assert!((a.loss() - 2.5).abs() < 1e-12);
        let mut s = Accum::default();
        let sce = Loss::SparseCategoricalCrossentropy { from_logits: true };
        s.add(
            sce,
            2f64.ln(),
            2,
            &[part(&[0.1, 0.9, 0.8, 0.2], &[1.0, 1.0], None)],
            2,
        );
        assert!((s.value(Metric::Accuracy) - 0.5).abs() < 1e-12);
        // A masked row is not scored: only the first (correct) row counts.
        let mut m = Accum::default();
        m.add(
            sce,
            0.1,
            2,
            &[part(
                &[0.1, 0.9, 0.8, 0.2],
                &[1.0, 1.0],
                Some(&[true, false]),
            )],
            2,
        );
        assert!((m.value(Metric::Accuracy) - 1.0).abs() < 1e-12);
        let mut e = Accum::default();
        e.add(
            Loss::Mse,
            0.1,
            2,
            &[part(&[1.0, 3.0], &[0.0, 1.0], Some(&[false, true]))],
            1,
        );
        assert!((e.value(Metric::Mae) - 2.0).abs() < 1e-12);
        assert!((s.value(Metric::Perplexity) - 2.0).abs() < 1e-9);
        assert!(Metric::Perplexity.check(Loss::Mse).is_err());
        assert!(Metric::Mae.check(sce).is_err());
        assert!(Metric::from_name("f1").is_err());
    }
}
