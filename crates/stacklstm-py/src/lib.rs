//! `stacklstm._native`: the Python extension module behind the `stacklstm` package.
//!
//! The Python package (`python/stacklstm`) gives Keras' classes and calling conventions;
//! this module is the thin layer between it and the engine. It holds no engine logic:
//! layer options are read by the library's Keras hooks ([`stacklstm::LayerSpec::from_keras`]),
//! optimizers and losses arrive as the library's own serialised configs, and everything else
//! is a call into [`stacklstm::Model`] and [`stacklstm::Trainer`].
//!
//! Files, one job each: `errors` (library errors to Python exceptions), `arrays` (NumPy in
//! and out), `core` (the model: build, predict, compile, fit, weights, files), `hooks` (the
//! callbacks `fit` runs: Python callbacks, progress, Ctrl-C, the library's own callbacks).

mod arrays;
mod core;
mod errors;
mod hooks;

use pyo3::prelude::*;
use serde_json::Value;
use stacklstm::layers::KerasConfig;
use stacklstm::LayerSpec;

use crate::errors::Context;

/// The spec of one layer, as the library's JSON (`{"type": "lstm", "units": 4, ...}`), from a
/// Keras class name and the layer's Keras config (JSON): read by the same hook that reads
/// `.keras` files, so an option Keras has and the engine lacks is refused the same way.
///
/// Raises `NotImplementedError` for an unknown class or an unsupported option (naming it),
/// `ValueError` for a malformed value.
#[pyfunction]
fn layer_spec(class_name: &str, config_json: &str) -> PyResult<String> {
    let config: serde_json::Map<String, Value> = serde_json::from_str(config_json)
        .map_err(|e| errors::value_error(format!("{class_name}: bad config: {e}")))?;
    let mut cfg = KerasConfig::new(class_name, &config);
    let spec = LayerSpec::from_keras(class_name, &mut cfg).ok_or_else(|| {
        errors::not_implemented(format!(
            "layer class {class_name} is not supported; supported: {}",
            LayerSpec::KERAS_CLASSES.join(", ")
        ))
    })?;
    let problems = cfg.into_problems();
    if !problems.malformed.is_empty() {
        return Err(errors::value_error(problems.malformed.join("; ")));
    }
    if !problems.unsupported.is_empty() {
        let i = LayerSpec::KERAS_CLASSES
            .iter()
            .position(|c| *c == class_name)
            .unwrap_or(0);
        return Err(errors::not_implemented(format!(
            "{} (not supported; stacklstm supports {})",
            problems.unsupported.join("; "),
            LayerSpec::KERAS_SUPPORT.get(i).copied().unwrap_or("")
        )));
    }
    let mut json = serde_json::to_value(&spec).context("layer spec")?;
    // The hook names the layer after the config's `name`; without one, the model gives it
    // Keras' default name (`lstm`, `lstm_1`, ...).
    if config.get("name").is_none() {
        if let Some(o) = json.as_object_mut() {
            o.remove("name");
        }
    }
    Ok(json.to_string())
}

/// Threads the engine uses for one batch (1 or 2).
#[pyfunction]
fn set_threads(n: usize) -> PyResult<()> {
    if n == 0 {
        return Err(errors::value_error("set_threads: n must be at least 1"));
    }
    stacklstm::set_threads(n);
    Ok(())
}

/// The number of threads the engine uses.
#[pyfunction]
fn threads() -> usize {
    stacklstm::threads()
}

/// The extension module.
#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(layer_spec, m)?)?;
    m.add_function(wrap_pyfunction!(set_threads, m)?)?;
    m.add_function(wrap_pyfunction!(threads, m)?)?;
    m.add_class::<core::Core>()?;
    m.add_class::<hooks::EarlyStoppingCore>()?;
    m.add_class::<hooks::CheckpointCore>()?;
    m.add_class::<hooks::ReduceLrCore>()?;
    Ok(())
}
