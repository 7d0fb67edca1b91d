//! Parsing of a Keras 3 `config.json` (a serialized `Sequential` model).
//!
//! Every problem is collected before returning, so one error lists everything that is wrong
//! or unsupported in the file, not just the first thing found.

use serde_json::{Map, Value};

use crate::error::{Error, Result};

use super::{KerasLayer, KerasModel};

/// Activations an LSTM (and a Dense layer) accepts, by Keras name.
pub const LSTM_ACTIVATIONS: &[&str] = &["tanh", "sigmoid", "hard_sigmoid", "relu", "linear"];
/// Activations a Dense layer accepts.
pub const DENSE_ACTIVATIONS: &[&str] = &[
    "tanh",
    "sigmoid",
    "hard_sigmoid",
    "relu",
    "linear",
    "softmax",
];
/// Layer classes accepted in a model.
pub const LAYER_CLASSES: &[&str] = &["InputLayer", "LSTM", "Dense", "Dropout", "Embedding"];
/// Largest `units` / dimension accepted (guards the engine against absurd allocations).
const MAX_DIM: usize = 1 << 24;

/// What the parser found wrong, kept apart so that the error names the right category.
struct Findings {
    /// Malformed content (missing fields, wrong types, bad values).
    malformed: Vec<String>,
    /// Well-formed but unsupported classes and options.
    unsupported: Vec<String>,
}

/// One layer's `config` object, with its name for messages.
struct LayerCfg<'a> {
    label: String,
    cfg: &'a Map<String, Value>,
}

impl LayerCfg<'_> {
    fn usize(&self, key: &str, f: &mut Findings) -> usize {
        match self.cfg.get(key).and_then(Value::as_u64) {
            Some(v) if v >= 1 && v <= MAX_DIM as u64 => v as usize,
            Some(v) => {
                f.malformed.push(format!(
                    "{}: '{key}' = {v} is out of range 1..={MAX_DIM}",
                    self.label
                ));
                0
            }
            None => {
                f.malformed.push(format!(
                    "{}: '{key}' is missing or not a positive integer",
                    self.label
                ));
                0
            }
        }
    }

    fn bool(&self, key: &str, default: bool, f: &mut Findings) -> bool {
        match self.cfg.get(key) {
            None | Some(Value::Null) => default,
            Some(Value::Bool(b)) => *b,
            Some(v) => {
                f.malformed.push(format!(
                    "{}: '{key}' should be true or false, found {v}",
                    self.label
                ));
                default
            }
        }
    }

    /// A rate in [0, 1).
    fn rate(&self, key: &str, f: &mut Findings) -> f32 {
        match self.cfg.get(key) {
            None | Some(Value::Null) => 0.0,
            Some(v) => match v.as_f64() {
                Some(r) if (0.0..1.0).contains(&r) => r as f32,
                _ => {
                    f.malformed.push(format!(
                        "{}: '{key}' should be a number in [0, 1), found {v}",
                        self.label
                    ));
                    0.0
                }
            },
        }
    }

    /// Reports `key` as unsupported when it is true.
    fn forbid_true(&self, key: &str, f: &mut Findings) {
        if self.bool(key, false, f) {
            f.unsupported.push(format!("{}: {key}=true", self.label));
        }
    }

    /// Reports each of `keys` as unsupported when it is present and not null.
    fn forbid_set(&self, keys: &[&str], f: &mut Findings) {
        for key in keys {
            match self.cfg.get(*key) {
                None | Some(Value::Null) => {}
                Some(Value::Number(n)) if n.as_f64() == Some(0.0) => {}
                Some(v) => f
                    .unsupported
                    .push(format!("{}: {key}={}", self.label, short(v))),
            }
        }
    }

    fn activation(&self, key: &str, default: &str, allowed: &[&str], f: &mut Findings) -> String {
        let name = match self.cfg.get(key) {
            None => Some(default.to_string()),
            Some(Value::Null) => Some("linear".to_string()),
            Some(Value::String(s)) => Some(s.clone()),
            // A built-in function serialized as an object: {"class_name": "function", "config": "tanh"}.
            Some(Value::Object(o)) => match (o.get("class_name"), o.get("config")) {
                (Some(Value::String(c)), Some(Value::String(n))) if c == "function" => {
                    Some(n.clone())
                }
                _ => None,
            },
            Some(_) => None,
        };
        match name {
            Some(n) if allowed.contains(&n.as_str()) => n,
            Some(n) => {
                f.unsupported.push(format!("{}: {key} '{n}'", self.label));
                n
            }
            None => {
                let v = self.cfg.get(key).map(short).unwrap_or_default();
                f.unsupported.push(format!("{}: {key} {v}", self.label));
                String::new()
            }
        }
    }

    /// Only float32 weights are supported.
    fn dtype(&self, f: &mut Findings) {
        let name = match self.cfg.get("dtype") {
            None | Some(Value::Null) => return,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(Value::Object(o)) => o
                .get("config")
                .and_then(|c| c.get("name"))
                .and_then(Value::as_str),
            Some(_) => None,
        };
        match name {
            Some("float32") => {}
            Some(n) => f.unsupported.push(format!("{}: dtype '{n}'", self.label)),
            None => f
                .malformed
                .push(format!("{}: unreadable 'dtype'", self.label)),
        }
    }
}

/// A short rendering of a JSON value for messages.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        let cut: String = s.chars().take(57).collect();
        format!("{cut}...")
    } else {
        s
    }
}

