//! `stacklstm train --data FILE --out MODEL`: trains a stacked LSTM on a CSV time series
//! (default) or on a text (`--text`, a character- or word-level language model) and saves
//! it, with its preprocessing, in the native format.
//!
//! Ctrl-C stops training at the next batch boundary: the training state (weights, optimizer,
//! position in the epoch) goes to the `--checkpoint` file, or next to `--out` as
//! `<out stem>.interrupted.safetensors`, and the command exits with code 130. `--resume` on
//! that file continues where it stopped. A second Ctrl-C exits at once.

use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use ndarray::s;
use serde_json::json;
use stacklstm::data::prep::Preprocessing;
use stacklstm::data::text::{Vocab, VocabKind};
use stacklstm::data::window::{self, split_chronological, WindowSpec};
use stacklstm::data::{CsvOptions, FillMode, Scaler, ScalerKind};
use stacklstm::optim::OptimizerConfig;
use stacklstm::train::{
    EarlyStopping, Fit, History, Interruption, Metric, ModelCheckpoint, StreamFit,
};
use stacklstm::{
    Activation, Adagrad, Adam, AdamW, Arch, Dense, Embedding, LayerSpec, Loss, Lstm, Model,
    RmsProp, Sequential, Sgd, Trainer,
};

use super::progress::Progress;

