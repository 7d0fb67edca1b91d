//! Loss functions with Keras' default reduction (the mean).
//!
//! Each loss takes the model output and the target as flat buffers in the same element
//! order, and returns the value and the gradient with respect to the output.
//!
//! | loss | value | d value / d y |
//! |---|---|---|
//! | mse | `mean((y - t)^2)` over all elements | `2 (y - t) / n` |
//! | mae | `mean(abs(y - t))` | `sign(y - t) / n` |
//! | huber | `mean(½e² if abs(e) <= δ else δ(abs(e) - ½δ))` | `clip(e, -δ, δ) / n` |
//! | BCE, probs | `mean(-(t log p + (1-t) log(1-p)))`, `p = clip(y)` | `(p - t) / (p (1 - p) n)` where not clipped |
//! | BCE, logits | `mean(max(z,0) - z t + log(1 + e^-abs(z)))` | `(σ(z) - t) / n` |
//! | sparse CE, logits | `mean_rows(-log softmax(y)[t])` | `(softmax(y) - onehot(t)) / rows` |
//! | sparse CE, probs | `mean_rows(-log clip(y[t]))` | `-1 / (rows · y[t])` at `t` |
//! | CE, logits | `mean_rows(-Σ t log softmax(y))` | `(softmax(y) Σt - t) / rows` |
//! | CE, probs | `mean_rows(-Σ t log clip(y))` | `-t / (rows · y)` where not clipped |
//!
//! `clip` is Keras' `[1e-7, 1 - 1e-7]`; log-softmax is computed as `z - max - log Σ e^(z - max)`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::kernels::softmax;

/// Keras' epsilon for clipping probabilities.
pub const EPSILON: f32 = 1e-7;

/// A training loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Loss {
    /// Mean squared error over all elements.
    Mse,
    /// Mean absolute error over all elements.
    Mae,
    /// Huber loss over all elements: `½e²` for `|e| <= delta`, else `delta (|e| - ½delta)`.
    Huber {
        /// Threshold between the quadratic and linear parts (Keras default 1.0).
        delta: f32,
    },
    /// Binary cross-entropy over all elements (targets in `[0, 1]`).
    BinaryCrossentropy {
        /// The output is logits (no sigmoid applied yet).
        from_logits: bool,
    },
    /// Cross-entropy against integer class ids (`[B]` or `[B, T]`).
    SparseCategoricalCrossentropy {
        /// The output is logits (no softmax applied yet).
        from_logits: bool,
    },
    /// Cross-entropy against one-hot (or soft) targets of the output's shape.
    CategoricalCrossentropy {
        /// The output is logits (no softmax applied yet).
        from_logits: bool,
    },
}

impl Loss {
    /// Whether the target holds one class id per output row instead of one value per output.
    pub fn sparse_targets(&self) -> bool {
        matches!(self, Loss::SparseCategoricalCrossentropy { .. })
    }

