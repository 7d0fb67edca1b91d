//! `stacklstm train series --data FILE.csv --target COL --out MODEL`: forecasting on a CSV
//! time series. Windows of `--window` rows predict the next `--horizon` values of the
//! targets; the rows are split in time order (training, validation, test), the scaler is
//! fitted on the training rows, and the report gives the test error in the data's units next
//! to the naive and seasonal-naive baselines.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use ndarray::s;
use serde_json::json;
use stacklstm::data::prep::Preprocessing;
use stacklstm::data::window::{self, split_chronological, WindowSpec};
use stacklstm::data::{CsvOptions, Scaler};
use stacklstm::train::Metric;
use stacklstm::{Loss, Model};

use super::options::{CommonArgs, Stack};
use super::session::Session;
use crate::cmd::choices::{Fill, ScalerName};

/// Arguments of `train series`.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Data")]
pub struct Args {
    /// Training data: a CSV time series with a header row.
    #[arg(long)]
    pub data: PathBuf,
    /// Target column(s) to predict, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub target: Vec<String>,
    /// Input columns, comma-separated [default: every numeric column].
    #[arg(long, value_delimiter = ',')]
    pub features: Vec<String>,
    /// A date column, ignored as a feature [default: none].
    #[arg(long)]
    pub date_column: Option<String>,
    /// Sort rows by the date column before use.
    #[arg(long)]
    pub sort_by_date: bool,
    /// Missing values: an error, filled forward, interpolated, or their rows dropped.
    #[arg(long, value_enum, ignore_case = true, default_value_t = Fill::Error)]
    pub fill: Fill,
    /// Lookback window in rows.
    #[arg(long, default_value_t = 24)]
    pub window: usize,
    /// Steps ahead to predict.
    #[arg(long, default_value_t = 1)]
    pub horizon: usize,
    /// Rows between consecutive windows.
    #[arg(long, default_value_t = 1)]
    pub stride: usize,
    /// Fraction held out at the end for the test report.
    #[arg(long, default_value_t = 0.2)]
    pub test_frac: f64,
    /// Scaling fitted on the training rows.
    #[arg(long, value_enum, ignore_case = true, default_value_t = ScalerName::Standard)]
    pub scaler: ScalerName,
    /// Season length of the seasonal-naive baseline [default: min(12, window)].
    #[arg(long)]
    pub season: Option<usize>,
    #[command(flatten)]
    pub common: CommonArgs,

    /// Loss (huber with delta 1).
    #[arg(long, value_enum, default_value_t = SeriesLoss::Mse, help_heading = "Training")]
    pub loss: SeriesLoss,
}

/// The losses of a forecasting model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SeriesLoss {
    Mse,
    Mae,
    Huber,
}

impl From<SeriesLoss> for Loss {
    fn from(l: SeriesLoss) -> Loss {
        match l {
            SeriesLoss::Mse => Loss::Mse,
            SeriesLoss::Mae => Loss::Mae,
            SeriesLoss::Huber => Loss::Huber { delta: 1.0 },
        }
    }
}

/// Runs `train series`.
pub fn run(a: &Args) -> Result<()> {
    let c = &a.common;
    let opts = CsvOptions {
        target: a.target.clone(),
        features: (!a.features.is_empty()).then(|| a.features.clone()),
        date_column: a.date_column.clone(),
        sort_by_date: a.sort_by_date,
        fill: a.fill.into(),
    };
    let series = stacklstm::data::read_csv_path(&a.data, &opts)?;
    let spec = WindowSpec::new(a.window, a.horizon, a.stride)?;
    let split = split_chronological(series.n_rows(), c.val_frac, a.test_frac)?;
    let scaler = Scaler::fit(
        a.scaler.into(),
        series.values.slice(s![split.train.clone(), ..]),
    )?;
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
    let outputs = a.horizon * nt;
    let mut session = Session::open(c, a.loss.into(), &[Metric::Mae, Metric::Rmse], || {
        let spec = c.spec(Stack::Series, Some(a.window), series.n_features(), outputs)?;
        Ok(spec.build()?)
    })?;
    let shape = session.model().output_shape();
    if shape.seq || shape.width != outputs {
        bail!(
            "the model outputs {} values per sample, but --horizon {} x {nt} targets needs {outputs}",
            shape.width,
            a.horizon,
        );
    }
    if !c.quiet {
        eprintln!("{}", session.model().summary());
        eprintln!(
            "{} rows: {} training windows, {} validation, {} test",
            series.n_rows(),
            windows.train.len(),
            windows.val.as_ref().map_or(0, |w| w.len()),
            windows.test.as_ref().map_or(0, |w| w.len())
        );
    }
    let val = windows
        .val
        .as_ref()
        .map(|v| (v.x.clone(), v.y.clone().into_dyn()));
    let history = session.fit(
        &prep,
        &windows.train.x,
        &windows.train.y.clone().into_dyn(),
        val,
    )?;
    // Test report in the data's own units, next to the naive baselines.
    let extra = match &windows.test {
        Some(test) => {
            let season = a.season.unwrap_or(12.min(a.window));
            test_report(
                session.model(),
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
    session.finish(&prep, &history, extra)
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
        "network": crate::cmd::report::network(model),
    }))
}
