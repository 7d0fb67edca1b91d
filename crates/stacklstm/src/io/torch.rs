//! Import of PyTorch `state_dict`s saved as safetensors: `nn.LSTM` modules (any
//! `num_layers`) and `nn.Linear` heads, mapped onto LSTM and Dense layers.
//!
//! Per LSTM sub-layer `k` of a module `m` (`m.weight_ih_l{k}` `[4u, in]`, `m.weight_hh_l{k}`
//! `[4u, u]`, `m.bias_ih_l{k}`, `m.bias_hh_l{k}` `[4u]`): `kernel = weight_ihᵀ`,
//! `recurrent_kernel = weight_hhᵀ`, `bias = bias_ih + bias_hh`. PyTorch's gate order i, f, g, o
//! is Keras' i, f, c, o, so no reordering. A Linear `m.weight` `[out, in]`, `m.bias` `[out]`:
//! `kernel = weightᵀ`.
//!
//! A `state_dict` does not record how modules are connected, so the architecture is either
//! given ([`super::Arch`]) or inferred: LSTM modules in natural name order (`lstm0`, `lstm1`,
//! ..., `lstm10`), then Linear modules likewise, each layer's input width equal to the previous
//! output width; a module with `num_layers = n` becomes `n` LSTM layers. Inferred LSTMs return
//! sequences except the last, the Dense layers are linear, and the number of timesteps is left
//! variable. Anything else (a model that returns sequences into a per-timestep head, a Dense
//! activation, a fixed length) needs an explicit architecture.

use std::collections::BTreeMap;

use ndarray::{ArrayD, IxDyn};

use super::safetensors::{tensor_data, Header, TensorInfo};
use super::Arch;
use crate::error::{shape_str, Error, Result};
use crate::layers::dense::Dense;
use crate::layers::lstm::Lstm;
use crate::layers::LayerSpec;
use crate::model::{Model, Sequential};

/// One sub-layer of an `nn.LSTM`.
#[derive(Debug, Default, Clone)]
struct LstmSub<'a> {
    w_ih: Option<&'a TensorInfo>,
    w_hh: Option<&'a TensorInfo>,
    b_ih: Option<&'a TensorInfo>,
    b_hh: Option<&'a TensorInfo>,
}

/// A module found in the `state_dict`.
#[derive(Debug, Clone)]
enum Module<'a> {
    Lstm(BTreeMap<usize, LstmSub<'a>>),
    Linear {
        weight: Option<&'a TensorInfo>,
        bias: Option<&'a TensorInfo>,
    },
}

/// Orders `lstm2` before `lstm10`: digit runs compare as numbers.
fn natural_key(s: &str) -> Vec<(u8, u128, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        let mut run = String::new();
        let digit = c.is_ascii_digit();
        while let Some(&c) = chars.peek() {
            if c.is_ascii_digit() != digit {
                break;
            }
            run.push(c);
            chars.next();
        }
        if digit {
            out.push((0, run.parse().unwrap_or(u128::MAX), String::new()));
        } else {
            out.push((1, 0, run));
        }
    }
    out
}

/// Groups the tensors into modules; unknown names are an error listing them.
fn modules<'a>(header: &'a Header, file: &str) -> Result<Vec<(String, Module<'a>)>> {
    let mut found: BTreeMap<String, Module<'a>> = BTreeMap::new();
    let mut unknown = Vec::new();
    for t in &header.tensors {
        let (prefix, param) = t.name.rsplit_once('.').unwrap_or(("", t.name.as_str()));
        let lstm_param = ["weight_ih_l", "weight_hh_l", "bias_ih_l", "bias_hh_l"]
            .iter()
            .find_map(|p| param.strip_prefix(p).map(|rest| (*p, rest)));
        if let Some((p, rest)) = lstm_param {
            let Ok(k) = rest.parse::<usize>() else {
                unknown.push(t.name.clone());
                continue;
            };
            if k > 1024 {
                unknown.push(t.name.clone());
                continue;
            }
            let entry = found
                .entry(prefix.to_string())
                .or_insert_with(|| Module::Lstm(BTreeMap::new()));
            let Module::Lstm(subs) = entry else {
                unknown.push(t.name.clone());
                continue;
            };
            let sub = subs.entry(k).or_default();
            match p {
                "weight_ih_l" => sub.w_ih = Some(t),
                "weight_hh_l" => sub.w_hh = Some(t),
                "bias_ih_l" => sub.b_ih = Some(t),
                _ => sub.b_hh = Some(t),
            }
        } else if param == "weight" || param == "bias" {
            let entry = found.entry(prefix.to_string()).or_insert(Module::Linear {
                weight: None,
                bias: None,
            });
            match entry {
                Module::Linear { weight, .. } if param == "weight" => *weight = Some(t),
                Module::Linear { bias, .. } => *bias = Some(t),
                Module::Lstm(_) => unknown.push(t.name.clone()),
            }
        } else {
            unknown.push(t.name.clone());
        }
    }
    if !unknown.is_empty() {
        unknown.truncate(10);
        return Err(Error::UnsupportedFormat {
            found: format!("{file}: tensors {}", unknown.join(", ")),
            supported: "nn.LSTM parameters (weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k}; not bidirectional, no proj_size) and nn.Linear weight/bias".into(),
        });
    }
    let mut v: Vec<(String, Module<'a>)> = found.into_iter().collect();
    v.sort_by_key(|(n, m)| (matches!(m, Module::Linear { .. }), natural_key(n)));
    Ok(v)
}

/// One of our layers, sourced from a module.
struct Source<'a> {
    module: String,
    kind: SourceKind<'a>,
}

