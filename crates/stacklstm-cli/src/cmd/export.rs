//! `stacklstm export --model M --onnx OUT.onnx`: ONNX export.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// Arguments of `export`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model file (any format `predict` reads) whose layers are LSTM, GRU, Bidirectional, Masking, Dense or Dropout.
    #[arg(long)]
    pub model: PathBuf,
    /// Architecture for weight-only files: a JSON spec or a .keras / native model file [default: none].
    #[arg(long)]
    pub arch: Option<PathBuf>,
    /// Where to write the ONNX model (replaced atomically).
    #[arg(long)]
    pub onnx: PathBuf,
}

/// Exports the model: ONNX `LSTM` and `GRU` operators, opset 17, symbolic batch dimension.
pub fn run(a: &Args) -> Result<()> {
    super::check_output(&a.onnx)?;
    let loaded = super::load(&a.model, a.arch.as_ref())?;
    let bytes = stacklstm::io::onnx::export_model(&loaded.model)
        .with_context(|| format!("exporting {} to ONNX", a.model.display()))?;
    stacklstm::data::write_atomic(&a.onnx, &bytes)
        .with_context(|| format!("writing {}", a.onnx.display()))?;
    super::print(&format!(
        "exported {} to {} (ONNX opset {}, {} bytes)",
        a.model.display(),
        a.onnx.display(),
        stacklstm::io::onnx::OPSET,
        bytes.len()
    ))
}
