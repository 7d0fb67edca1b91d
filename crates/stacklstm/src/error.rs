//! The library's one error type.
//!
//! Every variant carries what a user needs to fix the problem: the layer, the shape that was
//! expected and the one that was given, the file and line, the supported alternatives.

use std::path::PathBuf;

/// Everything that can go wrong in stacklstm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor handed to a layer or model does not have the shape it needs.
    #[error("{layer}: expected shape {expected}, got {got}")]
    ShapeMismatch {
        /// The layer (or model entry point) that rejected the tensor.
        layer: String,
        /// The expected shape, e.g. `[batch, 30, 1]`.
        expected: String,
        /// The shape that was given.
        got: String,
    },

    /// A layer or model configuration that cannot be built.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// Input data that cannot be used (NaN, empty, out of range ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// A parse error in a data file, with its position.
    #[error("{file}: line {line}: {msg}")]
    Data {
        /// The file being read (or `<memory>`).
        file: String,
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        msg: String,
    },

    /// A file format, layer type or option that stacklstm does not support.
    #[error("unsupported {found}; supported: {supported}")]
    UnsupportedFormat {
        /// What was found.
        found: String,
        /// What would have been accepted.
        supported: String,
    },

    /// A model file that is malformed, truncated or hostile.
    #[error("{path}: {msg}")]
    Format {
        /// The file being read.
        path: String,
        /// What is wrong with it.
        msg: String,
    },

    /// A method was called before the model was ready for it (e.g. `fit` before `compile`).
    #[error("{0}")]
    State(String),

    /// Training produced a non-finite loss or gradient.
    #[error("training diverged at epoch {epoch}, step {step}: {what}")]
    Diverged {
        /// 1-based epoch.
        epoch: usize,
        /// 1-based step within the epoch.
        step: usize,
        /// What became non-finite.
        what: String,
    },

    /// An I/O error, with the path it happened on.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// `Result` with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::InvalidConfig`].
    pub fn config(msg: impl Into<String>) -> Self {
        Error::InvalidConfig(msg.into())
    }

    /// Shorthand for [`Error::InvalidInput`].
    pub fn input(msg: impl Into<String>) -> Self {
        Error::InvalidInput(msg.into())
    }

    /// Shorthand for [`Error::Format`].
    pub fn format(path: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            msg: msg.into(),
        }
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Formats a shape as `[a, b, c]`.
pub fn shape_str(dims: &[usize]) -> String {
    let parts: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}
