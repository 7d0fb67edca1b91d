//! The native model format: one safetensors file.
//!
//! * Tensors: the model's weights as `"<layer>/<weight>"` (`lstm/kernel`, `lstm/recurrent_kernel`,
//!   `lstm/bias`, `dense/kernel`, ...), F32, in the Keras layout; in a checkpoint also the
//!   optimizer's slots as `"training/<name>"`.
//! * `__metadata__["stacklstm"]`: a JSON document
//!   `{"format_version": 1, "model": <Sequential spec>, "preprocessing": <any JSON or null>,
//!   "training": null | {"state": <any JSON>, "tensors": [<slot names>]}}`;
//!   `__metadata__["format"]` is `"stacklstm"`.
//!
//! Any `safetensors` reader (Python's included) reads the weights; the metadata makes the file
//! self-describing. The container is read by the hand-written [`super::safetensors`] module,
//! which validates the header before reading the data; this module then checks the config
//! against the tensors (every expected tensor present with its exact shape, nothing extra)
//! before the model is built, so a hostile file (a header that lies, overlapping offsets, a
//! config saying `units = 10^12`) is an [`Error`], never a panic or a huge allocation.
//!
//! Saves go through [`crate::io::write_atomic`]: a temporary file, fsync, rename. A crash
//! mid-save leaves the previous file intact.

use std::collections::BTreeMap;
use std::path::Path;

use ndarray::{ArrayD, IxDyn};
use serde_json::{json, Value};

use super::safetensors::{self, Header};
use crate::error::{Error, Result};
use crate::model::{Model, Sequential};

/// The format version this library writes and the newest it reads.
pub const FORMAT_VERSION: u64 = 1;
/// The `__metadata__` key holding the JSON document.
pub const METADATA_KEY: &str = "stacklstm";
/// Prefix of the names of training (optimizer) tensors.
pub const TRAINING_PREFIX: &str = "training/";

/// What resuming training needs, kept opaque to this module so that file I/O does not depend
/// on the optimizers: `json` holds the optimizer config, step, epoch and RNG state; `tensors`
/// the optimizer's slots (moments ...) as `(name, shape, values)`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrainingState {
    /// Optimizer config, step, epoch, RNG state: whatever the trainer writes.
    pub json: Value,
    /// Optimizer slots `(name, shape, row-major values)`.
    pub tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
}

/// A native file's content.
#[derive(Debug, Clone)]
pub struct NativeFile {
    /// The model, weights set.
    pub model: Model,
    /// Preprocessing saved with the model (scalers, vocabulary ...), if any.
    pub preprocessing: Option<Value>,
    /// Training state of a checkpoint, if any.
    pub training: Option<TrainingState>,
}

/// Serialises a model (and optionally preprocessing and training state) as native bytes.
///
/// # Errors
/// [`Error::InvalidInput`] when a training tensor's name collides with a weight's or its
/// values do not fit its shape.
pub fn to_bytes(
    model: &Model,
    preprocessing: Option<&Value>,
    training: Option<&TrainingState>,
) -> Result<Vec<u8>> {
    let mut tensors: Vec<(String, Vec<usize>, &[f32])> = Vec::new();
    for layer in model.layers() {
        for w in layer.weights() {
            tensors.push((
                format!("{}/{}", layer.name(), w.name),
                w.shape.to_vec(),
                w.values,
            ));
        }
    }
    let training_json = match training {
        Some(t) => {
            for (name, shape, values) in &t.tensors {
                tensors.push((format!("{TRAINING_PREFIX}{name}"), shape.clone(), values));
            }
            let names: Vec<&str> = t.tensors.iter().map(|x| x.0.as_str()).collect();
            json!({"state": t.json, "tensors": names})
        }
        None => Value::Null,
    };
    let doc = json!({
        "format_version": FORMAT_VERSION,
        "model": model.spec(),
        "preprocessing": preprocessing.cloned().unwrap_or(Value::Null),
        "training": training_json,
    });
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), METADATA_KEY.to_string());
    meta.insert(METADATA_KEY.to_string(), doc.to_string());
    safetensors::to_bytes(&tensors, &meta)
}

/// Saves a model (and optional preprocessing) atomically.
///
/// # Errors
/// [`Error::Io`] when the file cannot be written; the previous file, if any, is left intact.
pub fn save(path: impl AsRef<Path>, model: &Model, preprocessing: Option<&Value>) -> Result<()> {
    save_checkpoint(path, model, preprocessing, None)
}

/// Saves a checkpoint: the model, optional preprocessing and the training state, atomically.
///
/// # Errors
/// As [`to_bytes`], and [`Error::Io`] when the file cannot be written (the previous file, if
/// any, is left intact).
pub fn save_checkpoint(
    path: impl AsRef<Path>,
    model: &Model,
    preprocessing: Option<&Value>,
    training: Option<&TrainingState>,
) -> Result<()> {
    let bytes = to_bytes(model, preprocessing, training)?;
    crate::io::write_atomic(path, &bytes)
}

/// Loads a native file (a model or a checkpoint).
///
/// # Errors
/// [`Error::Io`], [`Error::Format`] for a malformed, truncated or inconsistent file,
/// [`Error::UnsupportedFormat`] for a file of a newer format version or not written by
/// stacklstm.
pub fn load(path: impl AsRef<Path>) -> Result<NativeFile> {
    let path = path.as_ref();
    let (header, data) = safetensors::read_file(path)?;
    from_parts(&header, &data, &path.display().to_string())
}

