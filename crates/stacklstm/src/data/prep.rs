//! What a trained model needs besides its weights to be used on raw data, saved with it:
//! the columns, window and scaler of a time-series model, or the vocabulary of a language
//! model. Plus the two uses that need it: a recursive multi-step forecast past the end of
//! a series, and sampling text.

use ndarray::{Array2, Array3, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::data::scaler::Scaler;
use crate::data::text::Vocab;
use crate::data::window::WindowSpec;
use crate::error::{Error, Result};
use crate::init::Rng;
use crate::model::Model;

/// Preprocessing saved with a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Preprocessing {
    /// A time-series model over CSV columns.
    Series {
        /// Input columns, in model feature order.
        features: Vec<String>,
        /// Target columns (a subset of `features`).
        targets: Vec<String>,
        /// Index of each target within `features`.
        target_idx: Vec<usize>,
        /// Lookback, horizon and stride.
        window: WindowSpec,
        /// Scaler over `features`, fitted on the training rows.
        scaler: Scaler,
        /// Date column of the training CSV, if any (ignored as a feature).
        date_column: Option<String>,
    },
    /// A model trained on arrays given as they are (`[samples, timesteps, features]`,
    /// padded steps holding the `Masking` layer's value): nothing to apply.
    Arrays {},
    /// A character- or word-level language model.
    Text {
        /// The vocabulary.
        vocab: Vocab,
        /// Truncated-BPTT length used in training.
        seq_len: usize,
    },
}

/// Forecasts `steps` values of every target past the end of `history` (`[rows, features]`,
/// raw, unscaled), feeding each prediction back as input. Returns `[steps, n_targets]`, raw.
///
/// Needs every feature to be a target (a model with extra input columns cannot extend them
/// into the future) and at least `window` rows of history.
///
/// # Errors
/// [`Error::InvalidInput`] when the conditions above do not hold, or on a model error.
pub fn forecast_recursive(
    model: &Model,
    prep: &Preprocessing,
    history: ArrayView2<'_, f32>,
    steps: usize,
) -> Result<Array2<f32>> {
    let Preprocessing::Series {
        features,
        targets,
        target_idx,
        window,
        scaler,
        ..
    } = prep
    else {
        return Err(Error::input(
            "forecast needs a time-series model (this one is a language model)",
        ));
    };
    if targets.len() != features.len() {
        let extra: Vec<&str> = features
            .iter()
            .filter(|f| !targets.contains(f))
            .map(String::as_str)
            .collect();
        return Err(Error::input(format!(
            "a recursive forecast feeds predictions back as inputs, so every input column must be a target; {} cannot be extended into the future",
            extra.join(", ")
        )));
    }
    let (w, h, nt) = (window.window, window.horizon, targets.len());
    if history.nrows() < w {
        return Err(Error::input(format!(
            "forecast needs at least {w} rows of history (the window), got {}",
            history.nrows()
        )));
    }
    if history.ncols() != features.len() {
        return Err(Error::input(format!(
            "history has {} columns, the model was trained on {}",
            history.ncols(),
            features.len()
        )));
    }
    let scaled = scaler.transform(history.slice(ndarray::s![history.nrows() - w.., ..]))?;
    let mut buf: Vec<Vec<f32>> = scaled.rows().into_iter().map(|r| r.to_vec()).collect();
    let mut out: Vec<Vec<f32>> = Vec::with_capacity(steps);
    let mut ws = crate::model::Workspace::default();
    while out.len() < steps {
        let start = buf.len() - w;
        let x = Array3::from_shape_fn((1, w, nt), |(_, t, f)| buf[start + t][f]);
        let y = model.predict_with(x.view(), &mut ws)?;
        let flat: Vec<f32> = y.iter().copied().collect();
        if flat.len() != h * nt {
            return Err(Error::input(format!(
                "the model outputs {} values, the preprocessing expects horizon {h} x {nt} targets",
                flat.len()
            )));
        }
        for k in 0..h {
            // Step-major layout: target j of step k at k * nt + j; map into feature order.
            let mut row = vec![0.0; nt];
            for (j, &ti) in target_idx.iter().enumerate() {
                row[ti] = flat[k * nt + j];
            }
            buf.push(row.clone());
            out.push(row);
            if out.len() == steps {
                break;
            }
        }
    }
    let scaled_out = Array2::from_shape_fn((steps, nt), |(i, j)| out[i][j]);
    scaler.inverse_transform(scaled_out.view())
}