    /// The loss's Keras name.
    pub fn name(&self) -> &'static str {
        match self {
            Loss::Mse => "mse",
            Loss::Mae => "mae",
            Loss::Huber { .. } => "huber",
            Loss::BinaryCrossentropy { .. } => "binary_crossentropy",
            Loss::SparseCategoricalCrossentropy { .. } => "sparse_categorical_crossentropy",
            Loss::CategoricalCrossentropy { .. } => "categorical_crossentropy",
        }
    }

    /// Value and gradient. `y` is the output `[rows, width]` flattened, `target` is
    /// `[rows, width]` (or `[rows]` of class ids for sparse losses), in the same row order.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a non-finite target or a class id out of range.
    pub fn compute(
        &self,
        y: &[f32],
        target: &[f32],
        width: usize,
        dy: &mut Vec<f32>,
    ) -> Result<f64> {
        let rows = y.len() / width.max(1);
        let sum = self.compute_sum(y, target, width, dy, rows, None)?;
        Ok(sum / self.denominator(rows, width))
    }

    /// What the loss of `rows` output rows of `width` is the mean over: the rows for the
    /// cross-entropies, every element otherwise.
    pub(crate) fn denominator(&self, rows: usize, width: usize) -> f64 {
        match self {
            Loss::SparseCategoricalCrossentropy { .. } | Loss::CategoricalCrossentropy { .. } => {
                rows as f64
            }
            _ => (rows * width) as f64,
        }
    }

    /// The un-normalised part of [`compute`](Self::compute) for a part of a batch of
    /// `total_rows` rows: returns the sum of the per-element (or per-row) losses of `y`, and
    /// writes their gradient scaled by the whole batch's normaliser, so that the parts of
    /// a batch split over threads give exactly the gradient of the whole.
    ///
    /// With `keep` (`[rows]`, a masked output), only the kept rows count: the others add
    /// nothing to the sum and get a zero gradient, and `total_rows` counts kept rows.
    pub(crate) fn compute_sum(
        &self,
        y: &[f32],
        target: &[f32],
        width: usize,
        dy: &mut Vec<f32>,
        total_rows: usize,
        keep: Option<&[bool]>,
    ) -> Result<f64> {
        let Some(keep) = keep else {
            return self.sum_rows(y, target, width, dy, total_rows);
        };
        let rows = y.len() / width.max(1);
        let per_row = if self.sparse_targets() { 1 } else { width };
        if keep.len() != rows || target.len() != rows * per_row {
            return Err(Error::input(format!(
                "loss {}: target has {} values and the mask {} rows, the output needs {} and {rows}",
                self.name(),
                target.len(),
                keep.len(),
                rows * per_row
            )));
        }
        dy.clear();
        dy.resize(y.len(), 0.0);
        let mut sum = 0.0;
        let mut part = Vec::new();
        // Each run of consecutive kept rows is one ordinary sum.
        let mut r = 0;
        while r < rows {
            if !keep[r] {
                r += 1;
                continue;
            }
            let end = r + keep[r..].iter().take_while(|&&k| k).count();
            sum += self.sum_rows(
                &y[r * width..end * width],
                &target[r * per_row..end * per_row],
                width,
                &mut part,
                total_rows,
            )?;
            dy[r * width..end * width].copy_from_slice(&part);
            r = end;
        }
        Ok(sum)
    }

    /// [`compute_sum`](Self::compute_sum) over every row.
    fn sum_rows(
        &self,
        y: &[f32],
        target: &[f32],
        width: usize,
        dy: &mut Vec<f32>,
        total_rows: usize,
    ) -> Result<f64> {
        dy.clear();
        dy.resize(y.len(), 0.0);
        if let Some(i) = target.iter().position(|v| !v.is_finite()) {
            return Err(Error::input(format!(
                "target value {} at flat index {i} is not finite",
                target[i]
            )));
        }
        let rows = y.len() / width.max(1);
        let want = if self.sparse_targets() { rows } else { y.len() };
        if target.len() != want {
            return Err(Error::input(format!(
                "loss {}: target has {} values, the output needs {want}",
                self.name(),
                target.len()
            )));
        }
        if y.is_empty() {
            return Err(Error::input("loss of an empty batch"));
        }
        Ok(match *self {
            Loss::Mse => {
                let n = (total_rows * width) as f64;
                let scale = (2.0 / n) as f32;
                let mut sum = 0.0f64;
                for ((g, &a), &t) in dy.iter_mut().zip(y).zip(target) {
                    let e = a - t;
                    sum += f64::from(e) * f64::from(e);
                    *g = scale * e;
                }
                sum
            }
            Loss::Mae => {
                let n = (total_rows * width) as f64;
                let scale = (1.0 / n) as f32;
                let mut sum = 0.0f64;
                for ((g, &a), &t) in dy.iter_mut().zip(y).zip(target) {
                    let e = a - t;
                    sum += f64::from(e.abs());
                    *g = if e > 0.0 {
                        scale
                    } else if e < 0.0 {
                        -scale
                    } else {
                        0.0
                    };
                }
                sum
            }
            Loss::Huber { delta } => {
                if !(delta > 0.0 && delta.is_finite()) {
                    return Err(Error::config(format!(
                        "huber delta must be > 0, got {delta}"
                    )));
                }
                let n = (total_rows * width) as f64;
                let scale = (1.0 / n) as f32;
                let mut sum = 0.0f64;
                for ((g, &a), &t) in dy.iter_mut().zip(y).zip(target) {
                    let e = a - t;
                    let ae = e.abs();
                    sum += if ae <= delta {
                        0.5 * f64::from(e) * f64::from(e)
                    } else {
                        f64::from(delta) * (f64::from(ae) - 0.5 * f64::from(delta))
                    };
                    *g = e.clamp(-delta, delta) * scale;
                }
                sum
            }
            Loss::BinaryCrossentropy { from_logits } => {
                let n = (total_rows * width) as f64;
                let scale = (1.0 / n) as f32;
                let mut sum = 0.0f64;
                for ((g, &z), &t) in dy.iter_mut().zip(y).zip(target) {
                    if from_logits {
                        sum += f64::from(z.max(0.0) - z * t + (-z.abs()).exp().ln_1p());
                        let s = 1.0 / (1.0 + (-z).exp());
                        *g = (s - t) * scale;
                    } else {
                        let p = z.clamp(EPSILON, 1.0 - EPSILON);
                        sum -= f64::from(t * p.ln() + (1.0 - t) * (1.0 - p).ln());
                        if z > EPSILON && z < 1.0 - EPSILON {
                            *g = (p - t) / (p * (1.0 - p)) * scale;
                        }
                    }
                }
                sum
            }
            Loss::SparseCategoricalCrossentropy { from_logits } => {
                let inv = 1.0 / total_rows as f32;
                let mut sum = 0.0f64;
                for (r, &t) in target.iter().enumerate() {
                    let class = class_id(t, width, r)?;
                    let yr = &y[r * width..(r + 1) * width];
                    let gr = &mut dy[r * width..(r + 1) * width];
                    if from_logits {
                        // softmax(y) = e^(y - m) / s with m = max(y), s = Σ e^(y - m).
                        let m = softmax::max(yr);
                        let s = softmax::exp_sum(yr, m, gr);
                        let lse = m + s.ln();
                        sum += f64::from(lse - yr[class]);
                        let k = inv / s;
                        for g in gr.iter_mut() {
                            *g *= k;
                        }
                        gr[class] -= inv;
                    } else {
                        let p = yr[class].clamp(EPSILON, 1.0 - EPSILON);
                        sum -= f64::from(p.ln());
                        if yr[class] > EPSILON && yr[class] < 1.0 - EPSILON {
                            gr[class] = -inv / p;
                        }
                    }
                }
                sum
            }
            Loss::CategoricalCrossentropy { from_logits } => {
                let inv = 1.0 / total_rows as f32;
                let mut sum = 0.0f64;
                for r in 0..rows {
                    let yr = &y[r * width..(r + 1) * width];
                    let tr = &target[r * width..(r + 1) * width];
                    let gr = &mut dy[r * width..(r + 1) * width];
                    if from_logits {
                        let m = softmax::max(yr);
                        let s = softmax::exp_sum(yr, m, gr);
                        let lse = m + s.ln();
                        let tsum: f32 = tr.iter().sum();
                        let k = tsum * inv / s;
                        for ((g, &z), &t) in gr.iter_mut().zip(yr).zip(tr) {
                            sum -= f64::from(t) * f64::from(z - lse);
                            *g = *g * k - t * inv;
                        }
                    } else {
                        for ((g, &p), &t) in gr.iter_mut().zip(yr).zip(tr) {
                            let pc = p.clamp(EPSILON, 1.0 - EPSILON);
                            sum -= f64::from(t) * f64::from(pc.ln());
                            if p > EPSILON && p < 1.0 - EPSILON {
                                *g = -t * inv / pc;
                            }
                        }
                    }
                }
                sum
            }
        })
    }
}

