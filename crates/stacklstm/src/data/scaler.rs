//! Per-column scaling, fitted on the training rows only and saved with the model.
//!
//! * [`Scaler::MinMax`]: `x' = (x - min) / (max - min)`, mapping the training range to `[0, 1]`.
//! * [`Scaler::Standard`]: `x' = (x - mean) / std`, with the population standard deviation
//!   (divide by `n`, as scikit-learn's `StandardScaler`).
//! * [`Scaler::None`]: the identity, for any number of columns.
//!
//! **Constant columns.** When a column's `max - min` (or `std`) is zero, or so small or odd that
//! dividing by it is unsafe (not a normal positive float), the scale `1` is used instead: the
//! column is only shifted, so a constant training column becomes all zeros, and
//! `inverse_transform` restores it exactly. The stored `max` / `std` stay the true values.
//!
//! Statistics are computed in f64 and stored as f32.

use crate::error::{shape_str, Error, Result};
use ndarray::{Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

/// Which scaler to fit (a configuration value, e.g. from `--scaler minmax`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScalerKind {
    /// Min-max scaling to `[0, 1]`.
    #[default]
    MinMax,
    /// Zero mean, unit variance.
    Standard,
    /// No scaling.
    None,
}

impl std::str::FromStr for ScalerKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "minmax" | "min_max" | "min-max" => Ok(ScalerKind::MinMax),
            "standard" | "zscore" | "z-score" => Ok(ScalerKind::Standard),
            "none" => Ok(ScalerKind::None),
            other => Err(Error::config(format!(
                "unknown scaler '{other}'; expected one of: minmax, standard, none"
            ))),
        }
    }
}

/// A fitted per-column scaler. Serialises as `{"kind": "min_max", "min": [...], "max": [...]}`,
/// `{"kind": "standard", "mean": [...], "std": [...]}` or `{"kind": "none"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scaler {
    /// Min-max scaling; one entry per column.
    MinMax {
        /// Per-column minimum of the training rows.
        min: Vec<f32>,
        /// Per-column maximum of the training rows.
        max: Vec<f32>,
    },
    /// Standardisation; one entry per column.
    Standard {
        /// Per-column mean of the training rows.
        mean: Vec<f32>,
        /// Per-column population standard deviation of the training rows.
        std: Vec<f32>,
    },
    /// The identity.
    None,
}

/// The divisor actually used for a stored range / std (see the module docs).
fn safe_scale(s: f32) -> f32 {
    if s.is_normal() && s > 0.0 {
        s
    } else {
        1.0
    }
}