/// Arguments of `train`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Training data: a CSV time series with a header row, or a UTF-8 text with --text.
    #[arg(long)]
    pub data: PathBuf,
    /// Where to write the trained model (native .safetensors, replaced atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Train a language model on a text file instead of a CSV series.
    #[arg(long)]
    pub text: bool,

    /// CSV: target column(s) to predict, comma-separated (required for CSV).
    #[arg(long, value_delimiter = ',')]
    pub target: Vec<String>,
    /// CSV: input columns, comma-separated [default: every numeric column].
    #[arg(long, value_delimiter = ',')]
    pub features: Vec<String>,
    /// CSV: a date column, ignored as a feature [default: none].
    #[arg(long)]
    pub date_column: Option<String>,
    /// CSV: sort rows by the date column before use.
    #[arg(long)]
    pub sort_by_date: bool,
    /// CSV: missing values: error, ffill, interpolate or drop.
    #[arg(long, default_value = "error")]
    pub fill: FillMode,
    /// CSV: lookback window in rows.
    #[arg(long, default_value_t = 24)]
    pub window: usize,
    /// CSV: steps ahead to predict.
    #[arg(long, default_value_t = 1)]
    pub horizon: usize,
    /// CSV: rows between consecutive windows.
    #[arg(long, default_value_t = 1)]
    pub stride: usize,
    /// Fraction held out (chronologically) for validation.
    #[arg(long, default_value_t = 0.1)]
    pub val_frac: f64,
    /// CSV: fraction held out at the end for the test report.
    #[arg(long, default_value_t = 0.2)]
    pub test_frac: f64,
    /// CSV: scaling fitted on the training rows: minmax, standard or none.
    #[arg(long, default_value = "standard")]
    pub scaler: ScalerKind,
    /// CSV: season length of the seasonal-naive baseline [default: min(12, window)].
    #[arg(long)]
    pub season: Option<usize>,
    /// CSV: loss: mse, mae or huber.
    #[arg(long, default_value = "mse")]
    pub loss: String,

    /// Text: char or word tokens.
    #[arg(long, default_value = "char")]
    pub level: String,
    /// Text: truncated-BPTT length (timesteps per batch).
    #[arg(long, default_value_t = 50)]
    pub seq_len: usize,
    /// Text: embedding width.
    #[arg(long, default_value_t = 64)]
    pub embedding: usize,

    /// LSTM units per layer, comma-separated; all but the last return sequences (text: all).
    #[arg(long, value_delimiter = ',', default_value = "50,50")]
    pub layers: Vec<usize>,
    /// Hidden Dense layers (relu) between the LSTMs and the output, comma-separated [default: none].
    #[arg(long, value_delimiter = ',')]
    pub dense: Vec<usize>,
    /// LSTM input dropout rate.
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f32,
    /// LSTM recurrent dropout rate.
    #[arg(long, default_value_t = 0.0)]
    pub recurrent_dropout: f32,
    /// Architecture file (JSON or TOML Sequential spec, or a model file) instead of the flags above [default: none].
    #[arg(long)]
    pub arch: Option<PathBuf>,

    /// Optimizer: adam, adamw, sgd, rmsprop or adagrad.
    #[arg(long, default_value = "adam")]
    pub optimizer: String,
    /// Learning rate [default: the optimizer's Keras default].
    #[arg(long)]
    pub lr: Option<f32>,
    /// SGD/RMSprop momentum.
    #[arg(long, default_value_t = 0.0)]
    pub momentum: f32,
    /// Clip each gradient tensor to this L2 norm [default: off].
    #[arg(long)]
    pub clipnorm: Option<f32>,
    /// Clip all gradients together to this L2 norm [default: off].
    #[arg(long)]
    pub global_clipnorm: Option<f32>,
    /// Clip each gradient element to [-v, v] [default: off].
    #[arg(long)]
    pub clipvalue: Option<f32>,
    /// Passes over the training data.
    #[arg(long, default_value_t = 20)]
    pub epochs: usize,
    /// Samples per update (text: parallel lanes of the stream).
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Stop after this many epochs without validation improvement, keeping the best weights [default: off].
    #[arg(long)]
    pub patience: Option<usize>,
    /// Seed of initialisation, shuffling and dropout.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Checkpoint file written during training (with optimizer state), and on Ctrl-C [default: none; Ctrl-C then writes m.interrupted.safetensors for --out m.safetensors].
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Write the checkpoint every N epochs.
    #[arg(long, default_value_t = 1)]
    pub checkpoint_every: usize,
    /// Resume from a checkpoint written by --checkpoint or Ctrl-C (same data and options; --lr overrides its learning rate) [default: none].
    #[arg(long)]
    pub resume: Option<PathBuf>,

    /// Plot the loss curves to this .png or .svg [default: none].
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// No progress output on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Print the results as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The optimizer the flags describe.
pub fn optimizer(a: &Args) -> Result<OptimizerConfig> {
    let mut cfg: OptimizerConfig = match a.optimizer.as_str() {
        "adam" => Adam::default().into(),
        "adamw" => AdamW::default().into(),
        "sgd" => Sgd::default().momentum(a.momentum).into(),
        "rmsprop" => RmsProp::default().momentum(a.momentum).into(),
        "adagrad" => Adagrad::default().into(),
        other => {
            bail!("unknown optimizer '{other}'; expected adam, adamw, sgd, rmsprop or adagrad")
        }
    };
    if let Some(lr) = a.lr {
        cfg.learning_rate = lr;
    }
    cfg.common.clipnorm = a.clipnorm;
    cfg.common.global_clipnorm = a.global_clipnorm;
    cfg.common.clipvalue = a.clipvalue;
    cfg.validate()?;
    Ok(cfg)
}

fn series_loss(name: &str) -> Result<Loss> {
    Ok(match name {
        "mse" => Loss::Mse,
        "mae" => Loss::Mae,
        "huber" => Loss::Huber { delta: 1.0 },
        other => bail!("unknown loss '{other}'; expected mse, mae or huber"),
    })
}

