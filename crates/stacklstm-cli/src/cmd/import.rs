//! `stacklstm import --model IN --output OUT.safetensors`: conversion to the native format.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// Arguments of `import`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model file to convert: .keras, .weights.h5 (with --arch), a PyTorch state_dict (nn.LSTM, nn.GRU, also bidirectional; nn.Linear) or a native file.
    #[arg(long)]
    pub model: PathBuf,
    /// Architecture for weight-only files: a JSON spec or a .keras / native model file [default: none].
    #[arg(long)]
    pub arch: Option<PathBuf>,
    /// Where to write the native .safetensors file (replaced atomically).
    #[arg(long, short)]
    pub output: PathBuf,
}

/// Loads the model and saves it natively.
pub fn run(a: &Args) -> Result<()> {
    super::check_output(&a.output)?;
    let loaded = super::load(&a.model, a.arch.as_ref())?;
    stacklstm::io::native::save(&a.output, &loaded.model, loaded.preprocessing.as_ref())
        .with_context(|| format!("writing {}", a.output.display()))?;
    super::print(&format!(
        "imported {} ({}, {} parameters) to {}",
        a.model.display(),
        loaded.format,
        loaded.model.param_count(),
        a.output.display()
    ))
}
