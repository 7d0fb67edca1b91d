//! `stacklstm forecast --model MODEL --data FILE --steps N`: a multi-step forecast past the
//! end of a series, fed back recursively, as CSV (stdout or --output), optionally plotted.

use std::path::PathBuf;

use anyhow::{Context, Result};
use stacklstm::data::prep::{forecast_recursive, Preprocessing};

use super::choices::Fill;

/// Arguments of `forecast`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A series model written by `stacklstm train series`.
    #[arg(long)]
    pub model: PathBuf,
    /// The history: a CSV with the model's columns (its last window rows are used).
    #[arg(long)]
    pub data: PathBuf,
    /// Steps to forecast past the end.
    #[arg(long, default_value_t = 12)]
    pub steps: usize,
    /// CSV output file [default: stdout].
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Plot the history and the forecast to this .png or .svg [default: none].
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Missing values: an error, filled forward, interpolated, or their rows dropped.
    #[arg(long, value_enum, ignore_case = true, default_value_t = Fill::Error)]
    pub fill: Fill,
}

/// Runs `forecast`.
pub fn run(a: &Args) -> Result<()> {
    if a.steps == 0 || a.steps > 100_000 {
        anyhow::bail!("--steps must be between 1 and 100000, got {}", a.steps);
    }
    if let Some(p) = &a.output {
        super::check_output(p)?;
    }
    if let Some(p) = &a.plot {
        super::check_plot(p)?;
    }
    let (model, prep) = super::prep::load(&a.model)?;
    let s = super::prep::read_series(&a.data, &prep, a.fill.into())?;
    let f = forecast_recursive(&model, &prep, s.values.view(), a.steps)
        .with_context(|| format!("forecasting from {}", a.data.display()))?;
    let Preprocessing::Series { features, .. } = &prep else {
        unreachable!("read_series accepts only series models")
    };
    let mut csv = format!("step,{}\n", features.join(","));
    for (i, row) in f.rows().into_iter().enumerate() {
        let vals: Vec<String> = row.iter().map(|v| v.to_string()).collect();
        csv.push_str(&format!("{},{}\n", i + 1, vals.join(",")));
    }
    match &a.output {
        Some(p) => stacklstm::data::write_atomic(p, csv.as_bytes())
            .with_context(|| format!("writing {}", p.display()))?,
        None => super::print(csv.trim_end())?,
    }
    if let Some(p) = &a.plot {
        let hist: Vec<f64> = s.values.column(0).iter().map(|v| f64::from(*v)).collect();
        let fc: Vec<f64> = f.column(0).iter().map(|v| f64::from(*v)).collect();
        let chart = stacklstm::plot::Chart::forecast(
            format!("{}: forecast of {} steps", features[0], a.steps),
            &hist,
            hist.len(),
            &[],
            &fc,
        )
        .y_label(features[0].clone());
        chart
            .save(p)
            .with_context(|| format!("writing plot {}", p.display()))?;
    }
    Ok(())
}