/// The model the flags (or --arch) describe for input `(timesteps, features)` and `outputs`
/// values per sample.
fn build_spec(
    a: &Args,
    timesteps: Option<usize>,
    features: usize,
    outputs: usize,
    text: bool,
) -> Result<Sequential> {
    if let Some(p) = &a.arch {
        let arch =
            Arch::from_path(p).with_context(|| format!("reading architecture {}", p.display()))?;
        let mut spec = arch.spec;
        spec.input_shape = Some((timesteps, features));
        spec.seed = a.seed;
        return Ok(spec);
    }
    if a.layers.is_empty() || a.layers.contains(&0) {
        bail!("--layers needs at least one LSTM with units >= 1, e.g. --layers 50,50");
    }
    let mut spec = Sequential::new().seed(a.seed);
    spec.input_shape = Some((timesteps, features));
    if text {
        spec = spec.add(Embedding::new(outputs, a.embedding));
    }
    let n = a.layers.len();
    for (i, &u) in a.layers.iter().enumerate() {
        spec = spec.add(
            Lstm::new(u)
                .return_sequences(text || i + 1 < n)
                .stateful(text)
                .dropout(a.dropout)
                .recurrent_dropout(a.recurrent_dropout),
        );
    }
    for &d in &a.dense {
        spec = spec.add(Dense::new(d).activation(Activation::Relu));
    }
    Ok(spec.add(Dense::new(outputs)))
}

/// The results of a training run, printed at the end.
#[derive(Debug, serde::Serialize)]
struct Report {
    model: String,
    epochs_run: usize,
    final_loss: Option<f64>,
    final_val_loss: Option<f64>,
    #[serde(flatten)]
    extra: serde_json::Value,
}

/// The last checkpoint known good in this run: `(path, epochs done)`. Starts as the
/// `--resume` file and follows every checkpoint written, so a stale file left at the
/// `--checkpoint` path by an earlier run is never named.
type LastGood = Arc<Mutex<Option<(PathBuf, usize)>>>;

/// A checkpoint saver for `ModelCheckpoint`: weights, preprocessing and training state.
fn checkpoint_saver(prep: serde_json::Value, last_good: LastGood) -> stacklstm::train::Saver {
    Box::new(move |t: &Trainer, p: &Path, epochs_done: usize| {
        let state = t.training_state(epochs_done);
        stacklstm::io::native::save_checkpoint(p, t.model(), Some(&prep), Some(&state))?;
        *lock(&last_good) = Some((p.to_path_buf(), epochs_done));
        Ok(())
    })
}

/// The last-good record, even if a panic elsewhere poisoned its lock.
fn lock(g: &LastGood) -> std::sync::MutexGuard<'_, Option<(PathBuf, usize)>> {
    g.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Where training resumes: epoch and batches of it already done.
#[derive(Debug, Clone, Copy, Default)]
struct Start {
    epoch: usize,
    batch: usize,
}

/// Restores model and training state from `--resume`; returns the model and where to start.
/// `--lr`, when given, replaces the checkpoint's learning rate (to continue after a
/// divergence, say).
fn resume(path: &Path, lr: Option<f32>) -> Result<(Trainer, Start)> {
    let file = stacklstm::io::native::load(path)
        .with_context(|| format!("loading checkpoint {}", path.display()))?;
    let Some(training) = file.training else {
        bail!("{}: a model file without training state; --resume needs a file written by --checkpoint", path.display());
    };
    let (mut trainer, epoch, batch) = Trainer::restore_at(file.model, &training)
        .with_context(|| format!("restoring the training state of {}", path.display()))?;
    if let Some(lr) = lr {
        let opt = trainer.optimizer_mut();
        let mut cfg = opt.config;
        cfg.learning_rate = lr;
        cfg.validate()?;
        opt.set_learning_rate(lr);
    }
    Ok((trainer, Start { epoch, batch }))
}