impl Scaler {
    /// Fits a scaler of the given kind on `train` (`[rows, columns]`, training rows only).
    /// Errors on zero rows or a non-finite value (naming its row and column).
    pub fn fit(kind: ScalerKind, train: ArrayView2<'_, f32>) -> Result<Self> {
        if kind == ScalerKind::None {
            return Ok(Scaler::None);
        }
        let (rows, cols) = train.dim();
        if rows == 0 {
            return Err(Error::input("cannot fit a scaler on zero rows"));
        }
        if let Some(((r, c), v)) = train.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(Error::input(format!(
                "cannot fit a scaler: non-finite value {v} at row {r}, column {c}"
            )));
        }
        match kind {
            ScalerKind::MinMax => {
                let mut min = Vec::with_capacity(cols);
                let mut max = Vec::with_capacity(cols);
                for col in train.axis_iter(Axis(1)) {
                    let lo = col.iter().copied().fold(f32::INFINITY, f32::min);
                    let hi = col.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    min.push(lo);
                    max.push(hi);
                }
                Ok(Scaler::MinMax { min, max })
            }
            ScalerKind::Standard => {
                let mut mean = Vec::with_capacity(cols);
                let mut std = Vec::with_capacity(cols);
                for col in train.axis_iter(Axis(1)) {
                    let n = col.len() as f64;
                    let m = col.iter().map(|&v| v as f64).sum::<f64>() / n;
                    let var = col.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / n;
                    mean.push(m as f32);
                    std.push(var.sqrt() as f32);
                }
                Ok(Scaler::Standard { mean, std })
            }
            ScalerKind::None => Ok(Scaler::None),
        }
    }

    /// The kind of this scaler.
    pub fn kind(&self) -> ScalerKind {
        match self {
            Scaler::MinMax { .. } => ScalerKind::MinMax,
            Scaler::Standard { .. } => ScalerKind::Standard,
            Scaler::None => ScalerKind::None,
        }
    }

    /// The number of columns the scaler was fitted on (`None` for [`Scaler::None`], which
    /// accepts any width). Errors when the stored vectors disagree (a corrupt saved scaler).
    pub fn n_columns(&self) -> Result<Option<usize>> {
        let (a, b) = match self {
            Scaler::MinMax { min, max } => (min.len(), max.len()),
            Scaler::Standard { mean, std } => (mean.len(), std.len()),
            Scaler::None => return Ok(None),
        };
        if a != b {
            return Err(Error::config(format!(
                "corrupt scaler: its two parameter vectors have {a} and {b} entries"
            )));
        }
        Ok(Some(a))
    }

    /// (offset, divisor) for fitted column `c`.
    fn params(&self, c: usize) -> Option<(f32, f32)> {
        match self {
            Scaler::MinMax { min, max } => {
                let lo = *min.get(c)?;
                let hi = *max.get(c)?;
                Some((lo, safe_scale(hi - lo)))
            }
            Scaler::Standard { mean, std } => Some((*mean.get(c)?, safe_scale(*std.get(c)?))),
            Scaler::None => Some((0.0, 1.0)),
        }
    }

    /// Scales every column of `x` (`[rows, n_columns]`).
    pub fn transform(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        let cols = self.all_columns(x.ncols(), "transform")?;
        self.apply(x, &cols, false, "transform")
    }

    /// Undoes [`Scaler::transform`] on every column of `x` (`[rows, n_columns]`).
    pub fn inverse_transform(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        let cols = self.all_columns(x.ncols(), "inverse_transform")?;
        self.apply(x, &cols, true, "inverse_transform")
    }

    /// Scales `x`, whose column `j` holds values of fitted column `cols[j]` (e.g. only the
    /// target columns). `cols.len()` must equal `x.ncols()`.
    pub fn transform_columns(&self, x: ArrayView2<'_, f32>, cols: &[usize]) -> Result<Array2<f32>> {
        self.apply(x, cols, false, "transform_columns")
    }

    /// Undoes the scaling of `x`, whose column `j` holds values of fitted column `cols[j]`.
    /// `cols.len()` must equal `x.ncols()`.
    pub fn inverse_transform_columns(
        &self,
        x: ArrayView2<'_, f32>,
        cols: &[usize],
    ) -> Result<Array2<f32>> {
        self.apply(x, cols, true, "inverse_transform_columns")
    }

    /// Undoes the scaling of targets or predictions in the step-major layout of
    /// [`crate::data::window::Windows::y`] (`[n, horizon * n_targets]`, column `j` holds target
    /// `target_idx[j % n_targets]`).
    pub fn inverse_transform_y(
        &self,
        y: ArrayView2<'_, f32>,
        target_idx: &[usize],
    ) -> Result<Array2<f32>> {
        let nt = target_idx.len();
        if nt == 0 || !y.ncols().is_multiple_of(nt) {
            return Err(Error::ShapeMismatch {
                layer: "inverse_transform_y".into(),
                expected: format!("[n, horizon * {nt}]"),
                got: shape_str(y.shape()),
            });
        }
        let cols: Vec<usize> = (0..y.ncols())
            .filter_map(|j| target_idx.get(j % nt).copied())
            .collect();
        self.apply(y, &cols, true, "inverse_transform_y")
    }

    fn all_columns(&self, ncols: usize, what: &str) -> Result<Vec<usize>> {
        if let Some(n) = self.n_columns()? {
            if n != ncols {
                return Err(Error::ShapeMismatch {
                    layer: format!("scaler {what}"),
                    expected: format!("[rows, {n}]"),
                    got: format!("[rows, {ncols}]"),
                });
            }
        }
        Ok((0..ncols).collect())
    }

    fn apply(
        &self,
        x: ArrayView2<'_, f32>,
        cols: &[usize],
        inverse: bool,
        what: &str,
    ) -> Result<Array2<f32>> {
        if cols.len() != x.ncols() {
            return Err(Error::input(format!(
                "{what}: {} column indices given for an array of shape {}",
                cols.len(),
                shape_str(x.shape())
            )));
        }
        let fitted = self.n_columns()?;
        let mut params = Vec::with_capacity(cols.len());
        for &c in cols {
            match self.params(c) {
                Some(p) => params.push(p),
                None => {
                    return Err(Error::input(format!(
                    "{what}: column index {c} is out of range for a scaler fitted on {} columns",
                    fitted.unwrap_or(0)
                )))
                }
            }
        }
        let mut out = x.to_owned();
        for (mut col, &(off, scale)) in out.axis_iter_mut(Axis(1)).zip(&params) {
            if inverse {
                col.mapv_inplace(|v| v * scale + off);
            } else {
                col.mapv_inplace(|v| (v - off) / scale);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array2};
    use proptest::prelude::*;

    #[test]
    fn minmax_and_standard_values() {
        let x = array![[1.0f32, 10.0], [3.0, 10.0], [5.0, 10.0]];
        let s = Scaler::fit(ScalerKind::MinMax, x.view()).unwrap();
        assert_eq!(
            s,
            Scaler::MinMax {
                min: vec![1.0, 10.0],
                max: vec![5.0, 10.0]
            }
        );
        let t = s.transform(x.view()).unwrap();
        assert_eq!(t, array![[0.0, 0.0], [0.5, 0.0], [1.0, 0.0]]);
        assert_eq!(s.inverse_transform(t.view()).unwrap(), x);
        let s = Scaler::fit(ScalerKind::Standard, x.view()).unwrap();
        let t = s.transform(x.view()).unwrap();
        let sd = (8.0f32 / 3.0).sqrt();
        assert!((t[[0, 0]] + 2.0 / sd).abs() < 1e-6);
        assert_eq!(t.column(1).to_vec(), vec![0.0, 0.0, 0.0]); // constant column: shifted only
        let back = s.inverse_transform(t.view()).unwrap();
        assert!((back[[2, 0]] - 5.0).abs() < 1e-6);
        assert_eq!(back.column(1).to_vec(), vec![10.0, 10.0, 10.0]);
    }

    #[test]
    fn fit_on_train_only_and_subset_inverse() {
        let train = array![[0.0f32, 100.0], [10.0, 200.0]];
        let s = Scaler::fit(ScalerKind::MinMax, train.view()).unwrap();
        // later data may leave [0, 1]
        let t = s.transform(array![[20.0f32, 300.0]].view()).unwrap();
        assert_eq!(t, array![[2.0, 2.0]]);
        // predictions of column 1 only
        let pred = array![[0.5f32], [1.0]];
        assert_eq!(
            s.inverse_transform_columns(pred.view(), &[1]).unwrap(),
            array![[150.0], [200.0]]
        );
        assert_eq!(
            s.transform_columns(array![[150.0f32]].view(), &[1])
                .unwrap(),
            array![[0.5]]
        );
        // horizon 2, targets [1, 0], step-major
        let y = array![[0.5f32, 0.5, 1.0, 1.0]];
        assert_eq!(
            s.inverse_transform_y(y.view(), &[1, 0]).unwrap(),
            array![[150.0, 5.0, 200.0, 10.0]]
        );
        assert!(s.inverse_transform_y(y.view(), &[1, 0, 0]).is_err());
        assert!(s.inverse_transform_columns(pred.view(), &[2]).is_err());
        assert!(s.inverse_transform_columns(pred.view(), &[0, 1]).is_err());
        assert!(matches!(
            s.transform(array![[1.0f32, 2.0, 3.0]].view()),
            Err(Error::ShapeMismatch { .. })
        ));
    }

    #[test]
    fn errors_and_none() {
        assert!(Scaler::fit(ScalerKind::MinMax, Array2::<f32>::zeros((0, 2)).view()).is_err());
        let e = Scaler::fit(ScalerKind::Standard, array![[1.0f32, f32::NAN]].view()).unwrap_err();
        assert!(e.to_string().contains("row 0, column 1"), "{e}");
        let s = Scaler::fit(ScalerKind::None, array![[1.0f32, f32::NAN]].view()).unwrap();
        let x = array![[3.0f32, 4.0, 5.0]];
        assert_eq!(s.transform(x.view()).unwrap(), x);
        assert_eq!(
            s.inverse_transform_columns(x.view(), &[7, 8, 9]).unwrap(),
            x
        );
        // corrupt deserialised scaler
        let bad: Scaler =
            serde_json::from_str(r#"{"kind":"min_max","min":[0.0],"max":[]}"#).unwrap();
        assert!(bad.transform(array![[1.0f32]].view()).is_err());
        assert_eq!(
            "z-score".parse::<ScalerKind>().unwrap(),
            ScalerKind::Standard
        );
        assert!("log".parse::<ScalerKind>().is_err());
    }

    #[test]
    fn serde_round_trip() {
        let x = array![[1.0f32, -2.0], [3.5, 7.25], [0.125, 1.0]];
        for kind in [ScalerKind::MinMax, ScalerKind::Standard, ScalerKind::None] {
            let s = Scaler::fit(kind, x.view()).unwrap();
            let j = serde_json::to_string(&s).unwrap();
            let back: Scaler = serde_json::from_str(&j).unwrap();
            assert_eq!(back, s, "{j}");
            assert_eq!(back.kind(), kind);
        }
        let j = serde_json::to_string(&Scaler::None).unwrap();
        assert_eq!(j, r#"{"kind":"none"}"#);
    }

    proptest! {
        #[test]
        fn inverse_of_transform_is_identity(
            rows in 1usize..20, cols in 1usize..4, standard in any::<bool>(),
            seed in proptest::collection::vec(-1.0e4f32..1.0e4, 80),
        ) {
            let x = Array2::from_shape_fn((rows, cols), |(r, c)| seed[(r * cols + c) % seed.len()]);
            let kind = if standard { ScalerKind::Standard } else { ScalerKind::MinMax };
            let s = Scaler::fit(kind, x.view()).unwrap();
            let t = s.transform(x.view()).unwrap();
            let back = s.inverse_transform(t.view()).unwrap();
            let max_abs = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (a, b) in back.iter().zip(x.iter()) {
                prop_assert!((a - b).abs() <= 1e-6 * max_abs + 1e-6, "{} vs {}", a, b);
            }
            if !standard {
                for v in t.iter() {
                    prop_assert!(*v >= -1e-6 && *v <= 1.0 + 1e-6);
                }
            }
        }
    }
}
