//! Supervised windows for forecasting, chronological splits and baseline forecasts.
//!
//! # Convention
//!
//! From a series `values` of shape `[rows, F]` and a [`WindowSpec`] `{ window, horizon, stride }`,
//! sample `i` (0-based) starts at row `s = i * stride` and has
//!
//! * input `X[i] = values[s .. s + window, :]` (shape `[window, F]`, every feature column),
//! * target `Y[i, h * n_targets + k] = values[s + window + h, target_idx[k]]` for
//!   `h = 0 .. horizon`, `k = 0 .. n_targets`: the targets at the `horizon` steps right after
//!   the window, **step-major** (all targets of step 1, then all targets of step 2, ...).
//!
//! So `X` is `[n, window, F]` and `Y` is `[n, horizon * n_targets]` with
//!
//! ```text
//! n = (rows - window - horizon) / stride + 1        (integer division)
//! ```
//!
//! Windows are taken from the start of the series; the last `(rows - window - horizon) % stride`
//! rows are not used as targets. `window`, `horizon` and `stride` must be at least 1 and
//! `rows >= window + horizon`.
//!
//! # Splits without leakage
//!
//! [`split_chronological`] cuts the *rows* into train / validation / test parts, in time order,
//! before any windowing. [`ChronoSplit::windows`] windows each part on its own, so no sample has
//! a target in one part and inputs in a later part. With `context = true` the validation and test
//! parts are extended backwards by `window` rows, so that their first sample forecasts the
//! part's first row from the `window` rows before it (rows of the previous part used as inputs
//! only, which is what is known at forecast time); every *target* of a part still lies inside
//! that part, and train samples never see a validation or test row at all. With
//! `context = false` each part uses only its own rows (and loses `window` targets).

use crate::error::{shape_str, Error, Result};
use ndarray::{s, Array2, Array3, ArrayBase, ArrayView2, Data, Dimension};
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// The largest number of elements a window array may have (2^31 floats = 8 GiB); larger
/// requests are an error rather than an allocation failure.
pub const MAX_WINDOW_ELEMENTS: usize = 1 << 31;

/// Window geometry: `window` input steps, `horizon` steps ahead, a new sample every `stride` rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSpec {
    /// Lookback: the number of time steps in each input window.
    pub window: usize,
    /// The number of future steps to forecast (1 = next step).
    pub horizon: usize,
    /// The distance in rows between the starts of consecutive samples.
    pub stride: usize,
}