/// Adds what to do next to a divergence error: resume from the last good checkpoint, or
/// lower the learning rate.
fn divergence_hint(e: anyhow::Error, a: &Args, last_good: &LastGood) -> anyhow::Error {
    let diverged = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<stacklstm::Error>(),
            Some(stacklstm::Error::Diverged { .. })
        )
    });
    if !diverged {
        return e;
    }
    let hint = match (&*lock(last_good), &a.checkpoint) {
        (Some((p, epochs)), _) => format!(
            "the last good checkpoint is {} (after epoch {epochs}); continue from it with --resume {} and a lower --lr",
            p.display(),
            p.display()
        ),
        (None, Some(p)) => format!(
            "no checkpoint was written to {} before it, try a lower --lr or gradient clipping (--clipnorm)",
            p.display()
        ),
        (None, None) => "try a lower --lr or gradient clipping (--clipnorm)".to_string(),
    };
    // The divergence first (epoch and step), then what to do about it.
    anyhow::anyhow!("{}; {hint}", super::one_line(&e))
}

/// A flag that Ctrl-C (SIGINT) sets; training checks it before every batch. A second Ctrl-C,
/// or one after training ended (when the flag is set again, see [`arm_ctrl_c_exit`]), exits
/// at once with code 130.
fn stop_on_ctrl_c() -> Result<Arc<AtomicBool>> {
    use signal_hook::consts::SIGINT;
    let flag = Arc::new(AtomicBool::new(false));
    // The exit must be registered first: it sees the flag as it was before this signal.
    signal_hook::flag::register_conditional_shutdown(SIGINT, super::EXIT_INTERRUPTED, flag.clone())
        .context("installing the Ctrl-C handler")?;
    signal_hook::flag::register(SIGINT, flag.clone()).context("installing the Ctrl-C handler")?;
    Ok(flag)
}

/// After training: Ctrl-C exits at once again (nothing is left worth a checkpoint).
fn arm_ctrl_c_exit(flag: &AtomicBool) {
    flag.store(true, Ordering::SeqCst);
}

/// Where Ctrl-C saves the training state: `--checkpoint`, or `<out stem>.interrupted.safetensors`
/// next to `--out`.
fn interrupted_path(a: &Args) -> PathBuf {
    match &a.checkpoint {
        Some(p) => p.clone(),
        None => a.out.with_extension("interrupted.safetensors"),
    }
}

/// Saves the training state of an interrupted run and returns the error that makes the
/// command exit with code 130.
fn save_interrupted(
    a: &Args,
    trainer: &Trainer,
    prep: &Preprocessing,
    at: Interruption,
    batches: Option<usize>,
) -> Result<()> {
    let path = interrupted_path(a);
    let state = trainer.training_state_at(at.epoch, at.batches_done);
    let prep = serde_json::to_value(prep)?;
    stacklstm::io::native::save_checkpoint(&path, trainer.model(), Some(&prep), Some(&state))
        .with_context(|| {
            format!(
                "interrupted at epoch {}, but writing the checkpoint {} failed",
                at.epoch + 1,
                path.display()
            )
        })?;
    let of = batches.map_or(String::new(), |n| format!(" of {n}"));
    let whence = if a.checkpoint.is_some() {
        String::new()
    } else {
        " (no --checkpoint given)".to_string()
    };
    Err(super::Interrupted(format!(
        "interrupted at epoch {}, batch {}{of}: training state saved to {}{whence}; continue with --resume {}",
        at.epoch + 1,
        at.batches_done,
        path.display(),
        path.display()
    ))
    .into())
}

/// Runs `train`.
pub fn run(a: &Args) -> Result<()> {
    super::check_output(&a.out)?;
    if let Some(p) = &a.checkpoint {
        super::check_output(p)?;
    }
    if let Some(p) = &a.plot {
        super::check_plot(p)?;
    }
    if a.text {
        train_text(a)
    } else {
        train_series(a)
    }
}