/// Picks the next token from logits: `argmax` at temperature 0, else a sample from
/// `softmax(logits / temperature)` drawn with `rng`.
///
/// # Errors
/// [`Error::InvalidInput`] for a negative or non-finite temperature or empty logits.
pub fn sample_token(logits: &[f32], temperature: f32, rng: &mut Rng) -> Result<u32> {
    if logits.is_empty() {
        return Err(Error::input("no logits to sample from"));
    }
    if !(temperature >= 0.0 && temperature.is_finite()) {
        return Err(Error::input(format!(
            "temperature must be >= 0, got {temperature}"
        )));
    }
    let argmax = logits
        .iter()
        .enumerate()
        .fold((0usize, f32::NEG_INFINITY), |a, (i, &v)| {
            if v > a.1 {
                (i, v)
            } else {
                a
            }
        })
        .0;
    if temperature == 0.0 {
        return Ok(argmax as u32);
    }
    let m = logits[argmax];
    let p: Vec<f64> = logits
        .iter()
        .map(|&z| (f64::from(z - m) / f64::from(temperature)).exp())
        .collect();
    let total: f64 = p.iter().sum();
    let mut u = rng.next_f64() * total;
    for (i, pi) in p.iter().enumerate() {
        if u < *pi {
            return Ok(i as u32);
        }
        u -= pi;
    }
    Ok(argmax as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dense, Lstm, Sequential};

    #[test]
    fn sampling_respects_temperature() {
        let mut rng = Rng::new(1);
        assert_eq!(sample_token(&[0.1, 3.0, 0.2], 0.0, &mut rng).unwrap(), 1);
        let mut counts = [0usize; 3];
        for _ in 0..3000 {
            counts[sample_token(&[0.0, 1.0, 0.0], 1.0, &mut rng).unwrap() as usize] += 1;
        }
        // p(1) = e / (e + 2) = 0.576.
        let p1 = counts[1] as f64 / 3000.0;
        assert!((p1 - 0.576).abs() < 0.03, "{p1}");
        assert!(sample_token(&[1.0], -1.0, &mut rng).is_err());
        assert!(sample_token(&[], 1.0, &mut rng).is_err());
    }

    #[test]
    fn recursive_forecast_feeds_predictions_back() {
        // A model whose output is (almost) a function of the last input: check lengths,
        // scaling round trip, and that later steps depend on earlier predictions.
        let m = Sequential::new()
            .input_shape(3, 1)
            .add(Lstm::new(2))
            .add(Dense::new(2))
            .seed(1)
            .build()
            .unwrap();
        let prep = Preprocessing::Series {
            features: vec!["v".into()],
            targets: vec!["v".into()],
            target_idx: vec![0],
            window: WindowSpec::new(3, 2, 1).unwrap(),
            scaler: Scaler::MinMax {
                min: vec![0.0],
                max: vec![10.0],
            },
            date_column: None,
        };
        let hist = Array2::from_shape_vec((4, 1), vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let f = forecast_recursive(&m, &prep, hist.view(), 5).unwrap();
        assert_eq!(f.dim(), (5, 1));
        // First two values come from one call on the scaled last window.
        let x = Array3::from_shape_vec((1, 3, 1), vec![0.2, 0.3, 0.4]).unwrap();
        let y = m.predict(&x).unwrap();
        assert!((f[[0, 0]] - y[[0, 0]] * 10.0).abs() < 1e-5);
        assert!((f[[1, 0]] - y[[0, 1]] * 10.0).abs() < 1e-5);
        // Too little history, or a language model, are errors.
        assert!(forecast_recursive(&m, &prep, hist.slice(ndarray::s![..2, ..]), 3).is_err());
        let mut exo = prep.clone();
        if let Preprocessing::Series { features, .. } = &mut exo {
            features.push("temperature".into());
        }
        let err = forecast_recursive(&m, &exo, hist.view(), 3)
            .unwrap_err()
            .to_string();
        assert!(err.contains("temperature"), "{err}");
    }
}