enum SourceKind<'a> {
    Lstm(usize, LstmSub<'a>),
    Linear(Option<&'a TensorInfo>, Option<&'a TensorInfo>),
}

/// Every layer the modules provide, in inferred order.
fn sources<'a>(mods: &[(String, Module<'a>)], file: &str) -> Result<Vec<Source<'a>>> {
    let mut out = Vec::new();
    for (name, m) in mods {
        match m {
            Module::Lstm(subs) => {
                for (i, (k, sub)) in subs.iter().enumerate() {
                    if *k != i {
                        return Err(Error::format(
                            file,
                            format!("LSTM module '{name}' has sub-layer {k} but not {i}"),
                        ));
                    }
                    out.push(Source {
                        module: name.clone(),
                        kind: SourceKind::Lstm(*k, sub.clone()),
                    });
                }
            }
            Module::Linear { weight, bias } => out.push(Source {
                module: name.clone(),
                kind: SourceKind::Linear(*weight, *bias),
            }),
        }
    }
    Ok(out)
}

fn dims2(t: Option<&TensorInfo>, what: &str, file: &str) -> Result<(usize, usize)> {
    match t {
        Some(t) if t.shape.len() == 2 => Ok((t.shape[0], t.shape[1])),
        Some(t) => Err(Error::format(
            file,
            format!(
                "{}: expected a 2-D tensor, found {}",
                t.name,
                shape_str(&t.shape)
            ),
        )),
        None => Err(Error::format(file, format!("{what} is missing"))),
    }
}

/// The architecture inferred from the modules (see the module documentation).
fn infer_spec(srcs: &[Source<'_>], file: &str) -> Result<Sequential> {
    let hint = "give the architecture explicitly (--arch)";
    let mut spec = Sequential::new().name("torch");
    let mut width: Option<usize> = None;
    let n_lstm = srcs
        .iter()
        .filter(|s| matches!(s.kind, SourceKind::Lstm(..)))
        .count();
    if n_lstm == 0 {
        return Err(Error::format(
            file,
            "no nn.LSTM parameters (weight_ih_l0 ...) found: not an LSTM state_dict",
        ));
    }
    let mut seen_lstm = 0;
    for s in srcs {
        let (input, out, layer): (usize, usize, LayerSpec) = match &s.kind {
            SourceKind::Lstm(k, sub) => {
                seen_lstm += 1;
                let what = format!("{}.weight_ih_l{k}", s.module);
                let (g, input) = dims2(sub.w_ih, &what, file)?;
                let what = format!("{}.weight_hh_l{k}", s.module);
                let (_, units) = dims2(sub.w_hh, &what, file)?;
                if g == 3 * units {
                    return Err(Error::UnsupportedFormat {
                        found: format!(
                            "{file}: {} has 3 x hidden size {units} gate rows, an nn.GRU",
                            s.module
                        ),
                        supported: "PyTorch nn.LSTM and nn.Linear state_dicts (a GRU model loads from its Keras .keras or .weights.h5 file)".into(),
                    });
                }
                if g != 4 * units {
                    return Err(Error::format(
                        file,
                        format!("{}: {g} rows, expected 4 x hidden size {units}", s.module),
                    ));
                }
                let lstm = Lstm::new(units)
                    .return_sequences(seen_lstm < n_lstm)
                    .use_bias(sub.b_ih.is_some() || sub.b_hh.is_some());
                (input, units, lstm.into())
            }
            SourceKind::Linear(w, b) => {
                let (out, input) = dims2(*w, &format!("{}.weight", s.module), file)?;
                (input, out, Dense::new(out).use_bias(b.is_some()).into())
            }
        };
        if let Some(w) = width {
            if w != input {
                return Err(Error::format(
                    file,
                    format!(
                        "cannot infer the layer order: '{}' takes width {input} but the layer before it outputs {w}; {hint}",
                        s.module
                    ),
                ));
            }
        } else {
            if !matches!(s.kind, SourceKind::Lstm(..)) {
                return Err(Error::format(
                    file,
                    format!(
                        "cannot infer the layer order: Linear '{}' before every LSTM; {hint}",
                        s.module
                    ),
                ));
            }
            spec = spec.input_features(input);
        }
        width = Some(out);
        spec = spec.add(layer);
    }
    Ok(spec)
}

/// Transposes a row-major `[r, c]` buffer.
fn transpose(v: &[f32], r: usize, c: usize) -> Vec<f32> {
    let mut out = vec![0.0; v.len()];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = v[i * c + j];
        }
    }
    out
}

