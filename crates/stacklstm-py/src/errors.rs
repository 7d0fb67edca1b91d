//! Library errors as Python exceptions, with the library's message.
//!
//! | library error | Python exception |
//! |---|---|
//! | `Io` | `OSError` (`FileNotFoundError`, `PermissionError`, ... by the OS error) |
//! | `ShapeMismatch`, `InvalidConfig`, `InvalidInput`, `Data`, `Format`, `UnsupportedFormat` | `ValueError` |
//! | `Diverged`, `State` | `RuntimeError` |

use pyo3::exceptions::{
    PyFileExistsError, PyFileNotFoundError, PyIsADirectoryError, PyNotADirectoryError,
    PyNotImplementedError, PyOSError, PyPermissionError, PyRuntimeError, PyValueError,
};
use pyo3::PyErr;
use stacklstm::Error;

/// The Python exception for a library error.
pub fn to_py(e: Error) -> PyErr {
    let msg = e.to_string();
    match &e {
        Error::Io { source, .. } => {
            use std::io::ErrorKind as K;
            match source.kind() {
                K::NotFound => PyFileNotFoundError::new_err(msg),
                K::PermissionDenied => PyPermissionError::new_err(msg),
                K::AlreadyExists => PyFileExistsError::new_err(msg),
                K::IsADirectory => PyIsADirectoryError::new_err(msg),
                K::NotADirectory => PyNotADirectoryError::new_err(msg),
                _ => PyOSError::new_err(msg),
            }
        }
        Error::Diverged { .. } | Error::State(_) => PyRuntimeError::new_err(msg),
        _ => PyValueError::new_err(msg),
    }
}

/// A `ValueError` with `msg`.
pub fn value_error(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

/// A `NotImplementedError` with `msg`: something Keras has that the engine does not.
pub fn not_implemented(msg: impl Into<String>) -> PyErr {
    PyNotImplementedError::new_err(msg.into())
}

/// `?` on library results and on the (de)serialisation of the configs the Python package
/// sends.
pub trait Context<T> {
    /// The error as a Python exception; `what` names the config for serde errors.
    fn context(self, what: &str) -> Result<T, PyErr>;
}

impl<T> Context<T> for Result<T, Error> {
    fn context(self, _what: &str) -> Result<T, PyErr> {
        self.map_err(to_py)
    }
}

impl<T> Context<T> for Result<T, serde_json::Error> {
    fn context(self, what: &str) -> Result<T, PyErr> {
        self.map_err(|e| value_error(format!("{what}: {e}")))
    }
}
