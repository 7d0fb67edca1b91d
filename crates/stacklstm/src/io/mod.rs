//! Model files: the native format, Keras 3 and PyTorch import, ONNX export.
//!
//! * [`native`]: our own format, one safetensors file with the weights, the model config,
//!   preprocessing and (for checkpoints) the training state.
//! * `keras` (Cargo feature `keras`): `.keras` files and `.weights.h5` files written by
//!   Keras 3.
//! * [`torch`]: PyTorch `state_dict`s of `nn.LSTM` / `nn.GRU` / `nn.Linear` modules saved as
//!   safetensors.
//! * [`onnx`]: export to a standard ONNX model (`LSTM` and `GRU` operators).
//!
//! [`load_model`] reads any of them, detecting the format from the file's content (zip,
//! HDF5 or safetensors signature, then the safetensors metadata), not from its extension.
//! Files that hold only weights (`.weights.h5`, and `state_dict`s whose architecture cannot be
//! inferred) need an [`Arch`].
//!
//! Every file the crate writes goes through [`write_atomic`]: a crash never leaves a
//! half-written file under the final name.

mod atomic;
#[cfg(feature = "keras")]
pub mod keras;
pub mod native;
pub mod onnx;
pub mod safetensors;
pub mod torch;

use std::io::Read;
use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::model::{Model, Sequential};

pub use atomic::write_atomic;
pub use native::{save_checkpoint, TrainingState};

/// The kinds of model file [`load_model`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModelFormat {
    /// A native stacklstm safetensors file.
    Native,
    /// A Keras 3 `.keras` zip archive.
    Keras,
    /// A Keras 3 `.weights.h5` HDF5 file (weights only).
    KerasWeights,
    /// A PyTorch `state_dict` in safetensors.
    Torch,
}

impl std::fmt::Display for ModelFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModelFormat::Native => "stacklstm (safetensors)",
            ModelFormat::Keras => "Keras 3 (.keras)",
            ModelFormat::KerasWeights => "Keras 3 weights (.weights.h5)",
            ModelFormat::Torch => "PyTorch state_dict (safetensors)",
        })
    }
}

/// A model read from a file, with what the file carried besides the weights.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    /// The model, weights set.
    pub model: Model,
    /// The format the file was in.
    pub format: ModelFormat,
    /// Preprocessing (native files only).
    pub preprocessing: Option<Value>,
    /// Training state (native checkpoints only).
    pub training: Option<TrainingState>,
}

/// An architecture for files that hold only weights.
///
/// Written as JSON: the [`Sequential`] spec, where `name` and `seed` may be left out and each
/// layer takes Keras' defaults for the options it does not give. For a PyTorch file a layer
/// may name its module with `"from"` (an `nn.LSTM` or `nn.GRU` with `num_layers > 1` feeds
/// that many consecutive LSTM or GRU layers naming it; a bidirectional one as many
/// Bidirectional layers, whose `"from"` may also sit in the wrapped `"layer"`):
///
/// ```json
/// {"input_shape": [7, 5],
///  "layers": [{"type": "lstm", "units": 6, "return_sequences": true, "from": "lstm0"},
///             {"type": "bidirectional", "merge_mode": "sum", "from": "bi",
///              "layer": {"type": "gru", "units": 5, "return_sequences": true}},
///             {"type": "dense", "units": 4, "from": "dense0"}]}
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Arch {
    /// The model spec.
    pub spec: Sequential,
    /// Per layer, the PyTorch module it takes its weights from (`None`: the next in order).
    pub sources: Vec<Option<String>>,
}

impl From<Sequential> for Arch {
    fn from(spec: Sequential) -> Self {
        Arch {
            sources: vec![None; spec.layers.len()],
            spec,
        }
    }
}

