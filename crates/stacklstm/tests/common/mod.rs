//! Golden fixtures (real Keras 3 / PyTorch output): loading `case.json` into a model.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ndarray::{Array3, ArrayD, IxDyn};
use serde_json::Value;
use stacklstm::{
    Activation, Bidirectional, Dense, Embedding, Gru, LayerSpec, Loss, Lstm, Masking, MergeMode,
    Model, Sequential,
};

/// `$var`, else `shared/<folder>` beside the repository (`../shared/<folder>` from the
/// repository root) or above it.
fn shared_dir(var: &str, folder: &str) -> PathBuf {
    if let Ok(p) = std::env::var(var) {
        return PathBuf::from(p);
    }
    // `../shared/<folder>` from the repository root; a checkout placed deeper (a worktree)
    // finds it in the nearest ancestor that has one.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    root.ancestors()
        .map(|a| a.join("shared").join(folder))
        .find(|p| p.is_dir())
        .unwrap_or_else(|| root.join("../../../shared").join(folder))
}

/// The stacked-LSTM fixtures: `$STACKLSTM_FIXTURES`, else `shared/fixtures` beside the
/// repository or above it.
pub fn fixtures_dir() -> PathBuf {
    shared_dir("STACKLSTM_FIXTURES", "fixtures")
}

/// The GRU, Bidirectional and masking fixtures: `$STACKLSTM_FIXTURES_RNN`, else
/// `shared/fixtures-rnn` beside the repository or above it.
pub fn rnn_fixtures_dir() -> PathBuf {
    shared_dir("STACKLSTM_FIXTURES_RNN", "fixtures-rnn")
}

/// Every case folder of [`fixtures_dir`], sorted (see [`case_dirs_in`]).
pub fn case_dirs() -> Vec<PathBuf> {
    case_dirs_in(&fixtures_dir())
}

/// Every case folder of [`rnn_fixtures_dir`], sorted (see [`case_dirs_in`]).
pub fn rnn_case_dirs() -> Vec<PathBuf> {
    case_dirs_in(&rnn_fixtures_dir())
}

/// Every case folder (one holding `case.json`) of `dir`, sorted. Panics if there is none: a
/// parity test that finds nothing must fail, not pass.
pub fn case_dirs_in(dir: &Path) -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read fixtures folder {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("case.json").is_file())
        .collect();
    cases.sort();
    assert!(
        !cases.is_empty(),
        "no fixture case found under {}",
        dir.display()
    );
    cases
}

/// A tensor `{"shape": [...], "data": [...]}`.
pub fn tensor(v: &Value) -> Result<ArrayD<f32>, String> {
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .ok_or("tensor without shape")?
        .iter()
        .map(|d| d.as_u64().map(|d| d as usize).ok_or("bad dim"))
        .collect::<Result<_, _>>()?;
    let data: Vec<f32> = v["data"]
        .as_array()
        .ok_or("tensor without data")?
        .iter()
        .map(|d| d.as_f64().map(|d| d as f32).ok_or("bad value"))
        .collect::<Result<_, _>>()?;
    ArrayD::from_shape_vec(IxDyn(&shape), data).map_err(|e| e.to_string())
}

/// One fixture case.
pub struct Case {
    pub name: String,
    pub dir: PathBuf,
    pub json: Value,
    pub model: Model,
    pub x: Array3<f32>,
    pub loss: Loss,
}

fn activation(v: &Value, what: &str) -> Result<Activation, String> {
    let name = v.as_str().ok_or(format!("{what} is not a string"))?;
    Activation::from_name(name).map_err(|e| format!("{what}: {e}"))
}

/// The case's loss; an unknown loss is an error (not a skip).
pub fn loss_of(json: &Value) -> Result<Loss, String> {
    match json["loss"]["type"].as_str() {
        Some("mse") => Ok(Loss::Mse),
        Some("sparse_categorical_crossentropy_from_logits") => {
            Ok(Loss::SparseCategoricalCrossentropy { from_logits: true })
        }
        Some("categorical_crossentropy") => {
            Ok(Loss::CategoricalCrossentropy { from_logits: false })
        }
        other => Err(format!("unsupported loss {other:?}")),
    }
}

/// Fails on a field of `l` outside `known`: the fixture schema is complete, so an unknown
/// option is a failure, not something to skip.
fn reject_unknown(l: &Value, known: &[&str], what: &str) -> Result<(), String> {
    match l
        .as_object()
        .and_then(|o| o.keys().find(|k| !known.contains(&k.as_str())))
    {
        Some(k) => Err(format!("{what}: unsupported option '{k}'")),
        None => Ok(()),
    }
}

/// An `"lstm"` or `"gru"` layer object as a spec; any other type or an unknown option is an
/// error.
fn recurrent(l: &Value, what: &str) -> Result<LayerSpec, String> {
    let units = l["units"].as_u64().ok_or(format!("{what}: units"))? as usize;
    let rs = l["return_sequences"].as_bool().unwrap_or(false);
    let act = activation(&l["activation"], "activation")?;
    let rec = activation(&l["recurrent_activation"], "recurrent_activation")?;
    let bias = l["use_bias"].as_bool().unwrap_or(true);
    let common = [
        "type",
        "units",
        "return_sequences",
        "activation",
        "recurrent_activation",
        "use_bias",
    ];
    match l["type"].as_str() {
        Some("lstm") => {
            reject_unknown(
                l,
                &[&common[..], &["unit_forget_bias"]].concat(),
                &format!("{what}: LSTM"),
            )?;
            Ok(Lstm::new(units)
                .return_sequences(rs)
                .activation(act)
                .recurrent_activation(rec)
                .use_bias(bias)
                .unit_forget_bias(l["unit_forget_bias"].as_bool().unwrap_or(true))
                .into())
        }
        Some("gru") => {
            reject_unknown(
                l,
                &[&common[..], &["reset_after"]].concat(),
                &format!("{what}: GRU"),
            )?;
            Ok(Gru::new(units)
                .return_sequences(rs)
                .activation(act)
                .recurrent_activation(rec)
                .use_bias(bias)
                .reset_after(l["reset_after"].as_bool().unwrap_or(true))
                .into())
        }
        other => Err(format!("{what}: not an LSTM or GRU layer: {other:?}")),
    }
}