/// Keras-layout weights of one source, checked against the layer spec it is mapped onto.
fn layer_weights(
    src: &Source<'_>,
    spec: &LayerSpec,
    name: &str,
    input: usize,
    data: &[u8],
    file: &str,
) -> Result<Vec<ArrayD<f32>>> {
    let fit = |t: &TensorInfo, want: &[usize]| -> Result<Vec<f32>> {
        if t.shape != want {
            return Err(Error::format(
                file,
                format!(
                    "{} has shape {} but layer '{name}' needs {}",
                    t.name,
                    shape_str(&t.shape),
                    shape_str(want)
                ),
            ));
        }
        Ok(tensor_data(t, data))
    };
    let arr = |shape: &[usize], v: Vec<f32>| {
        ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|e| Error::format(file, e.to_string()))
    };
    match (&src.kind, spec) {
        (SourceKind::Lstm(k, sub), LayerSpec::Lstm(l)) => {
            let (u, g) = (l.units, 4 * l.units);
            let miss = |p: &str| Error::format(file, format!("{}.{p}_l{k} is missing", src.module));
            let w_ih = fit(sub.w_ih.ok_or_else(|| miss("weight_ih"))?, &[g, input])?;
            let w_hh = fit(sub.w_hh.ok_or_else(|| miss("weight_hh"))?, &[g, u])?;
            let mut out = vec![
                arr(&[input, g], transpose(&w_ih, g, input))?,
                arr(&[u, g], transpose(&w_hh, g, u))?,
            ];
            let mut bias = vec![0.0f32; g];
            for b in [sub.b_ih, sub.b_hh].into_iter().flatten() {
                for (acc, v) in bias.iter_mut().zip(fit(b, &[g])?) {
                    *acc += v;
                }
            }
            if l.use_bias {
                out.push(arr(&[g], bias)?);
            } else if bias.iter().any(|&v| v != 0.0) {
                return Err(Error::format(
                    file,
                    format!(
                        "layer '{name}' has use_bias false but '{}' has non-zero biases",
                        src.module
                    ),
                ));
            }
            Ok(out)
        }
        (SourceKind::Linear(w, b), LayerSpec::Dense(d)) => {
            let w =
                w.ok_or_else(|| Error::format(file, format!("{}.weight is missing", src.module)))?;
            let k = fit(w, &[d.units, input])?;
            let mut out = vec![arr(&[input, d.units], transpose(&k, d.units, input))?];
            match (b, d.use_bias) {
                (Some(b), true) => out.push(arr(&[d.units], fit(b, &[d.units])?)?),
                (None, true) => out.push(arr(&[d.units], vec![0.0; d.units])?),
                (Some(b), false) => {
                    if tensor_data(b, data).iter().any(|&v| v != 0.0) {
                        return Err(Error::format(
                            file,
                            format!(
                                "layer '{name}' has use_bias false but '{}' has a non-zero bias",
                                src.module
                            ),
                        ));
                    }
                }
                (None, false) => {}
            }
            Ok(out)
        }
        (SourceKind::Lstm(..), _) => Err(Error::format(
            file,
            format!(
                "layer '{name}' is not an LSTM but is mapped to LSTM module '{}'",
                src.module
            ),
        )),
        (SourceKind::Linear(..), _) => Err(Error::format(
            file,
            format!(
                "layer '{name}' is not a Dense layer but is mapped to Linear module '{}'",
                src.module
            ),
        )),
    }
}