impl Arch {
    /// Parses the JSON form (see the type's documentation); `name` names it in errors.
    ///
    /// # Errors
    /// [`Error::Format`] for invalid JSON or an invalid spec.
    pub fn from_json(text: &str, name: &str) -> Result<Arch> {
        let bad = |msg: String| Error::format(name, format!("architecture: {msg}"));
        let mut v: Value =
            serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let obj = v
            .as_object_mut()
            .ok_or_else(|| bad("not a JSON object".into()))?;
        obj.entry("name").or_insert_with(|| "sequential".into());
        obj.entry("seed").or_insert_with(|| 0.into());
        let mut sources = Vec::new();
        if let Some(layers) = obj.get_mut("layers").and_then(Value::as_array_mut) {
            for (k, l) in layers.iter_mut().enumerate() {
                let Some(o) = l.as_object_mut() else {
                    sources.push(None);
                    continue;
                };
                let from = from_string(o.remove("from")).map_err(&bad)?;
                // A wrapper's module may be named on its wrapped layer too.
                let inner = o
                    .get_mut("layer")
                    .and_then(Value::as_object_mut)
                    .map(|w| from_string(w.remove("from")))
                    .transpose()
                    .map_err(&bad)?
                    .flatten();
                sources.push(match (from, inner) {
                    (Some(a), Some(b)) if a != b => {
                        return Err(bad(format!(
                            "layer #{k} names module '{a}' and its wrapped layer module '{b}'; give one"
                        )))
                    }
                    (a, b) => a.or(b),
                });
            }
        }
        let spec: Sequential =
            serde_json::from_value(v).map_err(|e| bad(format!("invalid model spec: {e}")))?;
        if spec.input_shape.is_none() {
            return Err(bad(
                "'input_shape' [timesteps or null, features] is required".into(),
            ));
        }
        Ok(Arch { spec, sources })
    }