impl WindowSpec {
    /// A checked spec: every number must be at least 1.
    pub fn new(window: usize, horizon: usize, stride: usize) -> Result<Self> {
        let spec = WindowSpec {
            window,
            horizon,
            stride,
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Checks that `window`, `horizon` and `stride` are all at least 1.
    pub fn validate(&self) -> Result<()> {
        if self.window == 0 || self.horizon == 0 || self.stride == 0 {
            return Err(Error::config(format!(
                "window ({}), horizon ({}) and stride ({}) must all be at least 1",
                self.window, self.horizon, self.stride
            )));
        }
        Ok(())
    }

    /// The number of samples a series of `rows` rows yields:
    /// `(rows - window - horizon) / stride + 1`. An error, naming the numbers, when the spec is
    /// invalid or the series is shorter than `window + horizon`.
    pub fn count(&self, rows: usize) -> Result<usize> {
        self.validate()?;
        let need = self.window.checked_add(self.horizon).ok_or_else(|| {
            Error::config(format!(
                "window ({}) + horizon ({}) overflows",
                self.window, self.horizon
            ))
        })?;
        if rows < need {
            return Err(Error::input(format!(
                "the series has {rows} rows, fewer than window ({}) + horizon ({}) = {need}",
                self.window, self.horizon
            )));
        }
        Ok((rows - need) / self.stride + 1)
    }
}

/// Supervised samples: inputs `x` `[n, window, F]` and targets `y` `[n, horizon * n_targets]`
/// (see the module docs for the layout).
#[derive(Debug, Clone, PartialEq)]
pub struct Windows {
    /// Inputs, `[n, window, F]`.
    pub x: Array3<f32>,
    /// Targets, `[n, horizon * n_targets]`, step-major.
    pub y: Array2<f32>,
    /// For each sample, the row (of the series passed to [`ChronoSplit::windows`] or
    /// [`make_windows`]) of its first target, i.e. `s + window`.
    pub first_target_row: Vec<usize>,
}

impl Windows {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.x.shape().first().copied().unwrap_or(0)
    }

    /// Whether there are no samples (never the case for windows built here).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn check_targets(n_cols: usize, target_idx: &[usize]) -> Result<()> {
    if target_idx.is_empty() {
        return Err(Error::input("no target column index given"));
    }
    if let Some(&bad) = target_idx.iter().find(|&&t| t >= n_cols) {
        return Err(Error::input(format!(
            "target column index {bad} is out of range for a series with {n_cols} columns"
        )));
    }
    Ok(())
}

fn checked_elems(dims: &[usize], what: &str) -> Result<usize> {
    let mut n: usize = 1;
    for &d in dims {
        n = n.checked_mul(d).ok_or_else(|| {
            Error::input(format!("{what} of shape {} is too large", shape_str(dims)))
        })?;
    }
    if n > MAX_WINDOW_ELEMENTS {
        return Err(Error::input(format!(
            "{what} of shape {} would have {n} elements, more than the limit of {MAX_WINDOW_ELEMENTS}; use a larger stride or a shorter window",
            shape_str(dims)
        )));
    }
    Ok(n)
}

/// Builds the supervised samples of `values` (`[rows, F]`) for the target columns `target_idx`.
/// See the module docs for the exact convention.
pub fn make_windows(
    values: ArrayView2<'_, f32>,
    target_idx: &[usize],
    spec: &WindowSpec,
) -> Result<Windows> {
    make_windows_offset(values, target_idx, spec, 0)
}

fn make_windows_offset(
    values: ArrayView2<'_, f32>,
    target_idx: &[usize],
    spec: &WindowSpec,
    row_offset: usize,
) -> Result<Windows> {
    let (rows, f) = values.dim();
    check_targets(f, target_idx)?;
    let n = spec.count(rows)?;
    let nt = target_idx.len();
    let y_cols = spec
        .horizon
        .checked_mul(nt)
        .ok_or_else(|| Error::input("horizon * n_targets overflows"))?;
    checked_elems(&[n, spec.window, f], "the input windows")?;
    checked_elems(&[n, y_cols], "the targets")?;
    let mut x = Array3::<f32>::zeros((n, spec.window, f));
    let mut y = Array2::<f32>::zeros((n, y_cols));
    let mut first = Vec::with_capacity(n);
    for i in 0..n {
        // count() guarantees i * stride + window + horizon <= rows for every i < n.
        let s0 = i * spec.stride;
        x.slice_mut(s![i, .., ..])
            .assign(&values.slice(s![s0..s0 + spec.window, ..]));
        for h in 0..spec.horizon {
            let r = s0 + spec.window + h;
            for (k, &t) in target_idx.iter().enumerate() {
                if let (Some(dst), Some(v)) = (y.get_mut((i, h * nt + k)), values.get((r, t))) {
                    *dst = *v;
                }
            }
        }
        first.push(row_offset + s0 + spec.window);
    }
    Ok(Windows {
        x,
        y,
        first_target_row: first,
    })
}

/// A chronological split of a series' rows into consecutive train / validation / test parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChronoSplit {
    /// The first rows.
    pub train: Range<usize>,
    /// The rows after `train` (may be empty).
    pub val: Range<usize>,
    /// The last rows (may be empty).
    pub test: Range<usize>,
}

/// Samples of each part of a [`ChronoSplit`]; `None` for an empty part.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitWindows {
    /// Training samples.
    pub train: Windows,
    /// Validation samples.
    pub val: Option<Windows>,
    /// Test samples.
    pub test: Option<Windows>,
}

