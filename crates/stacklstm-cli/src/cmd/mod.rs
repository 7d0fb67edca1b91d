//! Subcommands and what they share: loading a model with an optional architecture.

pub mod bench;
mod choices;
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
pub mod train;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
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
    /// Run benchmark workloads (shapes from workloads.json) and print their measurements: the
    /// harness of `bench/compare.py`, hidden from the command list.
    #[command(hide = true)]
    Bench(bench::Args),
    /// Train a stacked LSTM or GRU on a CSV time series (`train series`) or a text (`train text`), and save it.
    Train(train::Args),
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

/// Exit code of a command stopped by Ctrl-C (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: i32 = 130;

/// Exit code of a command stopped by SIGTERM (128 + 15).
pub const EXIT_TERMINATED: i32 = 143;

/// A command stopped by Ctrl-C or SIGTERM after saving what it could; the message says
/// where. `main` prints it and exits with `code` ([`EXIT_INTERRUPTED`] or
/// [`EXIT_TERMINATED`]).
#[derive(Debug)]
pub struct Interrupted {
    /// What was saved and how to continue.
    pub message: String,
    /// The exit code.
    pub code: i32,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Interrupted {}

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

/// Refuses an output path that cannot be written (a missing folder, a file where a folder
/// should be, a folder where the file should be), so that a command fails before its work
/// rather than after it with some outputs written and others not.
pub fn check_output(p: &Path) -> Result<()> {
    let dir = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.exists() {
        bail!(
            "{}: the folder {} does not exist",
            p.display(),
            dir.display()
        );
    }
    if !dir.is_dir() {
        bail!("{}: {} is not a folder", p.display(), dir.display());
    }
    if p.is_dir() {
        bail!("{}: is a folder, expected a file path", p.display());
    }
    Ok(())
}

/// [`check_output`] for a plot, which must also end in .svg or .png.
pub fn check_plot(p: &Path) -> Result<()> {
    check_output(p)?;
    stacklstm::plot::check_path(p).with_context(|| format!("--plot {}", p.display()))?;
    Ok(())
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
