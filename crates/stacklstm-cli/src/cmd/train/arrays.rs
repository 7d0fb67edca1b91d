//! `stacklstm train arrays --x X.npy --y Y.npy --out MODEL`: Keras' `model.fit(x, y)` from the
//! command line, on samples already shaped as `[samples, timesteps, features]`. Sequences of
//! different lengths come padded to a common length with `--mask-value` at their padded steps
//! (on the left, the right or in between): a `Masking` layer then makes every recurrent layer
//! skip them, and a per-timestep loss counts the real steps only. The last `--val-frac` of the
//! samples validate, as Keras' `validation_split`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use ndarray::{s, Array3, ArrayD, Axis, Ix3};
use serde_json::json;
use stacklstm::data::prep::Preprocessing;
use stacklstm::train::Metric;
use stacklstm::Loss;

use super::options::{CommonArgs, Stack};
use super::session::Session;

/// Arguments of `train arrays`.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Data")]
pub struct Args {
    /// Inputs: a .npy array [samples, timesteps, features].
    #[arg(long)]
    pub x: PathBuf,
    /// Targets: a .npy array of shape (samples) or (samples, outputs), one per sample, or
    /// (samples, timesteps, outputs) for a target per timestep; class ids with --loss
    /// sparse-ce: (samples) or (samples, timesteps).
    #[arg(long)]
    pub y: PathBuf,
    /// The value every feature of a padded step holds: such steps are masked (Keras'
    /// Masking layer first) [default: no masking].
    #[arg(long, allow_negative_numbers = true)]
    pub mask_value: Option<f32>,
    #[command(flatten)]
    pub common: CommonArgs,

    /// Loss: a regression (mse, mae, huber with delta 1) or classes (sparse-ce: targets are
    /// class ids, the model outputs one logit per class).
    #[arg(long, value_enum, default_value_t = ArraysLoss::Mse, help_heading = "Training")]
    pub loss: ArraysLoss,
}

/// The losses of `train arrays`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ArraysLoss {
    Mse,
    Mae,
    Huber,
    SparseCe,
}

impl From<ArraysLoss> for Loss {
    fn from(l: ArraysLoss) -> Loss {
        match l {
            ArraysLoss::Mse => Loss::Mse,
            ArraysLoss::Mae => Loss::Mae,
            ArraysLoss::Huber => Loss::Huber { delta: 1.0 },
            ArraysLoss::SparseCe => Loss::SparseCategoricalCrossentropy { from_logits: true },
        }
    }
}