/// Splits `rows` rows in time order: the last `round(rows * test_frac)` rows are the test part,
/// the `round(rows * val_frac)` rows before them the validation part, the rest the training
/// part. Fractions must be finite, in `[0, 1)`, with a sum below 1, and the training part must
/// not be empty.
pub fn split_chronological(rows: usize, val_frac: f64, test_frac: f64) -> Result<ChronoSplit> {
    for (name, v) in [("val_frac", val_frac), ("test_frac", test_frac)] {
        if !v.is_finite() || !(0.0..1.0).contains(&v) {
            return Err(Error::config(format!("{name} must be in [0, 1), got {v}")));
        }
    }
    if val_frac + test_frac >= 1.0 {
        return Err(Error::config(format!(
            "val_frac ({val_frac}) + test_frac ({test_frac}) must be below 1"
        )));
    }
    let n_test = ((rows as f64) * test_frac).round() as usize;
    let n_val = ((rows as f64) * val_frac).round() as usize;
    let n_train = rows.saturating_sub(n_test).saturating_sub(n_val);
    if n_train == 0 {
        return Err(Error::input(format!(
            "a series of {rows} rows leaves no training rows with val_frac {val_frac} and test_frac {test_frac}"
        )));
    }
    Ok(ChronoSplit {
        train: 0..n_train,
        val: n_train..n_train + n_val,
        test: n_train + n_val..rows,
    })
}

impl ChronoSplit {
    /// Windows each part of `values` (the whole series, `[rows, F]`) on its own; see the module
    /// docs for what `context` does. `first_target_row` of the result counts rows of the whole
    /// series. Errors when a non-empty part is too short for `window + horizon` (or, with
    /// `context`, when the part before it has fewer than `window` rows).
    pub fn windows(
        &self,
        values: ArrayView2<'_, f32>,
        target_idx: &[usize],
        spec: &WindowSpec,
        context: bool,
    ) -> Result<SplitWindows> {
        spec.validate()?;
        let rows = values.nrows();
        if self.test.end != rows
            || self.train.start != 0
            || self.train.end != self.val.start
            || self.val.end != self.test.start
        {
            return Err(Error::input(format!(
                "split {:?} / {:?} / {:?} does not match a series of {rows} rows",
                self.train, self.val, self.test
            )));
        }
        let part = |r: &Range<usize>, name: &str, ctx: bool| -> Result<Windows> {
            let start = if ctx {
                r.start.checked_sub(spec.window).ok_or_else(|| {
                    Error::input(format!(
                        "the {name} part starts at row {} and cannot take {} rows of context",
                        r.start, spec.window
                    ))
                })?
            } else {
                r.start
            };
            make_windows_offset(values.slice(s![start..r.end, ..]), target_idx, spec, start)
                .map_err(|e| match e {
                    Error::InvalidInput(m) => Error::input(format!("{name} part: {m}")),
                    other => other,
                })
        };
        let train = part(&self.train, "train", false)?;
        let val = if self.val.is_empty() {
            None
        } else {
            Some(part(&self.val, "validation", context)?)
        };
        let test = if self.test.is_empty() {
            None
        } else {
            Some(part(&self.test, "test", context)?)
        };
        Ok(SplitWindows { train, val, test })
    }
}

/// The persistence forecast for the samples [`make_windows`] builds: every horizon step
/// predicts the last value of the window, `values[s + window - 1, target]`. Same shape and
/// layout as `Windows::y`.
pub fn naive_forecast(
    values: ArrayView2<'_, f32>,
    target_idx: &[usize],
    spec: &WindowSpec,
) -> Result<Array2<f32>> {
    baseline(values, target_idx, spec, |last, _h| last)
}

/// The seasonal-naive forecast: step `h` (1-based) after the window's last row `T` predicts the
/// value one season before it, `values[T + h - season * ceil(h / season), target]`, which is
/// always inside the window. `season` must be in `1..=window` (`season = 1` is the naive
/// forecast). Same shape and layout as `Windows::y`.
pub fn seasonal_naive_forecast(
    values: ArrayView2<'_, f32>,
    target_idx: &[usize],
    spec: &WindowSpec,
    season: usize,
) -> Result<Array2<f32>> {
    if season == 0 || season > spec.window {
        return Err(Error::config(format!(
            "season ({season}) must be between 1 and the window ({})",
            spec.window
        )));
    }
    baseline(values, target_idx, spec, move |last, h0| {
        let h = h0 + 1;
        last + h - season * h.div_ceil(season)
    })
}