fn finish(
    a: &Args,
    model: &Model,
    prep: &Preprocessing,
    history: &History,
    extra: serde_json::Value,
) -> Result<()> {
    let prep_json = serde_json::to_value(prep)?;
    stacklstm::io::native::save(&a.out, model, Some(&prep_json))
        .with_context(|| format!("writing {}", a.out.display()))?;
    if let Some(p) = &a.plot {
        let loss = history.series("loss");
        let val = history.series("val_loss");
        let chart = stacklstm::plot::Chart::loss_curves(
            "training loss",
            &loss,
            (!val.is_empty()).then_some(val.as_slice()),
        );
        chart
            .save(p)
            .with_context(|| format!("writing plot {}", p.display()))?;
    }
    let last = history.epochs.last();
    let report = Report {
        model: a.out.display().to_string(),
        epochs_run: history.epochs.len(),
        final_loss: last.map(|e| e.loss),
        final_val_loss: last.and_then(|e| e.val_loss),
        extra,
    };
    if a.json {
        super::print(&serde_json::to_string_pretty(&report)?)?;
    } else {
        let mut lines = vec![format!("saved {}", report.model)];
        if let Some(l) = report.final_loss {
            lines.push(format!("final loss {l:.6}"));
        }
        if let Some(v) = report.final_val_loss {
            lines.push(format!("final val_loss {v:.6}"));
        }
        if report.extra.as_object().is_some_and(|o| !o.is_empty()) {
            lines.push(super::report::render(&report.extra));
        }
        super::print(&lines.join("\n"))?;
    }
    Ok(())
}

fn callbacks(
    a: &Args,
    prep: &Preprocessing,
    last_good: &LastGood,
) -> Result<Vec<Box<dyn stacklstm::train::Callback>>> {
    let mut cbs: Vec<Box<dyn stacklstm::train::Callback>> = vec![Box::new(Progress::new(a.quiet))];
    if let Some(p) = a.patience {
        cbs.push(Box::new(
            EarlyStopping::new("val_loss")
                .patience(p)
                .restore_best_weights(true),
        ));
    }
    if let Some(path) = &a.checkpoint {
        if a.checkpoint_every == 0 {
            bail!("--checkpoint-every must be at least 1");
        }
        let saver = checkpoint_saver(serde_json::to_value(prep)?, last_good.clone());
        cbs.push(Box::new(
            ModelCheckpoint::new(path, saver)
                .monitor("loss")
                .every(a.checkpoint_every),
        ));
    }
    Ok(cbs)
}

