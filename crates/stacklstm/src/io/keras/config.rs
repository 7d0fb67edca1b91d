//! Parsing of a Keras 3 `config.json` (a serialized `Sequential` model).
//!
//! This file knows the structure of the file (the model object, the layer list, the
//! `InputLayer`, where the input shape can be given); each layer's options are read by its
//! own [`FromKeras`](crate::layers::keras::FromKeras) hook, found through the layer
//! registry by Keras class name. Every problem is collected before returning, so one error
//! lists everything that is wrong or unsupported in the file, not just the first thing
//! found.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::layers::keras::{short, KerasConfig, KerasProblems, MAX_DIM};
use crate::layers::LayerSpec;

use super::KerasModel;

/// The Keras class of the optional first entry that only declares the input shape.
const INPUT_LAYER: &str = "InputLayer";

/// Parses a `[batch, T, F]` (or `[batch, T]` for token ids) shape.
fn parse_shape(
    v: &Value,
    label: &str,
    f: &mut KerasProblems,
) -> Option<(Option<usize>, usize, usize)> {
    let arr = match v.as_array() {
        Some(a) => a,
        None => {
            f.malformed
                .push(format!("{label}: input shape {} is not a list", short(v)));
            return None;
        }
    };
    let dim = |x: &Value| -> std::result::Result<Option<usize>, ()> {
        match x {
            Value::Null => Ok(None),
            _ => match x.as_u64() {
                Some(d) if d >= 1 && d <= MAX_DIM as u64 => Ok(Some(d as usize)),
                _ => Err(()),
            },
        }
    };
    let dims: std::result::Result<Vec<Option<usize>>, ()> = arr.iter().map(dim).collect();
    match dims.as_deref() {
        Ok([_, t, Some(feat)]) => Some((*t, *feat, 3)),
        Ok([_, t]) => Some((*t, 1, 2)),
        Ok(_) => {
            f.unsupported.push(format!(
                "{label}: input shape {} (expected [batch, timesteps, features])",
                short(v)
            ));
            None
        }
        Err(()) => {
            f.malformed
                .push(format!("{label}: invalid input shape {}", short(v)));
            None
        }
    }
}