/// Builds the case's model with its weights; every unknown layer, option or activation is an
/// error.
pub fn load_case(dir: &Path) -> Result<Case, String> {
    let text = std::fs::read_to_string(dir.join("case.json")).map_err(|e| e.to_string())?;
    let json: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let name = json["name"].as_str().unwrap_or("?").to_string();
    let x = tensor(&json["input"])?;
    // Token ids `[B, T]` are the single feature of a `[B, T, 1]` input.
    let x = if x.ndim() == 2 {
        x.insert_axis(ndarray::Axis(2))
    } else {
        x
    };
    let x = x
        .into_dimensionality::<ndarray::Ix3>()
        .map_err(|e| format!("input: {e}"))?;
    let m = &json["model"];
    let shape = m["input_shape"].as_array().ok_or("input_shape")?;
    let features = match shape.len() {
        1 => 1,
        _ => shape[1].as_u64().ok_or("input_shape[1]")? as usize,
    };
    let mut seq = Sequential::new().name(name.clone());
    seq = match shape[0].as_u64() {
        Some(t) => seq.input_shape(t as usize, features),
        None => seq.input_features(features),
    };
    for (i, l) in m["layers"].as_array().ok_or("layers")?.iter().enumerate() {
        let what = format!("layer {i}");
        seq = match l["type"].as_str() {
            Some("lstm" | "gru") => seq.add(recurrent(l, &what)?),
            Some("bidirectional") => {
                reject_unknown(l, &["type", "merge_mode", "layer"], &what)?;
                let mode = l["merge_mode"]
                    .as_str()
                    .ok_or(format!("{what}: merge_mode"))?;
                let mode = MergeMode::from_name(mode).map_err(|e| format!("{what}: {e}"))?;
                let inner = recurrent(&l["layer"], &format!("{what}: wrapped layer"))?;
                seq.add(Bidirectional::new(inner).merge_mode(mode))
            }
            Some("masking") => {
                reject_unknown(l, &["type", "mask_value"], &format!("{what}: Masking"))?;
                let v = l["mask_value"]
                    .as_f64()
                    .ok_or(format!("{what}: mask_value"))?;
                seq.add(Masking::new(v as f32))
            }
            Some("embedding") => {
                let known = ["type", "input_dim", "output_dim", "mask_zero"];
                reject_unknown(l, &known, &format!("{what}: Embedding"))?;
                let dim = |k: &str| {
                    l[k].as_u64()
                        .map(|v| v as usize)
                        .ok_or(format!("{what}: {k}"))
                };
                seq.add(
                    Embedding::new(dim("input_dim")?, dim("output_dim")?)
                        .mask_zero(l["mask_zero"].as_bool().unwrap_or(false)),
                )
            }
            Some("dense") => {
                reject_unknown(
                    l,
                    &["type", "units", "activation"],
                    &format!("{what}: Dense"),
                )?;
                let units = l["units"].as_u64().ok_or(format!("{what}: units"))? as usize;
                seq.add(Dense::new(units).activation(activation(&l["activation"], "activation")?))
            }
            other => return Err(format!("{what}: unsupported layer type {other:?}")),
        };
    }
    let mut model = seq.build().map_err(|e| e.to_string())?;
    model
        .set_weights(&weights(&json["weights"])?)
        .map_err(|e| e.to_string())?;
    let loss = loss_of(&json)?;
    Ok(Case {
        name,
        dir: dir.to_path_buf(),
        json,
        model,
        x,
        loss,
    })
}

/// A weights list (one object per layer, Keras order kernel, recurrent_kernel, bias; a
/// Bidirectional layer's `{"forward": {...}, "backward": {...}}`, the forward copy's
/// first), flattened in Keras' `get_weights()` order.
pub fn weights(v: &Value) -> Result<Vec<ArrayD<f32>>, String> {
    let mut out = Vec::new();
    for layer in v.as_array().ok_or("weights is not a list")? {
        if layer.get("forward").is_some() || layer.get("backward").is_some() {
            reject_unknown(layer, &["forward", "backward"], "Bidirectional weights")?;
            for copy in ["forward", "backward"] {
                let what = format!("Bidirectional {copy} weights");
                let w = &layer[copy];
                if !w.is_object() {
                    return Err(format!("{what}: not an object: {w}"));
                }
                reject_unknown(w, &["kernel", "recurrent_kernel", "bias"], &what)?;
                layer_weights(w, &mut out)?;
            }
        } else {
            layer_weights(layer, &mut out)?;
        }
    }
    Ok(out)
}

/// One layer's `embeddings`, `kernel`, `recurrent_kernel`, `bias` (those present),
/// appended to `out`.
fn layer_weights(layer: &Value, out: &mut Vec<ArrayD<f32>>) -> Result<(), String> {
    for key in ["embeddings", "kernel", "recurrent_kernel", "bias"] {
        if !layer[key].is_null() {
            out.push(tensor(&layer[key])?);
        }
    }
    Ok(())
}

/// `max |a - b|`.
pub fn max_abs_diff(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f32 {
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// `max |b|`.
pub fn max_abs(b: &ArrayD<f32>) -> f32 {
    b.iter().map(|v| v.abs()).fold(0.0, f32::max)
}
