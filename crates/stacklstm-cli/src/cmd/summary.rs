//! `stacklstm summary MODEL`: the Keras-style summary table.

use std::path::PathBuf;

use anyhow::Result;

/// Arguments of `summary`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model file: native .safetensors, .keras, .weights.h5 (with --arch) or a PyTorch state_dict.
    pub model: PathBuf,
    /// Architecture for weight-only files: a JSON spec or a .keras / native model file [default: none].
    #[arg(long)]
    pub arch: Option<PathBuf>,
}

/// Prints the summary and the file's format.
pub fn run(a: &Args) -> Result<()> {
    let loaded = super::load(&a.model, a.arch.as_ref())?;
    let (t, f) = loaded.model.input_shape();
    let t = t.map_or("None".to_string(), |t| t.to_string());
    super::print(&format!(
        "{}\n Input shape: (None, {t}, {f})\n Format: {}",
        loaded.model.summary(),
        loaded.format
    ))
}