fn train_series(a: &Args) -> Result<()> {
    if a.target.is_empty() {
        bail!("--target COL is required for a CSV series (or pass --text for a language model)");
    }
    let opts = CsvOptions {
        target: a.target.clone(),
        features: (!a.features.is_empty()).then(|| a.features.clone()),
        date_column: a.date_column.clone(),
        sort_by_date: a.sort_by_date,
        fill: a.fill,
    };
    let series = stacklstm::data::read_csv_path(&a.data, &opts)?;
    let spec = WindowSpec::new(a.window, a.horizon, a.stride)?;
    let split = split_chronological(series.n_rows(), a.val_frac, a.test_frac)?;
    let scaler = Scaler::fit(a.scaler, series.values.slice(s![split.train.clone(), ..]))?;
    let scaled = scaler.transform(series.values.view())?;
    let windows = split
        .windows(scaled.view(), &series.target_idx, &spec, true)
        .with_context(|| format!("{}: windowing {} rows", a.data.display(), series.n_rows()))?;
    let nt = series.target_idx.len();
    let prep = Preprocessing::Series {
        features: series.columns.clone(),
        targets: series
            .target_names()
            .iter()
            .map(|s| s.to_string())
            .collect(),
        target_idx: series.target_idx.clone(),
        window: spec,
        scaler: scaler.clone(),
        date_column: a.date_column.clone(),
    };
    let (mut model, start) = match &a.resume {
        Some(p) => resume(p, a.lr)?,
        None => {
            let s = build_spec(
                a,
                Some(a.window),
                series.n_features(),
                a.horizon * nt,
                false,
            )?;
            let m = s.build()?.compile_with_metrics(
                series_loss(&a.loss)?,
                optimizer(a)?,
                &[Metric::Mae, Metric::Rmse],
            )?;
            (m, Start::default())
        }
    };
    if model.output_shape().seq || model.output_shape().width != a.horizon * nt {
        bail!(
            "the model outputs {} values per sample, but --horizon {} x {nt} targets needs {}",
            model.output_shape().width,
            a.horizon,
            a.horizon * nt
        );
    }
    if !a.quiet {
        eprintln!("{}", model.summary());
        eprintln!(
            "{} rows: {} training windows, {} validation, {} test",
            series.n_rows(),
            windows.train.len(),
            windows.val.as_ref().map_or(0, |w| w.len()),
            windows.test.as_ref().map_or(0, |w| w.len())
        );
    }
    let last_good: LastGood = Arc::new(Mutex::new(a.resume.clone().map(|p| (p, start.epoch))));
    let stop = stop_on_ctrl_c()?;
    let mut fit = Fit::new()
        .epochs(a.epochs)
        .batch_size(a.batch_size)
        .seed(a.seed)
        .initial_epoch(start.epoch)
        .initial_batch(start.batch)
        .stop_flag(stop.clone());
    if let Some(v) = &windows.val {
        fit = fit.validation_data(v.x.clone(), v.y.clone().into_dyn());
    }
    fit.callbacks = callbacks(a, &prep, &last_good)?;
    let history = model
        .fit(&windows.train.x, &windows.train.y, fit)
        .map_err(anyhow::Error::from)
        .map_err(|e| divergence_hint(e, a, &last_good))?;
    if let Some(at) = history.interrupted {
        let batches = windows.train.len().div_ceil(a.batch_size.max(1));
        return save_interrupted(a, &model, &prep, at, Some(batches));
    }
    arm_ctrl_c_exit(&stop);
    // Test report in the data's own units, next to the naive baselines.
    let extra = match &windows.test {
        Some(test) => {
            let season = a.season.unwrap_or(12.min(a.window));
            test_report(
                &model,
                &scaler,
                &series.values.view(),
                &series.target_idx,
                &spec,
                &split,
                test,
                season,
            )?
        }
        None => json!({}),
    };
    finish(a, &model, &prep, &history, extra)
}

/// RMSE/MAE of the model on the test windows against naive and seasonal-naive baselines, in
/// the data's units.
#[allow(clippy::too_many_arguments)]
pub fn test_report(
    model: &Model,
    scaler: &Scaler,
    raw: &ndarray::ArrayView2<'_, f32>,
    target_idx: &[usize],
    spec: &WindowSpec,
    split: &window::ChronoSplit,
    test: &window::Windows,
    season: usize,
) -> Result<serde_json::Value> {
    let pred = model.predict_batched(&test.x, 256)?;
    let pred = pred.into_dimensionality::<ndarray::Ix2>()?;
    let pred = scaler.inverse_transform_y(pred.view(), target_idx)?;
    let truth = scaler.inverse_transform_y(test.y.view(), target_idx)?;
    let start = split.test.start - spec.window;
    let ctx = raw.slice(s![start.., ..]);
    let naive = window::naive_forecast(ctx, target_idx, spec)?;
    let seasonal = window::seasonal_naive_forecast(ctx, target_idx, spec, season)?;
    Ok(json!({
        "test_windows": test.len(),
        "test_rmse": window::rmse(&pred, &truth)?,
        "test_mae": window::mae(&pred, &truth)?,
        "naive_rmse": window::rmse(&naive, &truth)?,
        "naive_mae": window::mae(&naive, &truth)?,
        "seasonal_naive_rmse": window::rmse(&seasonal, &truth)?,
        "seasonal_naive_mae": window::mae(&seasonal, &truth)?,
        "season": season,
    }))
}