/// Parses a Keras 3 `config.json` holding a `Sequential` model.
///
/// `name_for_errors` names the file in error messages. Malformed content gives
/// [`Error::Format`]; well-formed content that stacklstm cannot run (other layer classes,
/// options such as `go_backwards=true`, unknown activations, non-`Sequential` models) gives
/// [`Error::UnsupportedFormat`] listing every such item found.
///
/// The input shape comes from the `InputLayer`'s `batch_shape` (or `batch_input_shape`), else
/// the first layer's, else the model's `build_input_shape`. A 2-D `[batch, T]` shape (token ids
/// for an `Embedding`) gives `features = 1`.
pub fn parse_keras_config(json: &str, name_for_errors: &str) -> Result<KerasModel> {
    let file = name_for_errors;
    let root: Value = serde_json::from_str(json)
        .map_err(|e| Error::format(file, format!("config.json is not valid JSON: {e}")))?;
    let mut f = KerasProblems::default();
    let top = root
        .as_object()
        .ok_or_else(|| Error::format(file, "config.json: top level is not an object"))?;
    match top.get("class_name").and_then(Value::as_str) {
        Some("Sequential") => {}
        Some(other) => f
            .unsupported
            .push(format!("model class '{other}' (only Sequential)")),
        None => f
            .malformed
            .push("config.json: 'class_name' missing".to_string()),
    }
    let cfg = top
        .get("config")
        .and_then(Value::as_object)
        .ok_or_else(|| Error::format(file, "config.json: 'config' object missing"))?;
    let name = cfg
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let layer_values = cfg
        .get("layers")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::format(file, "config.json: 'config.layers' list missing"))?;
    let input_layer_first = layer_values
        .first()
        .and_then(|v| v.get("class_name"))
        .and_then(Value::as_str)
        == Some(INPUT_LAYER);

    let mut input: Option<(Option<usize>, usize, usize)> = None;
    let mut layers: Vec<LayerSpec> = Vec::new();
    for (i, lv) in layer_values.iter().enumerate() {
        let class = lv.get("class_name").and_then(Value::as_str);
        let lcfg = lv.get("config").and_then(Value::as_object);
        let (class, lcfg) = match (class, lcfg) {
            (Some(c), Some(l)) => (c, l),
            _ => {
                f.malformed
                    .push(format!("layer #{i}: 'class_name' or 'config' missing"));
                continue;
            }
        };
        let mut l = KerasConfig::new(class, lcfg);
        // The input shape can be given on the first layer itself.
        if input.is_none() && i == 0 {
            if let Some(v) = lcfg
                .get("batch_shape")
                .or_else(|| lcfg.get("batch_input_shape"))
            {
                if !v.is_null() {
                    input = parse_shape(v, l.label(), &mut f);
                }
            }
        }
        if class == INPUT_LAYER {
            if i != 0 {
                l.unsupported(format_args!("InputLayer not first (position {i})"));
            }
            l.forbid_true("sparse");
            l.forbid_true("ragged");
            if i == 0 && input.is_none() {
                l.malformed("no 'batch_shape'");
            }
        } else if let Some(spec) = LayerSpec::from_keras(class, &mut l) {
            // A layer reading token ids must come first (after the InputLayer, if any).
            let first = i == 0 || (i == 1 && input_layer_first);
            if spec.config().takes_token_ids() && !first {
                let kind = spec.config().kind();
                l.unsupported(format_args!("{kind} that is not the first layer"));
            }
            layers.push(spec);
        } else {
            let lname = l.name();
            f.unsupported
                .push(format!("layer '{lname}' of class {class}"));
        }
        f.extend(l.into_problems());
    }

    if input.is_none() {
        if let Some(v) = cfg.get("build_input_shape").filter(|v| !v.is_null()) {
            input = parse_shape(v, "model build_input_shape", &mut f);
        }
    }
    let input_shape = match input {
        Some((t, feat, rank)) => {
            let ids_first = layers.first().is_some_and(|l| l.config().takes_token_ids());
            if rank == 2 && !ids_first {
                f.unsupported
                    .push("2-D input [batch, timesteps] without an Embedding first".to_string());
            }
            if rank == 3 && ids_first {
                let kind = layers.first().map_or("", |l| l.config().kind());
                f.unsupported.push(format!("3-D input into an {kind}"));
            }
            (t, feat)
        }
        None => {
            if f.malformed.is_empty() {
                f.unsupported.push("a model without a known input shape (no InputLayer batch_shape; the model was never built)".to_string());
            }
            (None, 0)
        }
    };
    if layers.is_empty() && f.is_empty() {
        f.malformed.push("the model has no layers".to_string());
    }

    if !f.malformed.is_empty() {
        let mut msg = format!("config.json: {}", f.malformed.join("; "));
        if !f.unsupported.is_empty() {
            msg.push_str(&format!("; also unsupported: {}", f.unsupported.join("; ")));
        }
        return Err(Error::format(file, msg));
    }
    if !f.unsupported.is_empty() {
        return Err(Error::UnsupportedFormat {
            found: format!("in {file}: {}", f.unsupported.join("; ")),
            supported: format!(
                "Sequential models of {INPUT_LAYER}, {}; float32 weights",
                LayerSpec::KERAS_SUPPORT.join(", ")
            ),
        });
    }
    Ok(KerasModel {
        name,
        input_shape,
        layers,
        keras_version: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(input: &str, layers: &[&str]) -> String {
        let layers: Vec<String> = layers
            .iter()
            .map(|l| match *l {
                "in" => format!(
                    r#"{{"class_name": "InputLayer", "config": {{"name": "in", "batch_shape": {input}}}}}"#
                ),
                "emb" => r#"{"class_name": "Embedding", "config": {"name": "emb", "input_dim": 9, "output_dim": 2}}"#.into(),
                "lstm" => r#"{"class_name": "LSTM", "config": {"name": "lstm", "units": 2, "return_sequences": true}}"#.into(),
                other => panic!("{other}"),
            })
            .collect();
        format!(
            r#"{{"class_name": "Sequential", "config": {{"name": "m", "layers": [{}]}}}}"#,
            layers.join(", ")
        )
    }

    fn unsupported(json: &str) -> String {
        match parse_keras_config(json, "m.json") {
            Err(Error::UnsupportedFormat { found, .. }) => found,
            other => panic!("expected UnsupportedFormat, got {other:?}"),
        }
    }

    #[test]
    fn token_id_layers_come_first_on_a_2d_input() {
        let m = parse_keras_config(&model("[null, 5]", &["in", "emb", "lstm"]), "m.json").unwrap();
        assert_eq!(m.input_shape, (Some(5), 1));
        assert_eq!(m.layer_names(), ["emb", "lstm"]);
        let found = unsupported(&model("[null, 5, 2]", &["in", "lstm", "emb"]));
        assert!(
            found.contains("layer 'emb' (Embedding): Embedding that is not the first layer"),
            "{found}"
        );
        let found = unsupported(&model("[null, 5]", &["in", "lstm"]));
        assert!(
            found.contains("2-D input [batch, timesteps] without an Embedding first"),
            "{found}"
        );
        let found = unsupported(&model("[null, 5, 2]", &["in", "emb"]));
        assert!(found.contains("3-D input into an Embedding"), "{found}");
        let found = unsupported(&model("[null, 5, 2]", &["in", "lstm", "in"]));
        assert!(
            found.contains("InputLayer not first (position 2)"),
            "{found}"
        );
    }
}
