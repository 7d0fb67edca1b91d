//! Reading model files written by Keras 3 into neutral structs.
//!
//! * `.keras` files ([`read_keras_file`]): a zip holding `config.json` (the model, parsed by
//!   [`parse_keras_config`]), `metadata.json` and `model.weights.h5` (the weights).
//! * `.weights.h5` files ([`read_weights_h5`], [`read_weights_h5_bytes`]): the weights alone,
//!   in the same HDF5 layout.
//!
//! The HDF5 layer is a small reader of our own (see the `hdf5` module's documentation for why);
//! the zip layer is the `zip` crate with only its pure-Rust deflate decoder enabled (Keras
//! stores its entries uncompressed, but a re-zipped file may be deflated).
//!
//! All input is treated as hostile: a malformed, truncated or malicious file gives
//! [`Error::Format`] naming the file and the problem, never a panic, a hang or an allocation
//! larger than the file justifies.

mod archive;
mod config;
mod hdf5;

use std::path::Path;

use ndarray::{ArrayD, IxDyn};

use crate::error::{shape_str, Error, Result};
use crate::layers::{LayerConfig, LayerSpec};
use crate::model::{Model, Sequential};

pub use archive::{MAX_CONFIG_BYTES, MAX_WEIGHTS_BYTES};
pub use config::parse_keras_config;

/// A Keras `Sequential` model's structure, as read from `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct KerasModel {
    /// The model's name.
    pub name: String,
    /// `(timesteps, features)` of one input sequence; `timesteps` is `None` for a
    /// variable-length model. For a model starting with an `Embedding`, `features` is 1.
    pub input_shape: (Option<usize>, usize),
    /// The layers' specs, input side first (the `InputLayer` is not included), each named
    /// as in the file and read by its kind's [`FromKeras`](crate::layers::keras::FromKeras)
    /// hook.
    pub layers: Vec<LayerSpec>,
    /// `keras_version` from `metadata.json`, when read from a `.keras` file.
    pub keras_version: Option<String>,
}

impl KerasModel {
    /// The layers' names (the Keras names, also their group names in the weights file).
    pub fn layer_names(&self) -> Vec<&str> {
        self.layers
            .iter()
            .map(|l| l.config().explicit_name().unwrap_or(""))
            .collect()
    }
}

/// A float32 array in row-major (C) order.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values.
    pub data: Vec<f32>,
}

/// The variables of each layer of a weights file.
///
/// Each layer's variables are in the file's order: the layer's own `vars`, then those of
/// nested objects by path (`cell/vars`). For most layers that is Keras order, as its spec's
/// [`LayerConfig::weight_shapes`] lists them (an LSTM: `kernel [in, 4u]`,
/// `recurrent_kernel [u, 4u]`, `bias [4u]` when it has one; a layer without weights:
/// none); a layer for which it is not says where each of its weights is
/// ([`LayerConfig::keras_file_order`]: a Bidirectional's `backward_layer` sorts before its
/// `forward_layer`), and [`weights_into`] follows it. From [`read_keras_file`] the layers
/// are in the model's order; from [`read_weights_h5`] in the file's order (by name), so
/// look them up with [`KerasWeights::get`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KerasWeights {
    /// `(layer name, its variables in the file's order)`.
    pub layers: Vec<(String, Vec<Tensor>)>,
}

impl KerasWeights {
    /// The variables of the layer called `name`.
    pub fn get(&self, name: &str) -> Option<&[Tensor]> {
        self.layers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// Reads a Keras 3 `.keras` file: the model's structure and its weights.
///
/// The weights are checked against the model (every layer present, every shape as the layer
/// needs) and returned in the model's layer order.
pub fn read_keras_file(path: &Path) -> Result<(KerasModel, KerasWeights)> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    read_keras_reader(std::io::BufReader::new(file), len, &name)
}

/// [`read_keras_file`] on the bytes of a `.keras` file held in memory.
pub fn read_keras_bytes(bytes: &[u8], name_for_errors: &str) -> Result<(KerasModel, KerasWeights)> {
    read_keras_reader(
        std::io::Cursor::new(bytes),
        bytes.len() as u64,
        name_for_errors,
    )
}

fn read_keras_reader<R: std::io::Read + std::io::Seek>(
    reader: R,
    len: u64,
    name: &str,
) -> Result<(KerasModel, KerasWeights)> {
    let parts = archive::read_parts(reader, len, name)?;
    let config_name = format!("{name}!config.json");
    let config_text = std::str::from_utf8(&parts.config)
        .map_err(|_| Error::format(&config_name, "config.json is not UTF-8"))?;
    let mut model = parse_keras_config(config_text, &config_name)?;
    model.keras_version = parts.keras_version;
    let h5_name = format!("{name}!model.weights.h5");
    let weights = read_weights_h5_bytes(&parts.weights, &h5_name)?;
    let weights = match_weights(&model, weights, &h5_name)?;
    Ok((model, weights))
}

/// Reads a Keras 3 `.weights.h5` file (as written by `model.save_weights()`).
pub fn read_weights_h5(path: &Path) -> Result<KerasWeights> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    read_weights_h5_bytes(&bytes, &path.display().to_string())
}

/// Reads Keras 3 HDF5 weights held in memory; `name_for_errors` names them in errors.
pub fn read_weights_h5_bytes(bytes: &[u8], name_for_errors: &str) -> Result<KerasWeights> {
    hdf5::read_weights(bytes, name_for_errors)
}