const REGULARIZERS: &[&str] = &[
    "kernel_regularizer",
    "bias_regularizer",
    "activity_regularizer",
    "kernel_constraint",
    "bias_constraint",
];

/// Parses a `[batch, T, F]` (or `[batch, T]` for token ids) shape.
fn parse_shape(v: &Value, label: &str, f: &mut Findings) -> Option<(Option<usize>, usize, usize)> {
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
    let mut f = Findings {
        malformed: Vec::new(),
        unsupported: Vec::new(),
    };
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

    let mut input: Option<(Option<usize>, usize, usize)> = None;
    let mut layers = Vec::new();
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
        let lname = lcfg
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let l = LayerCfg {
            label: format!("layer '{lname}' ({class})"),
            cfg: lcfg,
        };
        // The input shape can be given on the first layer itself.
        if input.is_none() && i == 0 {
            if let Some(v) = lcfg
                .get("batch_shape")
                .or_else(|| lcfg.get("batch_input_shape"))
            {
                if !v.is_null() {
                    input = parse_shape(v, &l.label, &mut f);
                }
            }
        }
        match class {
            "InputLayer" => {
                if i != 0 {
                    f.unsupported
                        .push(format!("{}: InputLayer not first (position {i})", l.label));
                }
                l.forbid_true("sparse", &mut f);
                l.forbid_true("ragged", &mut f);
                if i == 0 && input.is_none() {
                    f.malformed.push(format!("{}: no 'batch_shape'", l.label));
                }
            }
            "LSTM" => {
                l.dtype(&mut f);
                l.forbid_true("go_backwards", &mut f);
                l.forbid_true("time_major", &mut f);
                l.forbid_set(REGULARIZERS, &mut f);
                l.forbid_set(&["recurrent_regularizer", "recurrent_constraint"], &mut f);
                layers.push(KerasLayer::Lstm {
                    units: l.usize("units", &mut f),
                    return_sequences: l.bool("return_sequences", false, &mut f),
                    return_state: l.bool("return_state", false, &mut f),
                    activation: l.activation("activation", "tanh", LSTM_ACTIVATIONS, &mut f),
                    recurrent_activation: l.activation(
                        "recurrent_activation",
                        "sigmoid",
                        LSTM_ACTIVATIONS,
                        &mut f,
                    ),
                    use_bias: l.bool("use_bias", true, &mut f),
                    unit_forget_bias: l.bool("unit_forget_bias", true, &mut f),
                    dropout: l.rate("dropout", &mut f),
                    recurrent_dropout: l.rate("recurrent_dropout", &mut f),
                    stateful: l.bool("stateful", false, &mut f),
                    name: lname,
                });
            }
            "Dense" => {
                l.dtype(&mut f);
                l.forbid_set(REGULARIZERS, &mut f);
                l.forbid_set(&["lora_rank", "quantization_config"], &mut f);
                layers.push(KerasLayer::Dense {
                    units: l.usize("units", &mut f),
                    activation: l.activation("activation", "linear", DENSE_ACTIVATIONS, &mut f),
                    use_bias: l.bool("use_bias", true, &mut f),
                    name: lname,
                });
            }
            "Dropout" => {
                l.forbid_set(&["noise_shape"], &mut f);
                if lcfg.get("rate").is_none() {
                    f.malformed.push(format!("{}: 'rate' missing", l.label));
                }
                layers.push(KerasLayer::Dropout {
                    rate: l.rate("rate", &mut f),
                    name: lname,
                });
            }
            "Embedding" => {
                l.dtype(&mut f);
                l.forbid_true("mask_zero", &mut f);
                l.forbid_true("sparse", &mut f);
                l.forbid_set(
                    &[
                        "embeddings_regularizer",
                        "embeddings_constraint",
                        "activity_regularizer",
                        "lora_rank",
                    ],
                    &mut f,
                );
                if i > 1
                    || (i == 1
                        && !matches!(
                            layer_values
                                .first()
                                .and_then(|v| v.get("class_name"))
                                .and_then(Value::as_str),
                            Some("InputLayer")
                        ))
                {
                    f.unsupported.push(format!(
                        "{}: Embedding that is not the first layer",
                        l.label
                    ));
                }
                layers.push(KerasLayer::Embedding {
                    input_dim: l.usize("input_dim", &mut f),
                    output_dim: l.usize("output_dim", &mut f),
                    name: lname,
                });
            }
            other => f
                .unsupported
                .push(format!("layer '{lname}' of class {other}")),
        }
    }

    if input.is_none() {
        if let Some(v) = cfg.get("build_input_shape").filter(|v| !v.is_null()) {
            input = parse_shape(v, "model build_input_shape", &mut f);
        }
    }
    let input_shape = match input {
        Some((t, feat, rank)) => {
            let embedding_first = matches!(layers.first(), Some(KerasLayer::Embedding { .. }));
            if rank == 2 && !embedding_first {
                f.unsupported
                    .push("2-D input [batch, timesteps] without an Embedding first".to_string());
            }
            if rank == 3 && embedding_first {
                f.unsupported
                    .push("3-D input into an Embedding".to_string());
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
    if layers.is_empty() && f.malformed.is_empty() && f.unsupported.is_empty() {
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
                "Sequential models of {}; LSTM/Dense activations {} (Dense also softmax); \
                 no go_backwards, time_major, regularizers, constraints, masking, non-float32 dtypes",
                LAYER_CLASSES.join(", "),
                LSTM_ACTIVATIONS.join(", ")
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
