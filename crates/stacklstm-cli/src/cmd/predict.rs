//! `stacklstm predict --model M --input X.npy --output Y.npy`: inference on a batch.
//!
//! Input: a `.npy` array `[batch, timesteps, features]` (any float or int dtype, converted to
//! f32; `[batch, timesteps]` of token ids for a model that starts with an Embedding), padded
//! steps included for a model that masks them (`Masking`, `Embedding(mask_zero)`), or a headerless numeric `.csv` with one sample per row holding its `timesteps ×
//! features` values row-major (needs a model with a fixed number of timesteps). Output: `.npy`
//! float32, or `.csv` (one sample per row, flattened) by the output's extension; written
//! atomically.
//!
//! A time-series model written by `stacklstm train` works in the data's units: its saved
//! scaler is applied to the input and undone on the output (`--no-scaling` feeds arrays as
//! they are). Given a CSV *with a header* holding the model's columns, it predicts every
//! window of the file, one output row per window.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ndarray::{Array3, ArrayD, Ix3};
use stacklstm::data::prep::Preprocessing;
use stacklstm::Model;

/// Arguments of `predict`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model file: native .safetensors, .keras, .weights.h5 (with --arch) or a PyTorch state_dict (nn.LSTM, nn.GRU, also bidirectional; nn.Linear).
    #[arg(long)]
    pub model: PathBuf,
    /// Architecture for weight-only files: a JSON spec or a .keras / native model file [default: none].
    #[arg(long)]
    pub arch: Option<PathBuf>,
    /// Input batch: .npy [batch, timesteps, features] ([batch, timesteps] token ids for an Embedding model; padded steps as the model masks them) or .csv (one flattened sample per row).
    #[arg(long)]
    pub input: PathBuf,
    /// Output file: .npy (float32) or .csv by extension (replaced atomically).
    #[arg(long)]
    pub output: PathBuf,
    /// Feed the input to the network as it is, skipping the scaling a series model was
    /// trained with (by default inputs are in the data's units and outputs are returned in them).
    #[arg(long)]
    pub no_scaling: bool,
}

