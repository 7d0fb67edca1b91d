//! Subcommands and what they share: loading a model with an optional architecture.

pub mod bench;
mod demo;
mod evaluate;
mod export;
mod forecast;
mod generate;
mod import;
mod predict;
mod prep;
mod progress;
mod report;
mod summary;
mod train;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use stacklstm::{Arch, LoadedModel};

/// Stacked LSTM networks with Keras semantics.
#[derive(Debug, Parser)]
#[command(name = "stacklstm", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a model on an input batch and write its output.
    Predict(predict::Args),
    /// Print a model's layers, output shapes and parameter counts.
    Summary(summary::Args),
    /// Convert a Keras or PyTorch model file to the native format.
    Import(import::Args),
    /// Export a model to ONNX.
    Export(export::Args),
    /// Run benchmark workloads (shapes from workloads.json) and print their measurements.
    Bench(bench::Args),
    /// Train a stacked LSTM on a CSV time series or a text, and save it.
    Train(Box<train::Args>),
    /// Loss and errors of a trained model on new data, next to baselines.
    Evaluate(evaluate::Args),
    /// Forecast a series past its end, feeding predictions back.
    Forecast(forecast::Args),
    /// Sample text from a language model.
    Generate(generate::Args),
    /// Train on the embedded monthly sunspot series and compare with baselines.
    Demo(demo::Args),
}

/// Runs one subcommand.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Predict(a) => predict::run(&a),
        Command::Summary(a) => summary::run(&a),
        Command::Import(a) => import::run(&a),
        Command::Export(a) => export::run(&a),
        Command::Bench(a) => bench::run(&a),
        Command::Train(a) => train::run(&a),
        Command::Evaluate(a) => evaluate::run(&a),
        Command::Forecast(a) => forecast::run(&a),
        Command::Generate(a) => generate::run(&a),
        Command::Demo(a) => demo::run(&a),
    }
}

/// Whether the error comes from writing to a closed pipe.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes on one line, skipping a cause whose text the message before it
/// already includes (the library's I/O errors print their source themselves).
pub fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let msg = cause.to_string();
        if out.contains(&msg) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&msg);
    }
    out.replace('\n', " ")
}

/// Loads any supported model file, with the architecture file when one is given.
pub fn load(model: &Path, arch: Option<&PathBuf>) -> Result<LoadedModel> {
    let arch = match arch {
        Some(p) => Some(
            Arch::from_path(p).with_context(|| format!("reading architecture {}", p.display()))?,
        ),
        None => None,
    };
    stacklstm::load_model(model, arch.as_ref())
        .with_context(|| format!("loading model {}", model.display()))
}

/// Writes `text` to stdout.
pub fn print(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}
