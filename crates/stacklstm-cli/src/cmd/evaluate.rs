//! `stacklstm evaluate --model MODEL --data FILE`: the loss and errors of a trained model on
//! new data, in the data's own units, next to the naive baselines (series) or as perplexity
//! (language models).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde_json::json;
use stacklstm::data::prep::Preprocessing;
use stacklstm::data::window::{self, make_windows};

use super::choices::Fill;

/// Arguments of `evaluate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A model written by `stacklstm train`.
    #[arg(long)]
    pub model: PathBuf,
    /// Data: a CSV with the model's columns, or a UTF-8 text for a language model.
    #[arg(long)]
    pub data: PathBuf,
    /// Missing CSV values: an error, filled forward, interpolated, or their rows dropped.
    #[arg(long, value_enum, ignore_case = true, default_value_t = Fill::Error)]
    pub fill: Fill,
    /// Series: season of the seasonal-naive baseline [default: min(12, window)].
    #[arg(long)]
    pub season: Option<usize>,
    /// Samples (series) or lanes (text) per batch.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `evaluate`.
pub fn run(a: &Args) -> Result<()> {
    let (model, prep) = super::prep::load(&a.model)?;
    let results = match &prep {
        Preprocessing::Series {
            target_idx,
            window: spec,
            scaler,
            ..
        } => {
            let s = super::prep::read_series(&a.data, &prep, a.fill.into())?;
            let scaled = scaler.transform(s.values.view())?;
            let w = make_windows(scaled.view(), target_idx, spec)
                .with_context(|| format!("{}: windowing {} rows", a.data.display(), s.n_rows()))?;
            let pred = model.predict_batched(&w.x, a.batch_size.max(1))?;
            let pred = pred.into_dimensionality::<ndarray::Ix2>()?;
            let pred = scaler.inverse_transform_y(pred.view(), target_idx)?;
            let truth = scaler.inverse_transform_y(w.y.view(), target_idx)?;
            let season = a.season.unwrap_or(12.min(spec.window));
            let naive = window::naive_forecast(s.values.view(), target_idx, spec)?;
            let seasonal =
                window::seasonal_naive_forecast(s.values.view(), target_idx, spec, season)?;
            json!({
                "windows": w.len(),
                "rmse": window::rmse(&pred, &truth)?,
                "mae": window::mae(&pred, &truth)?,
                "naive_rmse": window::rmse(&naive, &truth)?,
                "naive_mae": window::mae(&naive, &truth)?,
                "seasonal_naive_rmse": window::rmse(&seasonal, &truth)?,
                "seasonal_naive_mae": window::mae(&seasonal, &truth)?,
                "season": season,
                "network": super::report::network(&model),
            })
        }
        Preprocessing::Text { vocab, seq_len } => {
            let bytes =
                std::fs::read(&a.data).with_context(|| format!("reading {}", a.data.display()))?;
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
            let ids = vocab
                .encode(&text)
                .with_context(|| format!("encoding {}", a.data.display()))?;
            let loss = stacklstm::Loss::SparseCategoricalCrossentropy { from_logits: true };
            // Evaluation only: the optimizer never steps.
            let mut trainer = model.clone().compile_with_metrics(
                loss,
                stacklstm::Adam::default(),
                &[stacklstm::Metric::Accuracy, stacklstm::Metric::Perplexity],
            )?;
            let e = trainer
                .evaluate_stream(&ids, a.batch_size.max(1), *seq_len)
                .with_context(|| format!("evaluating on {}", a.data.display()))?;
            json!({
                "tokens": ids.len(),
                "loss": e.loss,
                "perplexity": e.loss.exp(),
                "accuracy": e.metrics.get("accuracy"),
            })
        }
        _ => bail!("unsupported preprocessing"),
    };
    if a.json {
        super::print(&serde_json::to_string_pretty(&results)?)
    } else {
        super::print(&super::report::render(&results))
    }
}
