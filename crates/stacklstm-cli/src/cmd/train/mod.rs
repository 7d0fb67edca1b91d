//! `stacklstm train MODE ...`: trains a stacked LSTM or GRU (`--cell`) and saves it, with its
//! preprocessing, in the native format. The mode says what the data is: `series` (a CSV time
//! series) or `text` (a language model). Each mode is one file that reads its data and
//! describes its model; the options they share are in `options`, and `session` runs the
//! training for all of them (resume, checkpoints, Ctrl-C, the saved model and the report). A
//! new mode is one more variant of [`Mode`] and its file.

mod options;
mod series;
mod session;
mod text;

use std::ffi::OsString;

use anyhow::Result;
use clap::CommandFactory;

pub use series::test_report;

/// Arguments of `train`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to train on.
    #[command(subcommand)]
    pub mode: Mode,
}

/// The kinds of training.
#[derive(Debug, clap::Subcommand)]
pub enum Mode {
    /// Forecast a CSV time series: windows of past rows predict the next values of target columns.
    Series(Box<series::Args>),
    /// A character- or word-level language model on a UTF-8 text.
    Text(Box<text::Args>),
}

impl Mode {
    /// The options every mode shares.
    fn common(&self) -> &options::CommonArgs {
        match self {
            Mode::Series(a) => &a.common,
            Mode::Text(a) => &a.common,
        }
    }
}

/// Runs `train`.
pub fn run(a: &Args) -> Result<()> {
    a.mode.common().check()?;
    match &a.mode {
        Mode::Series(a) => series::run(a),
        Mode::Text(a) => text::run(a),
    }
}

/// The usage error for `train` followed by an option instead of a mode (`train --data ...`,
/// `train --text ...`): it names the modes. `None` for any other command line.
pub fn missing_mode_error(args: &[OsString]) -> Option<clap::Error> {
    let mut words = args.iter().skip(1);
    if words.next()? != "train" {
        return None;
    }
    let next = words.next()?.to_str()?;
    if !next.starts_with('-') || matches!(next, "-h" | "--help") {
        return None;
    }
    let msg = if args.iter().any(|a| a == "--text") {
        "`stacklstm train` takes the kind of training first: use `stacklstm train text --data FILE.txt ...` for a language model (instead of `train --text`), or `stacklstm train series --data FILE.csv --target COL ...` for a CSV time series"
    } else {
        "`stacklstm train` takes the kind of training first: use `stacklstm train series --data FILE.csv --target COL ...` for a CSV time series, or `stacklstm train text --data FILE.txt ...` for a language model"
    };
    let mut cli = super::Cli::command();
    cli.build();
    let train = cli.find_subcommand_mut("train")?;
    Some(train.error(clap::error::ErrorKind::MissingSubcommand, msg))
}