fn class_id(t: f32, width: usize, row: usize) -> Result<usize> {
    if t < 0.0 || t.fract() != 0.0 || t as usize >= width {
        return Err(Error::input(format!(
            "class id {t} at target position {row} is not an integer in [0, {width})"
        )));
    }
    Ok(t as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd(loss: Loss, y: &[f32], t: &[f32], width: usize) {
        let mut dy = Vec::new();
        loss.compute(y, t, width, &mut dy).unwrap();
        let mut scratch = Vec::new();
        for i in 0..y.len() {
            let h = 1e-3f32;
            let mut yp = y.to_vec();
            yp[i] += h;
            let mut ym = y.to_vec();
            ym[i] -= h;
            let f = (loss.compute(&yp, t, width, &mut scratch).unwrap()
                - loss.compute(&ym, t, width, &mut scratch).unwrap())
                / (2.0 * f64::from(h));
            // f32 forward in f64 accumulation: noise ~1e-7/1e-3 = 1e-4 absolute.
            assert!(
                (f64::from(dy[i]) - f).abs() < 5e-4 + 1e-3 * f.abs(),
                "{loss:?}[{i}]: {} vs {f}",
                dy[i]
            );
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let y = [0.3f32, -1.2, 0.8, 2.0, 0.1, -0.4];
        fd(Loss::Mse, &y, &[0.0, 1.0, -1.0, 0.5, 0.2, 0.0], 3);
        fd(Loss::Mae, &y, &[0.0, 1.0, -1.0, 0.5, 0.2, 0.0], 3);
        fd(
            Loss::Huber { delta: 1.0 },
            &y,
            &[0.0, 1.0, -1.0, 0.5, 0.2, 0.0],
            3,
        );
        fd(
            Loss::BinaryCrossentropy { from_logits: true },
            &y,
            &[0.0, 1.0, 1.0, 0.0, 0.3, 1.0],
            3,
        );
        fd(
            Loss::BinaryCrossentropy { from_logits: false },
            &[0.2, 0.7, 0.5, 0.9, 0.1, 0.4],
            &[0.0, 1.0, 1.0, 0.0, 0.3, 1.0],
            3,
        );
        fd(
            Loss::SparseCategoricalCrossentropy { from_logits: true },
            &y,
            &[2.0, 0.0],
            3,
        );
        fd(
            Loss::CategoricalCrossentropy { from_logits: true },
            &y,
            &[0.0, 0.0, 1.0, 1.0, 0.0, 0.0],
            3,
        );
        let p = [0.2f32, 0.5, 0.3, 0.6, 0.3, 0.1];
        fd(
            Loss::SparseCategoricalCrossentropy { from_logits: false },
            &p,
            &[1.0, 2.0],
            3,
        );
        fd(
            Loss::CategoricalCrossentropy { from_logits: false },
            &p,
            &[0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            3,
        );
    }

    #[test]
    fn known_values() {
        let mut dy = Vec::new();
        let v = Loss::Mse
            .compute(&[1.0, 3.0], &[0.0, 0.0], 1, &mut dy)
            .unwrap();
        assert!((v - 5.0).abs() < 1e-12);
        let v = Loss::Mae
            .compute(&[1.0, -3.0], &[0.0, 0.0], 1, &mut dy)
            .unwrap();
        assert!((v - 2.0).abs() < 1e-12);
        // Huber(1): 0.5·0.25 and 1·(3 - 0.5).
        let v = Loss::Huber { delta: 1.0 }
            .compute(&[0.5, 3.0], &[0.0, 0.0], 1, &mut dy)
            .unwrap();
        assert!((v - (0.125 + 2.5) / 2.0).abs() < 1e-7);
        // BCE of p = 0.5 is ln 2 whatever the target.
        let v = Loss::BinaryCrossentropy { from_logits: false }
            .compute(&[0.5, 0.5], &[0.0, 1.0], 1, &mut dy)
            .unwrap();
        assert!((v - 2f64.ln()).abs() < 1e-6);
        // Uniform logits over 4 classes: -log(1/4).
        let v = Loss::SparseCategoricalCrossentropy { from_logits: true }
            .compute(&[7.0; 4], &[3.0], 4, &mut dy)
            .unwrap();
        assert!((v - 4f64.ln()).abs() < 1e-6);
    }

    #[test]
    fn bad_targets_are_errors() {
        let mut dy = Vec::new();
        let sce = Loss::SparseCategoricalCrossentropy { from_logits: true };
        assert!(sce
            .compute(&[0.0; 3], &[3.0], 3, &mut dy)
            .unwrap_err()
            .to_string()
            .contains("[0, 3)"));
        assert!(sce.compute(&[0.0; 3], &[0.5], 3, &mut dy).is_err());
        assert!(Loss::Mse
            .compute(&[0.0; 2], &[f32::NAN, 0.0], 1, &mut dy)
            .is_err());
        assert!(Loss::Mse.compute(&[0.0; 2], &[0.0], 1, &mut dy).is_err());
    }

    #[test]
    fn huge_logits_stay_finite() {
        let mut dy = Vec::new();
        let v = Loss::SparseCategoricalCrossentropy { from_logits: true }
            .compute(&[1e4, -1e4, 0.0], &[1.0], 3, &mut dy)
            .unwrap();
        assert!(v.is_finite() && (v - 2e4).abs() < 1.0);
        assert!(dy.iter().all(|g| g.is_finite()));
    }
}
