//! Reading one layer's options from a Keras 3 `config.json`: the typed reader a layer's
//! [`FromKeras`] hook uses.
//!
//! A hook never fails: it reads what it can, records every problem in the
//! [`KerasConfig`], and returns a spec. Problems come in two kinds, kept apart so that
//! the file reader can report the right error for the whole file at once: *malformed*
//! (a missing field, a wrong type, a value out of range) and *unsupported* (well-formed,
//! but an option the engine cannot run, such as `go_backwards=true`). Each message starts
//! with the layer's label, `layer '<name>' (<class>)`.

use std::fmt;

use serde_json::{Map, Value};

use crate::kernels::activation::Activation;

/// The largest `units` / dimension a Keras file may declare (guards the engine against
/// absurd allocations).
pub const MAX_DIM: usize = 1 << 24;

/// The regularizer and constraint options of Keras layers with a kernel and a bias, which
/// the engine does not implement.
pub const REGULARIZERS: &[&str] = &[
    "kernel_regularizer",
    "bias_regularizer",
    "activity_regularizer",
    "kernel_constraint",
    "bias_constraint",
];

/// A layer spec that can be read from a Keras layer's `config` object.
///
/// The registry (`layer_registry!` in the parent module) names each layer's Keras class
/// and dispatches a class to its spec's `from_keras`.
pub trait FromKeras: Sized {
    /// What the engine supports of this Keras class, for the error that lists unsupported
    /// content (e.g. `"Dropout (no noise_shape)"`).
    const KERAS_SUPPORT: &'static str;

    /// The spec of the layer whose options `cfg` holds, named after the Keras layer.
    /// Every problem found is recorded in `cfg`; the returned spec is only used when there
    /// are none.
    fn from_keras(cfg: &mut KerasConfig<'_>) -> Self;
}

/// What was found wrong in a Keras file, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KerasProblems {
    /// Malformed content (missing fields, wrong types, bad values).
    pub malformed: Vec<String>,
    /// Well-formed but unsupported classes and options.
    pub unsupported: Vec<String>,
}

impl KerasProblems {
    /// Appends `other`'s problems to these.
    pub fn extend(&mut self, other: KerasProblems) {
        self.malformed.extend(other.malformed);
        self.unsupported.extend(other.unsupported);
    }
    /// Whether nothing was found wrong.
    pub fn is_empty(&self) -> bool {
        self.malformed.is_empty() && self.unsupported.is_empty()
    }
}

/// One Keras layer's `config` object, with typed getters that record what they find wrong.
#[derive(Debug)]
pub struct KerasConfig<'a> {
    name: &'a str,
    label: String,
    cfg: &'a Map<String, Value>,
    problems: KerasProblems,
}

impl<'a> KerasConfig<'a> {
    /// The `config` object `cfg` of a layer of Keras class `class`.
    pub fn new(class: &str, cfg: &'a Map<String, Value>) -> Self {
        let name = cfg.get("name").and_then(Value::as_str).unwrap_or("");
        KerasConfig {
            name,
            label: format!("layer '{name}' ({class})"),
            cfg,
            problems: KerasProblems::default(),
        }
    }