/// Runs `train arrays`.
pub fn run(a: &Args) -> Result<()> {
    let c = &a.common;
    let x = stacklstm::data::read_npy(&a.x)?;
    let xs = x.shape().to_vec();
    let x: Array3<f32> = x.into_dimensionality::<Ix3>().map_err(|_| {
        anyhow::anyhow!(
            "{}: expected [samples, timesteps, features], got shape {xs:?}",
            a.x.display()
        )
    })?;
    let y = stacklstm::data::read_npy(&a.y)?;
    let (n, t, f) = x.dim();
    if n == 0 || t == 0 || f == 0 {
        bail!("{}: shape {xs:?} holds no samples", a.x.display());
    }
    // Named by its index in the file (training sees shuffled batches).
    if let Some(((i, s, k), v)) = x.indexed_iter().find(|(_, v)| !v.is_finite()) {
        bail!(
            "{}: sample {i}, timestep {s}, feature {k} (0-based) is {v}; inputs must be finite (pad with --mask-value instead)",
            a.x.display()
        );
    }
    if let Some((i, v)) = y.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        bail!(
            "{}: value {v} at flat index {i} is not finite",
            a.y.display()
        );
    }
    // Named by its index in the file (training sees shuffled batches).
    if let Some(((i, s, k), v)) = x.indexed_iter().find(|(_, v)| !v.is_finite()) {
        bail!(
            "{}: sample {i}, timestep {s}, feature {k} (0-based) is {v}; inputs must be finite (pad with --mask-value instead)",
            a.x.display()
        );
    }
    if let Some((i, v)) = y.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        bail!(
            "{}: value {v} at flat index {i} is not finite",
            a.y.display()
        );
    }
    if y.shape().first() != Some(&n) {
        bail!(
            "{} has {} samples but {} has {n}: one target row per sample",
            a.y.display(),
            y.shape().first().copied().unwrap_or(0),
            a.x.display()
        );
    }
    let sparse = a.loss == ArraysLoss::SparseCe;
    // Per-sample or per-timestep targets, and the width of the model's output.
    let (y, sequence_output, outputs) = targets(a, y, t, sparse)?;
    if let Some(v) = a.mask_value {
        if !v.is_finite() {
            bail!("--mask-value must be a finite number, got {v}");
        }
    }
    let n_val = ((n as f64) * c.val_frac).round() as usize;
    if n_val >= n {
        bail!("--val-frac {} leaves no training sample of {n}", c.val_frac);
    }
    let n_train = n - n_val;
    let stack = Stack::Arrays {
        mask_value: a.mask_value,
        sequence_output,
    };
    let metrics: &[Metric] = if sparse {
        &[Metric::Accuracy]
    } else {
        &[Metric::Mae, Metric::Rmse]
    };
    let mut session = Session::open(c, a.loss.into(), metrics, || {
        Ok(c.spec(stack, Some(t), f, outputs)?.build()?)
    })?;
    let masked_steps = match a.mask_value {
        Some(v) => x
            .lanes(Axis(2))
            .into_iter()
            .filter(|l| l.iter().all(|&e| e == v))
            .count(),
        None => 0,
    };
    if !c.quiet {
        eprintln!("{}", session.model().summary());
        eprintln!(
            "{n} samples of {t} steps: {n_train} training, {n_val} validation; {masked_steps} padded steps masked"
        );
    }
    let train_x = x.slice(s![..n_train, .., ..]).to_owned();
    let train_y = y.slice_axis(Axis(0), (..n_train).into()).to_owned();
    let val = (n_val > 0).then(|| {
        (
            x.slice(s![n_train.., .., ..]).to_owned(),
            y.slice_axis(Axis(0), (n_train..).into()).to_owned(),
        )
    });
    let prep = Preprocessing::Arrays {};
    let history = session.fit(&prep, &train_x, &train_y, val)?;
    let extra = json!({
        "samples": n,
        "training_samples": n_train,
        "validation_samples": n_val,
        "masked_steps": masked_steps,
        "network": crate::cmd::report::network(session.model()),
    });
    session.finish(&prep, &history, extra)
}

/// The targets as the model's loss reads them, whether they are per timestep, and the
/// model's output width.
fn targets(a: &Args, y: ArrayD<f32>, t: usize, sparse: bool) -> Result<(ArrayD<f32>, bool, usize)> {
    let shape = y.shape().to_vec();
    let per_step = |d: usize| shape.len() > d && shape[1] == t;
    let (sequence_output, outputs) = match (sparse, shape.len()) {
        (true, 1) => (false, classes(a, &y)?),
        (true, 2) if per_step(1) => (true, classes(a, &y)?),
        (false, 1) => (false, 1),
        (false, 2) => (false, shape[1]),
        (false, 3) if per_step(2) => (true, shape[2]),
        _ => bail!(
            "{}: targets of shape {shape:?} do not fit inputs of {t} timesteps: give [samples] \
             or [samples, outputs], or [samples, {t}, outputs] per timestep ([samples] or \
             [samples, {t}] of class ids with --loss sparse-ce)",
            a.y.display()
        ),
    };
    if outputs == 0 {
        bail!(
            "{}: targets of shape {shape:?} have no outputs",
            a.y.display()
        );
    }
    let y = if !sparse && shape.len() == 1 {
        y.insert_axis(Axis(1))
    } else {
        y
    };
    Ok((y, sequence_output, outputs))
}

/// The number of classes of class-id targets (the largest id + 1), checking every id.
fn classes(a: &Args, y: &ArrayD<f32>) -> Result<usize> {
    let mut top = 0usize;
    for (i, &v) in y.iter().enumerate() {
        if !(v >= 0.0 && v.fract() == 0.0 && v < 1e6) {
            bail!(
                "{}: target {v} at flat index {i} is not a class id (a whole number >= 0)",
                a.y.display()
            );
        }
        top = top.max(v as usize);
    }
    Ok(top + 1)
}