/// [`load`] on the bytes of a file held in memory; `name` names it in errors.
///
/// # Errors
/// As [`load`].
pub fn from_bytes(bytes: &[u8], name: &str) -> Result<NativeFile> {
    let (header, data) = safetensors::parse_bytes(bytes, name)?;
    from_parts(&header, data, name)
}

/// Whether a validated safetensors header is a native stacklstm file.
pub fn is_native(header: &Header) -> bool {
    header.metadata.contains_key(METADATA_KEY)
}

/// Builds the file's content from a validated container.
pub(crate) fn from_parts(header: &Header, data: &[u8], file: &str) -> Result<NativeFile> {
    let bad = |msg: String| Error::format(file, msg);
    let doc_text = header.metadata.get(METADATA_KEY).ok_or_else(|| Error::UnsupportedFormat {
        found: format!("{file}: a safetensors file without stacklstm metadata"),
        supported: "native stacklstm files; load a PyTorch state_dict with the torch importer (and an architecture where needed)".into(),
    })?;
    let doc: Value = serde_json::from_str(doc_text)
        .map_err(|e| bad(format!("metadata '{METADATA_KEY}' is not valid JSON: {e}")))?;
    let version = doc
        .get("format_version")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("metadata has no integer format_version".into()))?;
    if version == 0 {
        return Err(bad("format_version 0 is not a valid version".into()));
    }
    if version > FORMAT_VERSION {
        return Err(Error::UnsupportedFormat {
            found: format!("{file}: format_version {version} (written by a newer stacklstm)"),
            supported: format!("format_version 1 to {FORMAT_VERSION}; upgrade stacklstm"),
        });
    }
    let spec: Sequential = serde_json::from_value(doc.get("model").cloned().unwrap_or(Value::Null))
        .map_err(|e| bad(format!("metadata 'model' is not a valid model config: {e}")))?;
    let expected = spec
        .weight_shapes()
        .map_err(|e| bad(format!("the model config is invalid: {e}")))?;
    let slot_names: Vec<String> = match doc.get("training") {
        None | Some(Value::Null) => Vec::new(),
        Some(t) => t
            .get("tensors")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("metadata 'training' has no 'tensors' list".into()))?
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad("a training tensor name is not a string".into()))
            })
            .collect::<Result<_>>()?,
    };

    // Every tensor of the file must be expected, with its exact shape, and vice versa.
    let mut problems = Vec::new();
    for (name, shape) in &expected {
        match header.get(name) {
            None => problems.push(format!("tensor '{name}' {shape:?} is missing")),
            Some(t) if &t.shape != shape => problems.push(format!(
                "tensor '{name}' has shape {:?} but the config needs {shape:?}",
                t.shape
            )),
            Some(_) => {}
        }
    }
    for name in &slot_names {
        if header.get(&format!("{TRAINING_PREFIX}{name}")).is_none() {
            problems.push(format!("training tensor '{name}' is missing"));
        }
    }
    let known = |n: &str| {
        expected.iter().any(|(e, _)| e == n)
            || n.strip_prefix(TRAINING_PREFIX)
                .is_some_and(|s| slot_names.iter().any(|x| x == s))
    };
    for t in &header.tensors {
        if !known(&t.name) {
            problems.push(format!("unexpected tensor '{}'", t.name));
        }
    }
    if !problems.is_empty() {
        problems.truncate(10);
        return Err(bad(format!(
            "the tensors do not match the model config: {}",
            problems.join("; ")
        )));
    }

    let mut weights = Vec::with_capacity(expected.len());
    for (name, shape) in &expected {
        // Present with this shape: checked above.
        let t = header
            .get(name)
            .ok_or_else(|| bad(format!("tensor '{name}' is missing")))?;
        let a = ArrayD::from_shape_vec(IxDyn(shape), safetensors::tensor_data(t, data))
            .map_err(|e| bad(format!("tensor '{name}': {e}")))?;
        weights.push(a);
    }
    let model = spec
        .build_with_weights(&weights)
        .map_err(|e| bad(format!("cannot restore the model: {e}")))?;

    let preprocessing = match doc.get("preprocessing") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.clone()),
    };
    let training = match doc.get("training") {
        None | Some(Value::Null) => None,
        Some(t) => {
            let mut tensors = Vec::with_capacity(slot_names.len());
            for name in &slot_names {
                let full = format!("{TRAINING_PREFIX}{name}");
                let info = header
                    .get(&full)
                    .ok_or_else(|| bad(format!("training tensor '{name}' is missing")))?;
                tensors.push((
                    name.clone(),
                    info.shape.clone(),
                    safetensors::tensor_data(info, data),
                ));
            }
            Some(TrainingState {
                json: t.get("state").cloned().unwrap_or(Value::Null),
                tensors,
            })
        }
    };
    Ok(NativeFile {
        model,
        preprocessing,
        training,
    })
}

impl Model {
    /// Saves the model in the native format (a safetensors file), atomically.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be written; a previous file is left intact.
    ///
    /// # Example
    /// ```no_run
    /// # use stacklstm::{Dense, Lstm, Model, Sequential};
    /// let model = Sequential::new().input_shape(3, 1).add(Lstm::new(4)).add(Dense::new(1)).build()?;
    /// model.save("model.safetensors")?;
    /// let again = Model::load("model.safetensors")?;
    /// # Ok::<(), stacklstm::Error>(())
    /// ```
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        save(path, self, None)
    }

    /// Loads a model from any supported file (native, `.keras`, PyTorch safetensors whose
    /// architecture can be inferred); see [`crate::io::load_model`].
    ///
    /// # Errors
    /// As [`crate::io::load_model`].
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        Ok(super::load_model(path, None)?.model)
    }
}