/// `src(last_row, h0)` gives the source row of 0-based step `h0` for the window ending at
/// `last_row`; it must be at most `last_row`.
fn baseline(
    values: ArrayView2<'_, f32>,
    target_idx: &[usize],
    spec: &WindowSpec,
    src: impl Fn(usize, usize) -> usize,
) -> Result<Array2<f32>> {
    let (rows, f) = values.dim();
    check_targets(f, target_idx)?;
    let n = spec.count(rows)?;
    let nt = target_idx.len();
    let y_cols = spec
        .horizon
        .checked_mul(nt)
        .ok_or_else(|| Error::input("horizon * n_targets overflows"))?;
    checked_elems(&[n, y_cols], "the forecasts")?;
    let mut out = Array2::<f32>::zeros((n, y_cols));
    for i in 0..n {
        let last = i * spec.stride + spec.window - 1;
        for h in 0..spec.horizon {
            let r = src(last, h);
            for (k, &t) in target_idx.iter().enumerate() {
                if let (Some(dst), Some(v)) = (out.get_mut((i, h * nt + k)), values.get((r, t))) {
                    *dst = *v;
                }
            }
        }
    }
    Ok(out)
}

fn check_same<S1, S2, D>(a: &ArrayBase<S1, D>, b: &ArrayBase<S2, D>, what: &str) -> Result<()>
where
    S1: Data<Elem = f32>,
    S2: Data<Elem = f32>,
    D: Dimension,
{
    if a.shape() != b.shape() {
        return Err(Error::ShapeMismatch {
            layer: what.to_string(),
            expected: shape_str(a.shape()),
            got: shape_str(b.shape()),
        });
    }
    if a.is_empty() {
        return Err(Error::input(format!("{what}: empty arrays")));
    }
    Ok(())
}

/// Root mean squared error over all elements (computed in f64). Shapes must match and be
/// non-empty.
pub fn rmse<S1, S2, D>(pred: &ArrayBase<S1, D>, truth: &ArrayBase<S2, D>) -> Result<f64>
where
    S1: Data<Elem = f32>,
    S2: Data<Elem = f32>,
    D: Dimension,
{
    check_same(pred, truth, "rmse")?;
    let sum: f64 = pred
        .iter()
        .zip(truth.iter())
        .map(|(&p, &t)| (p as f64 - t as f64).powi(2))
        .sum();
    Ok((sum / pred.len() as f64).sqrt())
}