/// Builds a model from a validated safetensors `state_dict`, with an explicit architecture or
/// an inferred one.
///
/// # Errors
/// [`Error::UnsupportedFormat`] for tensors that are not LSTM/Linear parameters,
/// [`Error::Format`] when the architecture cannot be inferred (the message says to give one),
/// when a given one does not fit (naming the module and shapes), or leaves modules unused.
pub fn from_parts(header: &Header, data: &[u8], arch: Option<&Arch>, file: &str) -> Result<Model> {
    let mods = modules(header, file)?;
    let srcs = sources(&mods, file)?;
    let (spec, chosen): (Sequential, Vec<Option<usize>>) = match arch {
        None => (
            infer_spec(&srcs, file)?,
            (0..srcs.len()).map(Some).collect(),
        ),
        Some(a) => (a.spec.clone(), map_explicit(a, &srcs, file)?),
    };
    let names = spec.layer_names()?;
    // Checks sizes before anything is allocated.
    spec.weight_shapes()?;
    let mut width = spec.input_shape.map_or(0, |s| s.1);
    let mut weights = Vec::new();
    for ((layer, name), i) in spec.layers.iter().zip(&names).zip(&chosen) {
        if let Some(i) = i {
            weights.extend(layer_weights(&srcs[*i], layer, name, width, data, file)?);
        }
        width = layer.config().output_width(width);
    }
    spec.build_with_weights(&weights)
}

/// Which source each layer of an explicit architecture takes: the module its `from` names
/// (the next unused sub-layer of an `nn.LSTM`), else the next unused source of the right kind.
/// Dropout layers have no weights and take no source.
fn map_explicit(arch: &Arch, srcs: &[Source<'_>], file: &str) -> Result<Vec<Option<usize>>> {
    let mut used = vec![false; srcs.len()];
    let mut out = Vec::with_capacity(arch.spec.layers.len());
    for (k, layer) in arch.spec.layers.iter().enumerate() {
        let want_lstm = match layer {
            LayerSpec::Lstm(_) => true,
            LayerSpec::Dense(_) => false,
            LayerSpec::Dropout(_) => {
                out.push(None);
                continue;
            }
            _ => {
                return Err(Error::UnsupportedFormat {
                    found: format!(
                        "{file}: architecture layer #{k} of a kind PyTorch import does not map"
                    ),
                    supported: "LSTM, Dense and Dropout layers".into(),
                })
            }
        };
        let from = arch.sources.get(k).and_then(|s| s.as_deref());
        let pick = srcs.iter().enumerate().position(|(i, s)| {
            !used[i]
                && matches!(s.kind, SourceKind::Lstm(..)) == want_lstm
                && from.is_none_or(|f| f == s.module)
        });
        let Some(i) = pick else {
            let what = if want_lstm {
                "nn.LSTM layer"
            } else {
                "nn.Linear"
            };
            let wher = from.map_or(String::new(), |f| format!(" in module '{f}'"));
            return Err(Error::format(
                file,
                format!(
                    "architecture layer #{k} needs an unused {what}{wher}; the file has none left"
                ),
            ));
        };
        used[i] = true;
        out.push(Some(i));
    }
    let unused: Vec<&str> = srcs
        .iter()
        .zip(&used)
        .filter(|(_, u)| !**u)
        .map(|(s, _)| s.module.as_str())
        .collect();
    if !unused.is_empty() {
        return Err(Error::format(
            file,
            format!(
                "modules not used by the architecture: {}",
                unused.join(", ")
            ),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order() {
        let mut v = vec!["lstm10", "lstm2", "lstm1"];
        v.sort_by_key(|s| natural_key(s));
        assert_eq!(v, vec!["lstm1", "lstm2", "lstm10"]);
    }

    #[test]
    fn transpose_2x3() {
        assert_eq!(
            transpose(&[1., 2., 3., 4., 5., 6.], 2, 3),
            vec![1., 4., 2., 5., 3., 6.]
        );
    }
}