fn train_text(a: &Args) -> Result<()> {
    let bytes = std::fs::read(&a.data).with_context(|| format!("reading {}", a.data.display()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{}: not UTF-8 text (invalid byte at offset {})",
            a.data.display(),
            e.utf8_error().valid_up_to()
        )
    })?;
    if text.is_empty() {
        bail!("{}: the file is empty", a.data.display());
    }
    let (mut model, start, vocab) = match &a.resume {
        Some(p) => {
            let file = stacklstm::io::native::load(p)
                .with_context(|| format!("loading checkpoint {}", p.display()))?;
            let vocab = match file
                .preprocessing
                .map(serde_json::from_value::<Preprocessing>)
            {
                Some(Ok(Preprocessing::Text { vocab, .. })) => vocab,
                _ => bail!("{}: not a language-model checkpoint", p.display()),
            };
            let (m, start) = resume(p, a.lr)?;
            (m, start, vocab)
        }
        None => {
            let vocab = match a.level.as_str() {
                "char" => Vocab::chars(&text)?,
                "word" => Vocab::words(&text)?,
                other => bail!("unknown --level '{other}'; expected char or word"),
            };
            let spec = build_spec(a, None, 1, vocab.len(), true)?;
            if !matches!(spec.layers.first(), Some(LayerSpec::Embedding(_))) {
                bail!("a language model architecture must start with an Embedding layer");
            }
            let loss = Loss::SparseCategoricalCrossentropy { from_logits: true };
            let m = spec.build()?.compile_with_metrics(
                loss,
                optimizer(a)?,
                &[Metric::Accuracy, Metric::Perplexity],
            )?;
            (m, Start::default(), vocab)
        }
    };
    let ids = vocab.encode(&text)?;
    let n_val = ((ids.len() as f64) * a.val_frac).round() as usize;
    let (train_ids, val_ids) = ids.split_at(ids.len() - n_val);
    let prep = Preprocessing::Text {
        vocab: vocab.clone(),
        seq_len: a.seq_len,
    };
    if !a.quiet {
        eprintln!("{}", model.summary());
        let kind = if vocab.kind() == VocabKind::Char {
            "characters"
        } else {
            "words"
        };
        eprintln!(
            "{} tokens ({} distinct {kind}): {} for training, {} for validation",
            ids.len(),
            vocab.len(),
            train_ids.len(),
            val_ids.len()
        );
    }
    let last_good: LastGood = Arc::new(Mutex::new(a.resume.clone().map(|p| (p, start.epoch))));
    let stop = stop_on_ctrl_c()?;
    let opts = StreamFit {
        epochs: a.epochs,
        initial_epoch: start.epoch,
        initial_batch: start.batch,
        stop: Some(stop.clone()),
        batch_size: a.batch_size,
        seq_len: a.seq_len,
        validation: (val_ids.len() > a.seq_len + 1).then(|| val_ids.to_vec()),
        callbacks: callbacks(a, &prep, &last_good)?,
    };
    let needed = a.batch_size.max(1) * (a.seq_len + 1);
    if train_ids.len() < needed {
        bail!(
            "{}: {} tokens for training, too few for --batch-size {} lanes of --seq-len {} + 1 tokens (at least {needed})",
            a.data.display(),
            train_ids.len(),
            a.batch_size,
            a.seq_len
        );
    }
    let history = model
        .fit_stream(train_ids, opts)
        .map_err(anyhow::Error::from)
        .map_err(|e| divergence_hint(e, a, &last_good))?;
    if let Some(at) = history.interrupted {
        return save_interrupted(a, &model, &prep, at, None);
    }
    arm_ctrl_c_exit(&stop);
    let last = history.epochs.last();
    let extra = json!({
        "vocab_size": vocab.len(),
        "val_perplexity": last.and_then(|e| e.val_metrics.get("perplexity").copied()),
        "val_accuracy": last.and_then(|e| e.val_metrics.get("accuracy").copied()),
    });
    finish(a, &model, &prep, &history, extra)
}
