//! `stacklstm`: the command-line tool. Each subcommand lives in its own file under `cmd/`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod cmd;

/// Stacked LSTM networks from the command line.
#[derive(Parser)]
#[command(name = "stacklstm", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a benchmark workload (shapes from workloads.json) and print its measurements.
    Bench(cmd::bench::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => cmd::bench::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if cmd::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
