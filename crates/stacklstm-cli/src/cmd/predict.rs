//! `stacklstm predict --model M --input X.npy --output Y.npy`: inference on a batch.
//!
//! Input: a `.npy` array `[batch, timesteps, features]` (any float or int dtype, converted to
//! f32), or a headerless numeric `.csv` with one sample per row holding its `timesteps ×
//! features` values row-major (needs a model with a fixed number of timesteps). Output: `.npy`
//! float32, or `.csv` (one sample per row, flattened) by the output's extension; written
//! atomically.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ndarray::{Array3, ArrayD, Ix3};
use stacklstm::Model;

/// Arguments of `predict`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model file: native .safetensors, .keras, .weights.h5 (with --arch) or a PyTorch state_dict.
    #[arg(long)]
    pub model: PathBuf,
    /// Architecture for weight-only files: a JSON spec or a .keras / native model file [default: none].
    #[arg(long)]
    pub arch: Option<PathBuf>,
    /// Input batch: .npy [batch, timesteps, features] or .csv (one flattened sample per row).
    #[arg(long)]
    pub input: PathBuf,
    /// Output file: .npy (float32) or .csv by extension (replaced atomically).
    #[arg(long)]
    pub output: PathBuf,
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

/// Loads the model and the input, predicts, writes the output.
pub fn run(a: &Args) -> Result<()> {
    super::check_output(&a.output)?;
    let model = super::load(&a.model, a.arch.as_ref())?.model;
    let x: Array3<f32> = if is_csv(&a.input) {
        read_csv_input(&a.input, &model)?
    } else {
        let x = stacklstm::data::read_npy(&a.input)
            .with_context(|| format!("reading input {}", a.input.display()))?;
        let shape = x.shape().to_vec();
        x.into_dimensionality::<Ix3>().map_err(|_| {
            anyhow::anyhow!(
                "input {}: expected a 3-D array [batch, timesteps, features], got shape {shape:?}",
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
    let y = model
        .predict(&x)
        .with_context(|| format!("predicting on {}", a.input.display()))?;
    if is_csv(&a.output) {
        write_csv_output(&a.output, &y)
    } else {
        stacklstm::data::write_npy(&a.output, &y).map_err(anyhow::Error::from)
    }
    .with_context(|| format!("writing {}", a.output.display()))?;
    super::print(&format!("wrote {} {:?}", a.output.display(), y.shape()))
}