/// Mean absolute error over all elements (computed in f64). Shapes must match and be non-empty.
pub fn mae<S1, S2, D>(pred: &ArrayBase<S1, D>, truth: &ArrayBase<S2, D>) -> Result<f64>
where
    S1: Data<Elem = f32>,
    S2: Data<Elem = f32>,
    D: Dimension,
{
    check_same(pred, truth, "mae")?;
    let sum: f64 = pred
        .iter()
        .zip(truth.iter())
        .map(|(&p, &t)| (p as f64 - t as f64).abs())
        .sum();
    Ok(sum / pred.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array2};
    use proptest::prelude::*;

    /// values[r, c] = 100 * r + c, so every value tells its row.
    fn ramp(rows: usize, f: usize) -> Array2<f32> {
        Array2::from_shape_fn((rows, f), |(r, c)| (100 * r + c) as f32)
    }

    #[test]
    fn small_example_exact() {
        let v = ramp(7, 2);
        let spec = WindowSpec::new(3, 2, 2).unwrap();
        let w = make_windows(v.view(), &[1, 0], &spec).unwrap();
        // n = (7 - 3 - 2) / 2 + 1 = 2
        assert_eq!(w.x.shape(), &[2, 3, 2]);
        assert_eq!(w.y.shape(), &[2, 4]);
        assert_eq!(w.x.slice(s![1, .., 0]).to_vec(), vec![200.0, 300.0, 400.0]);
        // sample 0: targets rows 3, 4; step-major, target order [1, 0]
        assert_eq!(w.y.row(0).to_vec(), vec![301.0, 300.0, 401.0, 400.0]);
        assert_eq!(w.first_target_row, vec![3, 5]);
    }

    #[test]
    fn errors_name_the_numbers() {
        let v = ramp(5, 1);
        let e = make_windows(
            v.view(),
            &[0],
            &WindowSpec {
                window: 4,
                horizon: 2,
                stride: 1,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("5 rows") && e.contains("window (4)") && e.contains("horizon (2)"),
            "{e}"
        );
        for (w, h, s) in [(0, 1, 1), (1, 0, 1), (1, 1, 0)] {
            let e = WindowSpec::new(w, h, s).unwrap_err().to_string();
            assert!(
                e.contains(&format!("window ({w})")) && e.contains(&format!("stride ({s})")),
                "{e}"
            );
            assert!(make_windows(
                v.view(),
                &[0],
                &WindowSpec {
                    window: w,
                    horizon: h,
                    stride: s
                }
            )
            .is_err());
        }
        assert!(make_windows(v.view(), &[1], &WindowSpec::new(1, 1, 1).unwrap()).is_err());
        assert!(make_windows(v.view(), &[], &WindowSpec::new(1, 1, 1).unwrap()).is_err());
        let huge = WindowSpec {
            window: usize::MAX,
            horizon: 2,
            stride: 1,
        };
        assert!(huge.count(10).is_err());
    }

    #[test]
    fn too_many_elements_is_error_not_allocation() {
        let v = Array2::<f32>::zeros((100_000, 10));
        let e = make_windows(v.view(), &[0], &WindowSpec::new(50_000, 1, 1).unwrap()).unwrap_err();
        assert!(e.to_string().contains("limit"), "{e}");
    }

    #[test]
    fn baselines() {
        let v = array![[1.0f32], [2.], [3.], [4.], [5.], [6.], [7.], [8.]];
        let spec = WindowSpec::new(4, 3, 1).unwrap();
        let nf = naive_forecast(v.view(), &[0], &spec).unwrap();
        assert_eq!(nf.shape(), &[2, 3]);
        assert_eq!(nf.row(0).to_vec(), vec![4.0, 4.0, 4.0]);
        assert_eq!(nf.row(1).to_vec(), vec![5.0, 5.0, 5.0]);
        // season 2: window rows 0..4 (values 1..4), T = row 3; h=1 -> row 2, h=2 -> row 3, h=3 -> row 4-? = row 2
        let sn = seasonal_naive_forecast(v.view(), &[0], &spec, 2).unwrap();
        assert_eq!(sn.row(0).to_vec(), vec![3.0, 4.0, 3.0]);
        let s1 = seasonal_naive_forecast(v.view(), &[0], &spec, 1).unwrap();
        assert_eq!(s1, nf);
        assert!(seasonal_naive_forecast(v.view(), &[0], &spec, 5).is_err());
        assert!(seasonal_naive_forecast(v.view(), &[0], &spec, 0).is_err());
        // a perfectly periodic series is forecast exactly by seasonal naive
        let per = Array2::from_shape_fn((40, 1), |(r, _)| [1.0f32, 5.0, 2.0][r % 3]);
        let spec = WindowSpec::new(6, 4, 1).unwrap();
        let w = make_windows(per.view(), &[0], &spec).unwrap();
        let sn = seasonal_naive_forecast(per.view(), &[0], &spec, 3).unwrap();
        assert_eq!(rmse(&sn, &w.y).unwrap(), 0.0);
        let nf = naive_forecast(per.view(), &[0], &spec).unwrap();
        assert!(rmse(&nf, &w.y).unwrap() > 1.0);
        assert!(mae(&nf, &w.y).unwrap() > 1.0);
    }

    #[test]
    fn metrics() {
        let a = array![[1.0f32, 2.0], [3.0, 4.0]];
        let b = array![[1.0f32, 2.0], [3.0, 8.0]];
        assert!((rmse(&a, &b).unwrap() - 2.0).abs() < 1e-12);
        assert!((mae(&a, &b).unwrap() - 1.0).abs() < 1e-12);
        let c = array![[1.0f32, 2.0]];
        assert!(matches!(rmse(&a, &c), Err(Error::ShapeMismatch { .. })));
        let e = Array2::<f32>::zeros((0, 2));
        assert!(mae(&e, &e).is_err());
    }

    #[test]
    fn split_counts_and_errors() {
        let sp = split_chronological(100, 0.1, 0.2).unwrap();
        assert_eq!(
            (sp.train.clone(), sp.val.clone(), sp.test.clone()),
            (0..70, 70..80, 80..100)
        );
        let sp = split_chronological(10, 0.0, 0.0).unwrap();
        assert_eq!(sp.train, 0..10);
        assert!(sp.val.is_empty() && sp.test.is_empty());
        assert!(split_chronological(10, 0.5, 0.5).is_err());
        assert!(split_chronological(10, -0.1, 0.1).is_err());
        assert!(split_chronological(10, f64::NAN, 0.1).is_err());
        assert!(split_chronological(0, 0.1, 0.1).is_err());
        assert!(split_chronological(2, 0.3, 0.3).is_err());
    }

    /// No train sample sees a validation or test row; every val/test target lies in its part.
    #[test]
    fn split_windows_do_not_leak() {
        let rows = 200;
        let v = Array2::from_shape_fn((rows, 2), |(r, c)| (r * 10 + c) as f32);
        let sp = split_chronological(rows, 0.15, 0.2).unwrap();
        let spec = WindowSpec::new(12, 3, 1).unwrap();
        let row_of = |x: f32| (x as usize) / 10;
        for context in [false, true] {
            let sw = sp.windows(v.view(), &[0], &spec, context).unwrap();
            for &x in sw.train.x.iter().chain(sw.train.y.iter()) {
                assert!(row_of(x) < sp.train.end, "train sees row {}", row_of(x));
            }
            let val = sw.val.as_ref().unwrap();
            let test = sw.test.as_ref().unwrap();
            for &y in val.y.iter() {
                assert!(sp.val.contains(&row_of(y)));
            }
            for &x in val.x.iter() {
                assert!(row_of(x) < sp.val.end);
                if !context {
                    assert!(row_of(x) >= sp.val.start);
                }
            }
            for &y in test.y.iter() {
                assert!(sp.test.contains(&row_of(y)));
            }
            for &x in test.x.iter() {
                assert!(
                    row_of(x)
                        >= if context {
                            sp.test.start - 12
                        } else {
                            sp.test.start
                        }
                );
            }
            if context {
                // the first val/test samples forecast the part's first row
                assert_eq!(val.first_target_row.first(), Some(&sp.val.start));
                assert_eq!(test.first_target_row.first(), Some(&sp.test.start));
                assert_eq!(row_of(val.y[[0, 0]]), sp.val.start);
            } else {
                assert_eq!(val.first_target_row.first(), Some(&(sp.val.start + 12)));
            }
        }
        // a split that does not match the series is rejected
        assert!(sp
            .windows(v.slice(s![..150, ..]), &[0], &spec, true)
            .is_err());
        // a part too short for the window is an error naming the part
        let e = split_chronological(40, 0.1, 0.1)
            .unwrap()
            .windows(Array2::<f32>::zeros((40, 1)).view(), &[0], &spec, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("validation part"), "{e}");
    }

    /// The demo pipeline on the airline series: split, scale on train rows, window, baselines.
    #[test]
    fn real_airline_pipeline_and_baselines() {
        use crate::data::{read_csv_path, CsvOptions, Scaler, ScalerKind};
        let dir = crate::data::shared_dir().expect(
            "shared/ (data and fixtures) not found beside the repository; set STACKLSTM_SHARED",
        );
        let series = read_csv_path(
            dir.join("data/airline_passengers/airline_passengers.csv"),
            &CsvOptions::with_target(["Passengers"]),
        )
        .unwrap();
        let sp = split_chronological(series.n_rows(), 0.0, 0.2).unwrap();
        assert_eq!((sp.train.clone(), sp.test.clone()), (0..115, 115..144));
        let scaler = Scaler::fit(
            ScalerKind::MinMax,
            series.values.slice(s![sp.train.clone(), ..]),
        )
        .unwrap();
        let scaled = scaler.transform(series.values.view()).unwrap();
        let spec = WindowSpec::new(12, 1, 1).unwrap();
        let sw = sp
            .windows(scaled.view(), &series.target_idx, &spec, true)
            .unwrap();
        assert_eq!(sw.train.len(), 115 - 13 + 1);
        let test = sw.test.unwrap();
        assert_eq!(test.len(), 29);
        assert!(sw.val.is_none());
        // baselines on the test part, in passengers
        let test_rows = scaled.slice(s![sp.test.start - 12..sp.test.end, ..]);
        let truth = scaler
            .inverse_transform_y(test.y.view(), &series.target_idx)
            .unwrap();
        let naive = naive_forecast(test_rows, &series.target_idx, &spec).unwrap();
        let naive = scaler
            .inverse_transform_y(naive.view(), &series.target_idx)
            .unwrap();
        let snaive = seasonal_naive_forecast(test_rows, &series.target_idx, &spec, 12).unwrap();
        let snaive = scaler
            .inverse_transform_y(snaive.view(), &series.target_idx)
            .unwrap();
        let (rn, rs) = (
            rmse(&naive, &truth).unwrap(),
            rmse(&snaive, &truth).unwrap(),
        );
        eprintln!(
            "airline test (29 months): naive RMSE {rn:.2} MAE {:.2}; seasonal-naive(12) RMSE {rs:.2} MAE {:.2}",
            mae(&naive, &truth).unwrap(),
            mae(&snaive, &truth).unwrap()
        );
        assert!(rn > 10.0 && rs > 10.0);
        // the first test target is 1958-08's 505 passengers
        assert!((truth[[0, 0]] - series.values[[115, 0]]).abs() < 1e-3);
    }

    proptest! {
        #[test]
        fn window_counts_and_shapes(rows in 0usize..120, f in 1usize..4, window in 0usize..25,
                                    horizon in 0usize..8, stride in 0usize..9, nt in 1usize..3) {
            let v = ramp(rows, f);
            let targets: Vec<usize> = (0..nt).map(|k| k % f).collect();
            let spec = WindowSpec { window, horizon, stride };
            let r = make_windows(v.view(), &targets, &spec);
            if window == 0 || horizon == 0 || stride == 0 || rows < window + horizon {
                prop_assert!(r.is_err());
                prop_assert!(naive_forecast(v.view(), &targets, &spec).is_err());
            } else {
                let w = r.unwrap();
                let n = (rows - window - horizon) / stride + 1;
                prop_assert_eq!(w.x.shape(), &[n, window, f]);
                prop_assert_eq!(w.y.shape(), &[n, horizon * nt]);
                prop_assert_eq!(spec.count(rows).unwrap(), n);
                // the next sample would not fit
                prop_assert!(n * stride + window + horizon > rows);
                for i in 0..n {
                    for j in 0..window {
                        for c in 0..f {
                            prop_assert_eq!(w.x[[i, j, c]], (100 * (i * stride + j) + c) as f32);
                        }
                    }
                    for h in 0..horizon {
                        for (k, &t) in targets.iter().enumerate() {
                            prop_assert_eq!(w.y[[i, h * nt + k]],
                                (100 * (i * stride + window + h) + t) as f32);
                        }
                    }
                }
                let nf = naive_forecast(v.view(), &targets, &spec).unwrap();
                prop_assert_eq!(nf.shape(), w.y.shape());
                let sn = seasonal_naive_forecast(v.view(), &targets, &spec, window).unwrap();
                prop_assert_eq!(sn.shape(), w.y.shape());
                // every seasonal-naive source row lies inside the window
                for i in 0..n {
                    for &val in sn.row(i).iter() {
                        let r = (val as usize) / 100;
                        prop_assert!(r >= i * stride && r < i * stride + window);
                    }
                }
            }
        }
    }
}