    /// Reads an architecture from a file: the JSON form, the same form in TOML (a `.toml`
    /// file, Cargo feature `toml`; TOML has no null, so 0 timesteps means variable), or any
    /// model file [`load_model`] reads on its own (a `.keras` or native file), whose spec is
    /// used.
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::UnsupportedFormat`] for a `.toml` file when the crate was built
    /// without the `toml` feature, and as [`Arch::from_json`] / [`load_model`].
    pub fn from_path(path: impl AsRef<Path>) -> Result<Arch> {
        let path = path.as_ref();
        let head = read_head(path)?;
        if detect(&head).is_some() {
            return Ok(Arch::from(load_model(path, None)?.model.spec().clone()));
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let text = String::from_utf8(bytes).map_err(|_| {
            Error::format(path.display().to_string(), "architecture: not UTF-8 JSON")
        })?;
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("toml"))
        {
            return arch_from_toml(&text, &path.display().to_string());
        }
        Arch::from_json(&text, &path.display().to_string())
    }
}

/// The module a layer's `"from"` names.
fn from_string(v: Option<Value>) -> std::result::Result<Option<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!("'from' must be a string, got {other}")),
    }
}

/// [`Arch`] from its TOML form; `file` names it in errors.
#[cfg(feature = "toml")]
fn arch_from_toml(text: &str, file: &str) -> Result<Arch> {
    // TOML has no null: a variable number of timesteps is written as 0 there.
    let mut v: Value = toml::from_str(text)
        .map_err(|e| Error::format(file, format!("architecture: not valid TOML: {e}")))?;
    if let Some(t) = v.pointer_mut("/input_shape/0") {
        if t.as_u64() == Some(0) {
            *t = Value::Null;
        }
    }
    Arch::from_json(&v.to_string(), file)
}

#[cfg(not(feature = "toml"))]
fn arch_from_toml(_text: &str, file: &str) -> Result<Arch> {
    Err(feature_off(
        file,
        "a TOML architecture",
        "toml",
        "JSON architectures and model files that carry their own",
    ))
}

/// The error for a file whose reader sits behind a Cargo feature this build leaves out.
#[cfg(any(not(feature = "keras"), not(feature = "toml")))]
fn feature_off(file: &str, what: &str, feature: &str, supported: &str) -> Error {
    Error::UnsupportedFormat {
        found: format!(
            "{file}: {what}, but stacklstm was built without its `{feature}` feature (enable it to read this file)"
        ),
        supported: supported.into(),
    }
}

/// The container kind from a file's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Zip,
    Hdf5,
    Safetensors,
}

fn detect(head: &[u8]) -> Option<Container> {
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        Some(Container::Zip)
    } else if head.starts_with(b"\x89HDF\r\n\x1a\n") {
        Some(Container::Hdf5)
    } else if safetensors::looks_like(head) {
        Some(Container::Safetensors)
    } else {
        None
    }
}

fn read_head(path: &Path) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut head = Vec::with_capacity(16);
    f.take(16)
        .read_to_end(&mut head)
        .map_err(|e| Error::io(path, e))?;
    Ok(head)
}

/// The model files this build reads.
const SUPPORTED: &str = if cfg!(feature = "keras") {
    "stacklstm .safetensors, Keras 3 .keras and .weights.h5, PyTorch state_dict .safetensors"
} else {
    "stacklstm .safetensors, PyTorch state_dict .safetensors"
};

fn unknown_format(file: &str) -> Error {
    Error::UnsupportedFormat {
        found: format!("{file}: not a model file (no zip, HDF5 or safetensors signature)"),
        supported: SUPPORTED.into(),
    }
}

#[cfg(feature = "keras")]
fn need_arch(file: &str) -> Error {
    Error::format(
        file,
        "a Keras .weights.h5 file holds only weights: give the architecture (--arch with a JSON spec or the matching .keras file)",
    )
}

/// Loads a model from a native, `.keras`, `.weights.h5` or PyTorch safetensors file.
///
/// The format is detected from the content. `arch` is needed for `.weights.h5` files and for
/// PyTorch files whose architecture cannot be inferred (see [`torch`]); for those it
/// overrides the inferred one. It is ignored for native and `.keras` files, which carry their
/// own.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read, [`Error::UnsupportedFormat`] for an unknown
/// format or unsupported content (listing what), [`Error::Format`] for a malformed file.
pub fn load_model(path: impl AsRef<Path>, arch: Option<&Arch>) -> Result<LoadedModel> {
    let path = path.as_ref();
    let file = path.display().to_string();
    let head = read_head(path)?;
    match detect(&head) {
        #[cfg(feature = "keras")]
        Some(Container::Zip) => {
            let (km, kw) = keras::read_keras_file(path)?;
            Ok(loaded(keras::to_model(&km, &kw)?, ModelFormat::Keras))
        }
        #[cfg(feature = "keras")]
        Some(Container::Hdf5) => {
            let arch = arch.ok_or_else(|| need_arch(&file))?;
            let kw = keras::read_weights_h5(path)?;
            Ok(loaded(
                keras::weights_into(&arch.spec, &kw, &file)?,
                ModelFormat::KerasWeights,
            ))
        }
        #[cfg(not(feature = "keras"))]
        Some(c @ (Container::Zip | Container::Hdf5)) => Err(keras_off(&file, c)),
        Some(Container::Safetensors) => {
            let (header, data) = safetensors::read_file(path)?;
            from_safetensors(&header, &data, arch, &file)
        }
        None => Err(unknown_format(&file)),
    }
}

/// [`load_model`] on a file's bytes held in memory; `name` names it in errors.
///
/// # Errors
/// As [`load_model`].
pub fn load_model_bytes(bytes: &[u8], name: &str, arch: Option<&Arch>) -> Result<LoadedModel> {
    match detect(bytes) {
        #[cfg(feature = "keras")]
        Some(Container::Zip) => {
            let (km, kw) = keras::read_keras_bytes(bytes, name)?;
            Ok(loaded(keras::to_model(&km, &kw)?, ModelFormat::Keras))
        }
        #[cfg(feature = "keras")]
        Some(Container::Hdf5) => {
            let arch = arch.ok_or_else(|| need_arch(name))?;
            let kw = keras::read_weights_h5_bytes(bytes, name)?;
            Ok(loaded(
                keras::weights_into(&arch.spec, &kw, name)?,
                ModelFormat::KerasWeights,
            ))
        }
        #[cfg(not(feature = "keras"))]
        Some(c @ (Container::Zip | Container::Hdf5)) => Err(keras_off(name, c)),
        Some(Container::Safetensors) => {
            let (header, data) = safetensors::parse_bytes(bytes, name)?;
            from_safetensors(&header, data, arch, name)
        }
        None => Err(unknown_format(name)),
    }
}

/// A Keras file met by a build without the `keras` feature.
#[cfg(not(feature = "keras"))]
fn keras_off(file: &str, container: Container) -> Error {
    let what = match container {
        Container::Hdf5 => "a Keras 3 .weights.h5 file (HDF5)",
        _ => "a Keras 3 .keras file (zip)",
    };
    feature_off(file, what, "keras", SUPPORTED)
}

fn loaded(model: Model, format: ModelFormat) -> LoadedModel {
    LoadedModel {
        model,
        format,
        preprocessing: None,
        training: None,
    }
}

fn from_safetensors(
    header: &safetensors::Header,
    data: &[u8],
    arch: Option<&Arch>,
    file: &str,
) -> Result<LoadedModel> {
    if native::is_native(header) {
        let f = native::from_parts(header, data, file)?;
        return Ok(LoadedModel {
            model: f.model,
            format: ModelFormat::Native,
            preprocessing: f.preprocessing,
            training: f.training,
        });
    }
    Ok(loaded(
        torch::from_parts(header, data, arch, file)?,
        ModelFormat::Torch,
    ))
}
