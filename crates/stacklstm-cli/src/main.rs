//! `stacklstm`: the command-line tool. Each subcommand lives in its own file under `cmd/`;
//! this file only parses the command line and dispatches.
//!
//! Exit codes: 0 on success, 1 on an error (one line on stderr), 2 on a usage error, 130 when
//! Ctrl-C stopped training and 143 when SIGTERM did (after saving a checkpoint; one line on
//! stderr says where).

mod bench;
mod cmd;

use clap::Parser;

fn main() {
    let cli = cmd::Cli::try_parse().unwrap_or_else(|e| {
        // `train --data ...` without a mode: say which modes there are, not just that
        // `--data` is unexpected.
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        cmd::train::missing_mode_error(&args).unwrap_or(e).exit()
    });
    if let Err(e) = cmd::run(cli) {
        if cmd::is_broken_pipe(&e) {
            // A closed pipe (e.g. `stacklstm summary m | head -1`) is not an error.
            std::process::exit(0);
        }
        if let Some(i) = e.downcast_ref::<cmd::Interrupted>() {
            eprintln!("{i}");
            std::process::exit(i.code);
        }
        eprintln!("error: {}", cmd::one_line(&e));
        std::process::exit(1);
    }
}
