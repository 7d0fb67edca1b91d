//! `stacklstm demo`: the main job on real data embedded in the binary. Trains a stacked LSTM
//! to forecast the next 12 months of the monthly sunspot series (1749-1983) from the last
//! 24, reports the test error next to the naive and seasonal-naive baselines on the same
//! held-out months, and writes the model and a forecast plot.

use std::path::PathBuf;

use anyhow::{Context, Result};
use ndarray::s;
use serde_json::json;
use stacklstm::data::prep::Preprocessing;
use stacklstm::data::window::{split_chronological, WindowSpec};
use stacklstm::data::{read_csv_str, CsvOptions, Scaler, ScalerKind};
use stacklstm::train::{EarlyStopping, Fit, Metric};
use stacklstm::{Adam, Dense, Loss, Lstm, Sequential};

use super::progress::Progress;

/// The embedded series (provenance in `crates/stacklstm-cli/data/README.md`).
const SUNSPOTS: &str = include_str!("../../data/sunspots_monthly.csv");

/// Arguments of `demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder for the trained model and the forecast plot (created if missing).
    #[arg(long, default_value = "demo-out")]
    pub out_dir: PathBuf,
    /// Most epochs (early stopping on validation loss usually ends sooner).
    #[arg(long, default_value_t = 60)]
    pub epochs: usize,
    /// Seed of initialisation and shuffling.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// No progress output on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `demo`.
pub fn run(a: &Args) -> Result<()> {
    let (window, horizon) = (24, 12);
    std::fs::create_dir_all(&a.out_dir)
        .with_context(|| format!("creating {}", a.out_dir.display()))?;
    let series = read_csv_str(
        SUNSPOTS,
        "sunspots_monthly.csv",
        &CsvOptions::with_target(["sunspots"]),
    )?;
    let spec = WindowSpec::new(window, horizon, 1)?;
    let split = split_chronological(series.n_rows(), 0.1, 0.2)?;
    let scaler = Scaler::fit(
        ScalerKind::Standard,
        series.values.slice(s![split.train.clone(), ..]),
    )?;
    let scaled = scaler.transform(series.values.view())?;
    let w = split.windows(scaled.view(), &series.target_idx, &spec, true)?;
    let (val, test) = match (&w.val, &w.test) {
        (Some(v), Some(t)) => (v, t),
        _ => anyhow::bail!("the embedded series is too short for the demo split"),
    };
    let model = Sequential::new()
        .name("sunspots")
        .input_shape(window, 1)
        .add(Lstm::new(32).return_sequences(true))
        .add(Lstm::new(32))
        .add(Dense::new(horizon))
        .seed(a.seed)
        .build()?;
    let mut trainer = model.compile_with_metrics(Loss::Mse, Adam::new(0.002), &[Metric::Mae])?;
    if !a.quiet {
        eprintln!("Monthly sunspot numbers 1749-1983 ({} months): forecast the next {horizon} months from the last {window}.", series.n_rows());
        eprintln!(
            "Chronological split: {} training windows, {} validation, {} test (the last {} months).",
            w.train.len(),
            val.len(),
            test.len(),
            split.test.len()
        );
        eprintln!("{}", trainer.summary());
    }
    let fit = Fit::new()
        .epochs(a.epochs)
        .batch_size(32)
        .seed(a.seed)
        .validation_data(val.x.clone(), val.y.clone().into_dyn())
        .callback(Progress::new(a.quiet))
        .callback(
            EarlyStopping::new("val_loss")
                .patience(5)
                .restore_best_weights(true),
        );
    let history = trainer.fit(&w.train.x, &w.train.y, fit)?;
    let model = trainer.into_model();
    let report = super::train::test_report(
        &model,
        &scaler,
        &series.values.view(),
        &series.target_idx,
        &spec,
        &split,
        test,
        12,
    )?;
    // Save the model with its preprocessing.
    let model_path = a.out_dir.join("sunspots.safetensors");
    let prep = Preprocessing::Series {
        features: series.columns.clone(),
        targets: vec!["sunspots".into()],
        target_idx: series.target_idx.clone(),
        window: spec,
        scaler: scaler.clone(),
        date_column: Some("month".into()),
    };
    stacklstm::io::native::save(&model_path, &model, Some(&serde_json::to_value(&prep)?))
        .with_context(|| format!("writing {}", model_path.display()))?;
    // Plot: the test months, the model's one-month-ahead predictions on them, and the 12
    // months after the end of the data.
    let raw: Vec<f64> = series
        .values
        .column(0)
        .iter()
        .map(|v| f64::from(*v))
        .collect();
    let from = split.test.start.saturating_sub(120);
    let pred = model
        .predict_batched(&test.x, 256)?
        .into_dimensionality::<ndarray::Ix2>()?;
    let pred = scaler.inverse_transform_y(pred.view(), &series.target_idx)?;
    let predicted: Vec<f64> = pred.column(0).iter().map(|v| f64::from(*v)).collect();
    let last = scaled
        .slice(s![scaled.nrows() - window.., ..])
        .to_owned()
        .insert_axis(ndarray::Axis(0));
    let future = model
        .predict(&last)?
        .into_dimensionality::<ndarray::Ix2>()?;
    let future = scaler.inverse_transform_y(future.view(), &series.target_idx)?;
    let future: Vec<f64> = future.row(0).iter().map(|v| f64::from(*v)).collect();
    let plot_path = a.out_dir.join("sunspots_forecast.png");
    stacklstm::plot::Chart::forecast(
        "Monthly sunspots: test months, 1-month-ahead predictions, 12-month forecast",
        &raw[from..],
        split.test.start - from,
        &predicted,
        &future,
    )
    .x_label(format!("months since {}", 1749 + from / 12))
    .y_label("sunspot number")
    .save(&plot_path)
    .with_context(|| format!("writing {}", plot_path.display()))?;
    let num = |k: &str| report[k].as_f64().unwrap_or(f64::NAN);
    let out = json!({
        "epochs_run": history.epochs.len(),
        "test_windows": test.len(),
        "lstm": {"rmse": num("test_rmse"), "mae": num("test_mae")},
        "naive": {"rmse": num("naive_rmse"), "mae": num("naive_mae")},
        "seasonal_naive_12": {"rmse": num("seasonal_naive_rmse"), "mae": num("seasonal_naive_mae")},
        "model": model_path.display().to_string(),
        "plot": plot_path.display().to_string(),
    });
    if a.json {
        return super::print(&serde_json::to_string_pretty(&out)?);
    }
    let gain = 100.0 * (1.0 - num("test_rmse") / num("naive_rmse"));
    super::print(&format!(
        "Test error over the next {horizon} months ({} windows, sunspot number units):\n\
         \x20 model                     RMSE      MAE\n\
         \x20 stacked LSTM          {:>8.2} {:>8.2}\n\
         \x20 naive (last value)    {:>8.2} {:>8.2}\n\
         \x20 seasonal naive (12)   {:>8.2} {:>8.2}\n\
         The LSTM's RMSE is {gain:.1}% {} than the naive forecast's.\n\
         Model: {}\nPlot:  {}",
        test.len(),
        num("test_rmse"),
        num("test_mae"),
        num("naive_rmse"),
        num("naive_mae"),
        num("seasonal_naive_rmse"),
        num("seasonal_naive_mae"),
        if gain >= 0.0 { "lower" } else { "HIGHER" },
        model_path.display(),
        plot_path.display()
    ))
}