    /// The layer's name (`""` when the file gives none).
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// `layer '<name>' (<class>)`, how messages name the layer.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.cfg.get(key)
    }

    /// Records a malformed-content problem (prefixed with the label).
    pub fn malformed(&mut self, msg: impl fmt::Display) {
        let m = format!("{}: {msg}", self.label);
        self.problems.malformed.push(m);
    }

    /// Records an unsupported option (prefixed with the label).
    pub fn unsupported(&mut self, msg: impl fmt::Display) {
        let m = format!("{}: {msg}", self.label);
        self.problems.unsupported.push(m);
    }

    /// The problems recorded so far.
    pub fn problems(&self) -> &KerasProblems {
        &self.problems
    }

    /// The problems recorded, consuming the reader.
    pub fn into_problems(self) -> KerasProblems {
        self.problems
    }

    /// A required integer in `1..=MAX_DIM` (0 when missing or bad, with the problem
    /// recorded).
    pub fn dim(&mut self, key: &str) -> usize {
        match self.cfg.get(key).and_then(Value::as_u64) {
            Some(v) if v >= 1 && v <= MAX_DIM as u64 => v as usize,
            Some(v) => {
                self.malformed(format_args!("'{key}' = {v} is out of range 1..={MAX_DIM}"));
                0
            }
            None => {
                self.malformed(format_args!("'{key}' is missing or not a positive integer"));
                0
            }
        }
    }

    /// A boolean, `default` when absent or null.
    pub fn bool(&mut self, key: &str, default: bool) -> bool {
        match self.cfg.get(key) {
            None | Some(Value::Null) => default,
            Some(Value::Bool(b)) => *b,
            Some(v) => {
                self.malformed(format_args!("'{key}' should be true or false, found {v}"));
                default
            }
        }
    }

    /// A rate in `[0, 1)`, 0 when absent or null.
    pub fn rate(&mut self, key: &str) -> f32 {
        match self.cfg.get(key) {
            None | Some(Value::Null) => 0.0,
            Some(v) => match v.as_f64() {
                Some(r) if (0.0..1.0).contains(&r) => r as f32,
                _ => {
                    self.malformed(format_args!(
                        "'{key}' should be a number in [0, 1), found {v}"
                    ));
                    0.0
                }
            },
        }
    }

    /// A finite number, `default` when absent or null.
    pub fn float(&mut self, key: &str, default: f64) -> f64 {
        match self.cfg.get(key) {
            None | Some(Value::Null) => default,
            Some(v) => match v.as_f64() {
                Some(r) if r.is_finite() => r,
                _ => {
                    self.malformed(format_args!("'{key}' should be a finite number, found {v}"));
                    default
                }
            },
        }
    }

    /// Records `key` as missing unless it is present.
    pub fn require(&mut self, key: &str) {
        if self.cfg.get(key).is_none() {
            self.malformed(format_args!("'{key}' missing"));
        }
    }

    /// Records `key` as unsupported when it is true.
    pub fn forbid_true(&mut self, key: &str) {
        if self.bool(key, false) {
            self.unsupported(format_args!("{key}=true"));
        }
    }

    /// Records each of `keys` as unsupported when it is present and neither null nor 0.
    pub fn forbid_set(&mut self, keys: &[&str]) {
        for key in keys {
            match self.cfg.get(*key) {
                None | Some(Value::Null) => {}
                Some(Value::Number(n)) if n.as_f64() == Some(0.0) => {}
                Some(v) => {
                    let v = short(v);
                    self.unsupported(format_args!("{key}={v}"));
                }
            }
        }
    }

    /// An activation by Keras name (a string, null for linear, or a serialized built-in
    /// function), `default` when absent; one outside `allowed` is recorded as unsupported
    /// (and `default` returned).
    pub fn activation(
        &mut self,
        key: &str,
        default: Activation,
        allowed: &[Activation],
    ) -> Activation {
        let name = match self.cfg.get(key) {
            None => return default,
            Some(Value::Null) => Some("linear"),
            Some(Value::String(s)) => Some(s.as_str()),
            // A built-in function serialized as an object:
            // {"class_name": "function", "config": "tanh"}.
            Some(Value::Object(o)) => match (o.get("class_name"), o.get("config")) {
                (Some(Value::String(c)), Some(Value::String(n))) if c == "function" => {
                    Some(n.as_str())
                }
                _ => None,
            },
            Some(_) => None,
        };
        match name {
            Some(n) => match Activation::from_name(n) {
                Ok(a) if allowed.contains(&a) && n == a.name() => a,
                _ => {
                    self.unsupported(format_args!("{key} '{n}'"));
                    default
                }
            },
            None => {
                let v = self.cfg.get(key).map(short).unwrap_or_default();
                self.unsupported(format_args!("{key} {v}"));
                default
            }
        }
    }

    /// Records a `dtype` other than float32 (the only one supported) as unsupported.
    pub fn dtype(&mut self) {
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
            Some(n) => self.unsupported(format_args!("dtype '{n}'")),
            None => self.malformed("unreadable 'dtype'"),
        }
    }
}

/// A short rendering of a JSON value for messages.
pub fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        let cut: String = s.chars().take(57).collect();
        format!("{cut}...")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> Map<String, Value> {
        match serde_json::from_str(json) {
            Ok(Value::Object(m)) => m,
            other => panic!("not an object: {other:?}"),
        }
    }

    #[test]
    fn getters_record_problems_by_kind() {
        let m = cfg(
            r#"{"name": "l", "units": 0, "flag": "yes", "rate": 1.5, "go": true,
                "reg": {"class_name": "L2"}, "zero": 0, "act": "swish", "dtype": "float16"}"#,
        );
        let mut c = KerasConfig::new("X", &m);
        assert_eq!(c.name(), "l");
        assert_eq!(c.dim("units"), 0);
        assert_eq!(c.dim("missing"), 0);
        assert!(c.bool("flag", true));
        assert_eq!(c.rate("rate"), 0.0);
        c.require("absent");
        c.forbid_true("go");
        c.forbid_set(&["reg", "zero", "absent"]);
        let all = [Activation::Tanh];
        assert_eq!(
            c.activation("act", Activation::Tanh, &all),
            Activation::Tanh
        );
        c.dtype();
        let p = c.into_problems();
        assert_eq!(p.malformed.len(), 5, "{p:?}");
        assert!(p.malformed.iter().all(|m| m.starts_with("layer 'l' (X): ")));
        assert_eq!(
            p.unsupported,
            [
                "layer 'l' (X): go=true",
                "layer 'l' (X): reg={\"class_name\":\"L2\"}",
                "layer 'l' (X): act 'swish'",
                "layer 'l' (X): dtype 'float16'",
            ]
        );
    }

    #[test]
    fn activations_in_every_serialized_form() {
        let m = cfg(
            r#"{"a": "relu", "b": null, "c": {"class_name": "function", "config": "sigmoid"},
                "d": 3, "e": "softmax", "f": "none"}"#,
        );
        let mut c = KerasConfig::new("X", &m);
        let lstm = [Activation::Relu, Activation::Linear, Activation::Sigmoid];
        let t = Activation::Tanh;
        assert_eq!(c.activation("a", t, &lstm), Activation::Relu);
        assert_eq!(c.activation("b", t, &lstm), Activation::Linear);
        assert_eq!(c.activation("c", t, &lstm), Activation::Sigmoid);
        assert_eq!(c.activation("absent", t, &lstm), t);
        assert!(c.problems().is_empty());
        c.activation("d", t, &lstm);
        c.activation("e", t, &lstm);
        // Only Keras' own spelling: "none" is not a Keras activation name.
        c.activation("f", t, &lstm);
        assert_eq!(c.problems().unsupported.len(), 3, "{:?}", c.problems());
    }
}