/// A layer's variables `vars`, listed as the file lists them, in the layer's Keras order
/// ([`LayerConfig::keras_file_order`]); as they are when the layer keeps the file's order,
/// or when their count is not the one the order is for (the shape check reports that).
fn in_keras_order<'a>(layer: &dyn LayerConfig, vars: &'a [Tensor]) -> Vec<&'a Tensor> {
    match layer.keras_file_order(vars.len()) {
        Some(order) if order.len() == vars.len() && order.iter().all(|&i| i < vars.len()) => {
            order.iter().map(|&i| &vars[i]).collect()
        }
        _ => vars.iter().collect(),
    }
}

/// Checks `weights` against `model` and returns them in the model's layer order.
///
/// Every layer must have exactly the variables its configuration implies
/// ([`LayerConfig::weight_shapes`], in the file's order for the layer,
/// [`LayerConfig::keras_file_order`]), with the right shapes (a layer without weights
/// none). Weights for layers the model does not have are an error too. All mismatches are
/// listed in one [`Error::Format`]. The variables are returned as the file lists them.
///
/// # Errors
/// [`Error::Format`] as above; [`Error::InvalidConfig`] for a layer whose options give no
/// valid weights (an absurd size).
pub fn match_weights(
    model: &KerasModel,
    weights: KerasWeights,
    file: &str,
) -> Result<KerasWeights> {
    let mut problems = Vec::new();
    let mut remaining = weights.layers;
    let mut out = Vec::with_capacity(model.layers.len());
    let mut width = model.input_shape.1;
    for (layer, name) in model.layers.iter().zip(model.layer_names()) {
        let vars = match remaining.iter().position(|(n, _)| n == name) {
            Some(i) => remaining.remove(i).1,
            None => Vec::new(),
        };
        let layer = layer.config();
        let expected: Vec<Vec<usize>> = layer
            .weight_shapes(name, width)?
            .into_iter()
            .map(|(_, shape)| shape)
            .collect();
        width = layer.output_width(width);
        let got: Vec<Vec<usize>> = in_keras_order(layer, &vars)
            .into_iter()
            .map(|t| t.shape.clone())
            .collect();
        if got != expected {
            let fmt = |v: &[Vec<usize>]| {
                v.iter()
                    .map(|s| shape_str(s))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            problems.push(format!(
                "layer '{name}': expected variables [{}], found [{}]",
                fmt(&expected),
                fmt(&got)
            ));
        }
        out.push((name.to_string(), vars));
    }
    for (name, vars) in &remaining {
        if !vars.is_empty() {
            problems.push(format!(
                "weights for layer '{name}', which the model does not have"
            ));
        }
    }
    if problems.is_empty() {
        Ok(KerasWeights { layers: out })
    } else {
        Err(Error::format(file, problems.join("; ")))
    }
}

/// The stacklstm model spec of a Keras model: its name, input shape and layer specs
/// (seed 0).
pub fn to_spec(model: &KerasModel) -> Sequential {
    let mut spec = Sequential::new().name(model.name.clone());
    spec.input_shape = Some(model.input_shape);
    spec.layers.clone_from(&model.layers);
    spec
}

/// Builds the model of a `.keras` file: its config with its weights (as [`read_keras_file`]
/// returns them, in model order).
///
/// # Errors
/// [`Error::InvalidConfig`] when the layers do not stack, and [`Error::Format`] when the
/// weights do not fit.
pub fn to_model(model: &KerasModel, weights: &KerasWeights) -> Result<Model> {
    weights_into(&to_spec(model), weights, &model.name)
}

/// Sets Keras weights (found by layer name) into a model built from `spec`: how a
/// `.weights.h5` file is loaded with a given architecture.
///
/// # Errors
/// [`Error::Format`] naming every layer of `spec` without weights in the file, weights of
/// layers `spec` lacks, and shapes that do not fit.
pub fn weights_into(spec: &Sequential, weights: &KerasWeights, file: &str) -> Result<Model> {
    let names = spec.layer_names()?;
    let expected = spec.weight_shapes()?;
    let mut problems = Vec::new();
    let mut arrays = Vec::with_capacity(expected.len());
    let mut it = expected.iter();
    for (layer, name) in spec.layers.iter().zip(&names) {
        let n_vars = expected
            .iter()
            .filter(|(e, _)| e.split_once('/').map(|x| x.0) == Some(name.as_str()))
            .count();
        let vars = in_keras_order(layer.config(), weights.get(name).unwrap_or(&[]));
        if vars.len() != n_vars {
            problems.push(format!(
                "layer '{name}' needs {n_vars} weight tensors, the file has {}",
                vars.len()
            ));
        }
        for (k, want) in it.by_ref().take(n_vars).enumerate() {
            let Some(t) = vars.get(k) else { continue };
            if t.shape != want.1 {
                problems.push(format!(
                    "{}: shape {} in the file, the architecture needs {}",
                    want.0,
                    shape_str(&t.shape),
                    shape_str(&want.1)
                ));
                continue;
            }
            arrays.push(
                ArrayD::from_shape_vec(IxDyn(&t.shape), t.data.clone())
                    .map_err(|e| Error::format(file, format!("{}: {e}", want.0)))?,
            );
        }
    }
    for (n, vars) in &weights.layers {
        if !vars.is_empty() && !names.contains(n) {
            problems.push(format!(
                "weights for layer '{n}', which the architecture lacks"
            ));
        }
    }
    if !problems.is_empty() {
        let have: Vec<&str> = weights.layers.iter().map(|(n, _)| n.as_str()).collect();
        return Err(Error::format(
            file,
            format!(
                "the weights do not fit the architecture: {} (layers in the file: {})",
                problems.join("; "),
                have.join(", ")
            ),
        ));
    }
    spec.build_with_weights(&arrays)
}