fn is_csv(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

/// Reads a headerless CSV of flattened samples into `[batch, T, F]`.
fn read_csv_input(path: &Path, model: &Model) -> Result<Array3<f32>> {
    let (t, f) = model.input_shape();
    let Some(t) = t else {
        bail!(
            "{}: CSV input needs a model with a fixed number of timesteps; use .npy",
            path.display()
        );
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut data = Vec::new();
    let mut rows = 0;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let vals: Vec<f32> = line
            .split(',')
            .enumerate()
            .map(|(k, c)| match c.trim().parse::<f32>() {
                Ok(v) if v.is_finite() => Ok(v),
                Ok(_) | Err(_) => Err(anyhow::anyhow!(
                    "{}: line {}, value {}: '{}' is not a finite number",
                    path.display(),
                    i + 1,
                    k + 1,
                    c.trim()
                )),
            })
            .collect::<Result<_>>()?;
        if vals.len() != t * f {
            bail!(
                "{}: line {}: expected {} values (timesteps {t} x features {f}), found {}",
                path.display(),
                i + 1,
                t * f,
                vals.len()
            );
        }
        data.extend(vals);
        rows += 1;
    }
    Ok(Array3::from_shape_vec((rows, t, f), data)?)
}

fn write_csv_output(path: &Path, y: &ArrayD<f32>) -> Result<()> {
    let b = y.shape().first().copied().unwrap_or(0);
    let per = y.len().checked_div(b).unwrap_or(0);
    let flat: Vec<f32> = y.iter().copied().collect();
    let mut out = String::new();
    for row in flat.chunks(per.max(1)) {
        let cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    Ok(stacklstm::data::write_atomic(path, out.as_bytes())?)
}

/// Whether a CSV starts with a header row (a first cell that is not a number).
fn has_header(path: &Path) -> Result<bool> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let cell = first
        .split(',')
        .next()
        .unwrap_or("")
        .trim()
        .trim_start_matches('\u{feff}');
    Ok(!cell.is_empty() && cell.parse::<f64>().is_err())
}

/// A series model on a CSV with a header: every window of the file, outputs in the data's
/// units, one row per window: the row (1-based, data rows) of its first predicted step, then
/// the predictions, step-major (`<target>_t+1, ...`).
fn predict_series_csv(a: &Args, model: &stacklstm::Model, prep: &Preprocessing) -> Result<()> {
    let Preprocessing::Series {
        target_idx,
        targets,
        window: spec,
        scaler,
        ..
    } = prep
    else {
        bail!(
            "{}: a CSV with a header needs a time-series model",
            a.input.display()
        );
    };
    let s = super::prep::read_series(&a.input, prep, stacklstm::data::FillMode::Error)?;
    let scaled = scaler.transform(s.values.view())?;
    let w = stacklstm::data::window::make_windows(scaled.view(), target_idx, spec)
        .with_context(|| format!("{}: windowing {} rows", a.input.display(), s.n_rows()))?;
    let y = model
        .predict_batched(&w.x, 256)?
        .into_dimensionality::<ndarray::Ix2>()?;
    let y = scaler.inverse_transform_y(y.view(), target_idx)?;
    if is_csv(&a.output) {
        let mut header = vec!["row".to_string()];
        for h in 1..=spec.horizon {
            for t in targets {
                header.push(format!("{t}_t+{h}"));
            }
        }
        let mut out = header.join(",") + "\n";
        for (row, first) in y.rows().into_iter().zip(&w.first_target_row) {
            let cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
            out.push_str(&format!("{},{}\n", first + 1, cells.join(",")));
        }
        stacklstm::data::write_atomic(&a.output, out.as_bytes())?;
    } else {
        stacklstm::data::write_npy(&a.output, &y)?;
    }
    super::print(&format!("wrote {} {:?}", a.output.display(), y.shape()))
}

/// Loads the model and the input, predicts, writes the output.
pub fn run(a: &Args) -> Result<()> {
    super::check_output(&a.output)?;
    let loaded = super::load(&a.model, a.arch.as_ref())?;
    let model = loaded.model;
    let prep: Option<Preprocessing> = match loaded.preprocessing {
        Some(p) if !a.no_scaling => Some(
            serde_json::from_value(p)
                .with_context(|| format!("{}: reading its preprocessing", a.model.display()))?,
        ),
        _ => None,
    };
    if let Some(p @ Preprocessing::Series { .. }) = &prep {
        if is_csv(&a.input) && has_header(&a.input)? {
            return predict_series_csv(a, &model, p);
        }
    }
    let x: Array3<f32> = if is_csv(&a.input) {
        read_csv_input(&a.input, &model)?
    } else {
        let x = stacklstm::data::read_npy(&a.input)
            .with_context(|| format!("reading input {}", a.input.display()))?;
        let shape = x.shape().to_vec();
        // Token ids may come as Keras takes them, `[batch, timesteps]`.
        let token_ids = model
            .spec()
            .layers
            .first()
            .is_some_and(|l| l.config().takes_token_ids());
        let x = if token_ids && x.ndim() == 2 {
            x.insert_axis(ndarray::Axis(2))
        } else {
            x
        };
        x.into_dimensionality::<Ix3>().map_err(|_| {
            let want = if token_ids {
                "[batch, timesteps] of token ids (or [batch, timesteps, 1])"
            } else {
                "a 3-D array [batch, timesteps, features]"
            };
            anyhow::anyhow!(
                "input {}: expected {want}, got shape {shape:?}",
                a.input.display()
            )
        })?
    };
    if x.dim().0 == 0 {
        bail!("{}: the input holds no samples", a.input.display());
    }
    if let Some(((b, t, f), v)) = x.indexed_iter().find(|(_, v)| !v.is_finite()) {
        bail!(
            "{}: sample {b}, timestep {t}, feature {f} (0-based) is {v}; the input must be finite",
            a.input.display()
        );
    }
    // Checked before scaling, whose error would speak of the scaler, not the input.
    let (want_t, want_f) = model.input_shape();
    let (b, t, f) = x.dim();
    if f != want_f || want_t.is_some_and(|wt| wt != t) {
        let wt = want_t.map_or("timesteps".to_string(), |wt| wt.to_string());
        bail!(
            "{}: expected shape [batch, {wt}, {want_f}] (the model's input), got [{b}, {t}, {f}]",
            a.input.display()
        );
    }
    // A series model takes and returns the data's units: apply its scaler, then undo it.
    let x = match &prep {
        Some(Preprocessing::Series { scaler, .. }) => {
            let (b, t, f) = x.dim();
            let flat = x.into_shape_with_order((b * t, f))?;
            scaler
                .transform(flat.view())
                .with_context(|| format!("scaling {}", a.input.display()))?
                .into_shape_with_order((b, t, f))?
        }
        _ => x,
    };
    let y = model
        .predict(&x)
        .with_context(|| format!("predicting on {}", a.input.display()))?;
    let y = match &prep {
        Some(Preprocessing::Series {
            scaler, target_idx, ..
        }) if y.ndim() == 2 => scaler
            .inverse_transform_y(y.view().into_dimensionality::<ndarray::Ix2>()?, target_idx)?
            .into_dyn(),
        _ => y,
    };
    if is_csv(&a.output) {
        write_csv_output(&a.output, &y)
    } else {
        stacklstm::data::write_npy(&a.output, &y).map_err(anyhow::Error::from)
    }
    .with_context(|| format!("writing {}", a.output.display()))?;
    super::print(&format!("wrote {} {:?}", a.output.display(), y.shape()))
}
