//! Import of PyTorch `state_dict`s saved as safetensors: `nn.LSTM` and `nn.GRU` modules (any
//! `num_layers`) and `nn.Linear` heads, mapped onto LSTM, GRU and Dense layers.
//!
//! Both recurrent modules name their tensors alike. Per sub-layer `k` of a module `m`:
//! `m.weight_ih_l{k}` `[G, in]`, `m.weight_hh_l{k}` `[G, u]`, `m.bias_ih_l{k}` and
//! `m.bias_hh_l{k}` `[G]` (neither with `bias=False`), where the number of gate rows `G`
//! tells the kinds apart: `4u` is an `nn.LSTM`, `3u` an `nn.GRU`.
//!
//! * **LSTM**: `kernel = weight_ihᵀ`, `recurrent_kernel = weight_hhᵀ`,
//!   `bias = bias_ih + bias_hh`. PyTorch's gate order i, f, g, o is Keras' i, f, c, o, so no
//!   reordering.
//! * **GRU**: PyTorch's gate order is r, z, n where Keras' is z, r, h; write `P` for the swap
//!   of the first two `u`-wide gate blocks (its own inverse). `kernel = P(weight_ih)ᵀ`,
//!   `recurrent_kernel = P(weight_hh)ᵀ`, `bias [2, 3u]` with rows `P(bias_ih)` (input) and
//!   `P(bias_hh)` (recurrent). PyTorch's GRU is Keras' `reset_after=True` form, so the layer
//!   has `reset_after` true; an architecture asking for `reset_after` false is refused.
//! * **Linear**: `m.weight` `[out, in]`, `m.bias` `[out]`: `kernel = weightᵀ`.
//!
//! Without biases a recurrent layer has `use_bias` false.
//!
//! A `state_dict` does not record how modules are connected, so the architecture is either
//! given ([`super::Arch`]) or inferred: recurrent modules (`nn.LSTM` and `nn.GRU`) in natural
//! name order (`gru0`, `gru1`, ..., `gru10`), then Linear modules likewise, each layer's input
//! width equal to the previous output width; a module with `num_layers = n` becomes `n`
//! layers. Inferred recurrent layers return sequences except the last, the Dense layers are
//! linear, and the number of timesteps is left variable. Anything else (a model that returns
//! sequences into a per-timestep head, a Dense activation, a fixed length) needs an explicit
//! architecture, whose LSTM, GRU and Dense layers take the modules of their kind in order or
//! the one their `"from"` names.
//!
//! A bidirectional module (`_reverse` tensors) is refused for now with an error that says
//! so; the mapping keeps the reverse tensors of each sub-layer apart for when it is added.

use std::collections::BTreeMap;

use ndarray::{ArrayD, IxDyn};

use super::safetensors::{tensor_data, Header, TensorInfo};
use super::Arch;
use crate::error::{shape_str, Error, Result};
use crate::layers::dense::Dense;
use crate::layers::gru::Gru;
use crate::layers::lstm::Lstm;
use crate::layers::{permute_gate_blocks, transpose, LayerSpec};
use crate::model::{Model, Sequential};

/// Keras GRU gate block `k` (z, r, h) is PyTorch block `TORCH_GRU_BLOCKS[k]` (r, z, n), and
/// the other way round: the swap `P` is its own inverse.
const TORCH_GRU_BLOCKS: [usize; 3] = [1, 0, 2];

/// The kind of a recurrent module, told apart by its gate rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cell {
    Lstm,
    Gru,
}

impl Cell {
    /// Gate blocks per sub-layer: `G = gates · u`.
    fn gates(self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru => 3,
        }
    }

    /// The PyTorch module.
    fn module(self) -> &'static str {
        match self {
            Cell::Lstm => "nn.LSTM",
            Cell::Gru => "nn.GRU",
        }
    }

    /// The layer it becomes (its Keras class).
    fn layer(self) -> &'static str {
        match self {
            Cell::Lstm => "LSTM",
            Cell::Gru => "GRU",
        }
    }
}

/// The tensors of one direction of a recurrent sub-layer, as found.
#[derive(Debug, Default, Clone, Copy)]
struct RnnTensors<'a> {
    w_ih: Option<&'a TensorInfo>,
    w_hh: Option<&'a TensorInfo>,
    b_ih: Option<&'a TensorInfo>,
    b_hh: Option<&'a TensorInfo>,
}

impl RnnTensors<'_> {
    fn any(&self) -> Option<&TensorInfo> {
        self.w_ih.or(self.w_hh).or(self.b_ih).or(self.b_hh)
    }
}

/// Sub-layer `l{k}` of a recurrent module: its tensors, and the `_reverse` ones of a
/// bidirectional module.
#[derive(Debug, Default, Clone, Copy)]
struct RnnSub<'a> {
    forward: RnnTensors<'a>,
    reverse: RnnTensors<'a>,
}

/// A module found in the `state_dict`.
#[derive(Debug, Clone)]
enum Module<'a> {
    /// An `nn.LSTM` or `nn.GRU`, by sub-layer.
    Rnn(BTreeMap<usize, RnnSub<'a>>),
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

/// The recurrent parameter a tensor name's last part names: which of the four, its
/// sub-layer, and whether it is the reverse direction's (`weight_ih_l0_reverse`).
fn rnn_param(param: &str) -> Option<(&'static str, &str, bool)> {
    let (p, rest) = ["weight_ih_l", "weight_hh_l", "bias_ih_l", "bias_hh_l"]
        .iter()
        .find_map(|p| param.strip_prefix(p).map(|rest| (*p, rest)))?;
    Some(match rest.strip_suffix("_reverse") {
        Some(k) => (p, k, true),
        None => (p, rest, false),
    })
}

/// Groups the tensors into modules; unknown names are an error listing them.
fn modules<'a>(header: &'a Header, file: &str) -> Result<Vec<(String, Module<'a>)>> {
    let mut found: BTreeMap<String, Module<'a>> = BTreeMap::new();
    let mut unknown = Vec::new();
    for t in &header.tensors {
        let (prefix, param) = t.name.rsplit_once('.').unwrap_or(("", t.name.as_str()));
        if let Some((p, rest, reverse)) = rnn_param(param) {
            let k = match rest.parse::<usize>() {
                Ok(k) if k <= 1024 => k,
                _ => {
                    unknown.push(t.name.clone());
                    continue;
                }
            };
            let entry = found
                .entry(prefix.to_string())
                .or_insert_with(|| Module::Rnn(BTreeMap::new()));
            let Module::Rnn(subs) = entry else {
                unknown.push(t.name.clone());
                continue;
            };
            let sub = subs.entry(k).or_default();
            let dir = if reverse {
                &mut sub.reverse
            } else {
                &mut sub.forward
            };
            match p {
                "weight_ih_l" => dir.w_ih = Some(t),
                "weight_hh_l" => dir.w_hh = Some(t),
                "bias_ih_l" => dir.b_ih = Some(t),
                _ => dir.b_hh = Some(t),
            }
        } else if param == "weight" || param == "bias" {
            let entry = found.entry(prefix.to_string()).or_insert(Module::Linear {
                weight: None,
                bias: None,
            });
            match entry {
                Module::Linear { weight, .. } if param == "weight" => *weight = Some(t),
                Module::Linear { bias, .. } => *bias = Some(t),
                Module::Rnn(_) => unknown.push(t.name.clone()),
            }
        } else {
            unknown.push(t.name.clone());
        }
    }
    if !unknown.is_empty() {
        unknown.truncate(10);
        return Err(Error::UnsupportedFormat {
            found: format!("{file}: tensors {}", unknown.join(", ")),
            supported: "nn.LSTM and nn.GRU parameters (weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k}; no proj_size) and nn.Linear weight/bias".into(),
        });
    }
    let mut v: Vec<(String, Module<'a>)> = found.into_iter().collect();
    v.sort_by_key(|(n, m)| (matches!(m, Module::Linear { .. }), natural_key(n)));
    Ok(v)
}

/// One checked recurrent sub-layer: its kind, sizes and tensors.
#[derive(Debug, Clone, Copy)]
struct Rnn<'a> {
    cell: Cell,
    /// Sub-layer index `k` in its module.
    k: usize,
    /// Hidden size `u`.
    units: usize,
    /// Input width `in`.
    input: usize,
    t: RnnTensors<'a>,
}

impl Rnn<'_> {
    fn has_bias(&self) -> bool {
        self.t.b_ih.is_some() || self.t.b_hh.is_some()
    }
}

/// One of our layers, sourced from a module.
struct Source<'a> {
    module: String,
    kind: SourceKind<'a>,
}

enum SourceKind<'a> {
    Rnn(Rnn<'a>),
    Linear(Option<&'a TensorInfo>, Option<&'a TensorInfo>),
}

/// The shape of `t`, which must be 2-D.
fn dims2(t: &TensorInfo, file: &str) -> Result<(usize, usize)> {
    match t.shape[..] {
        [a, b] => Ok((a, b)),
        _ => Err(Error::format(
            file,
            format!(
                "{}: expected a 2-D tensor, found {}",
                t.name,
                shape_str(&t.shape)
            ),
        )),
    }
}

/// Checks sub-layer `k` of recurrent module `module` and tells its kind from its shapes.
fn check_rnn<'a>(module: &str, k: usize, t: RnnTensors<'a>, file: &str) -> Result<Rnn<'a>> {
    let key = |p: &str| format!("{module}.{p}_l{k}");
    let missing = |p: &str, expected: String| {
        Error::format(file, format!("{} is missing (expected {expected})", key(p)))
    };
    // The gate rows as far as the tensors present say, for the messages.
    let rows = t
        .w_ih
        .or(t.w_hh)
        .or(t.b_ih)
        .or(t.b_hh)
        .and_then(|t| t.shape.first().copied());
    let rows_str = rows.map_or("G".to_string(), |g| g.to_string());
    let w_hh = t
        .w_hh
        .ok_or_else(|| missing("weight_hh", format!("[{rows_str}, hidden size]")))?;
    let (g, units) = dims2(w_hh, file)?;
    let cell = match g.checked_div(units) {
        _ if units == 0 => {
            return Err(Error::format(
                file,
                format!("{} has hidden size 0: {}", w_hh.name, shape_str(&w_hh.shape)),
            ))
        }
        Some(4) if g % units == 0 => Cell::Lstm,
        Some(3) if g % units == 0 => Cell::Gru,
        Some(1) if g == units => {
            return Err(Error::UnsupportedFormat {
                found: format!(
                    "{file}: {} {} has 1 x hidden size gate rows, an nn.RNN (Elman) module",
                    w_hh.name,
                    shape_str(&w_hh.shape)
                ),
                supported: "nn.LSTM (4 x hidden size rows) and nn.GRU (3 x hidden size rows)"
                    .into(),
            })
        }
        _ => {
            return Err(Error::format(
                file,
                format!(
                    "{} has shape {}: {g} gate rows are neither 4 x {units} (nn.LSTM) nor 3 x {units} (nn.GRU)",
                    w_hh.name,
                    shape_str(&w_hh.shape)
                ),
            ))
        }
    };
    let module_name = cell.module();
    let w_ih = t
        .w_ih
        .ok_or_else(|| missing("weight_ih", format!("[{g}, input width]")))?;
    let (gi, input) = dims2(w_ih, file)?;
    if gi != g || input == 0 {
        return Err(Error::format(
            file,
            format!(
                "{} has shape {} but this {module_name} (hidden size {units}) needs [{g}, input width]",
                w_ih.name,
                shape_str(&w_ih.shape)
            ),
        ));
    }
    for b in [t.b_ih, t.b_hh].into_iter().flatten() {
        if b.shape != [g] {
            return Err(Error::format(
                file,
                format!(
                    "{} has shape {} but this {module_name} (hidden size {units}) needs [{g}]",
                    b.name,
                    shape_str(&b.shape)
                ),
            ));
        }
    }
    if cell == Cell::Gru {
        // The two GRU biases act at different places (the recurrent one inside the reset):
        // one cannot stand in for both.
        match (t.b_ih, t.b_hh) {
            (Some(_), None) => {
                return Err(missing(
                    "bias_hh",
                    format!("[{g}]; an nn.GRU has both biases or neither"),
                ))
            }
            (None, Some(_)) => {
                return Err(missing(
                    "bias_ih",
                    format!("[{g}]; an nn.GRU has both biases or neither"),
                ))
            }
            _ => {}
        }
    }
    Ok(Rnn {
        cell,
        k,
        units,
        input,
        t,
    })
}

/// Every layer the modules provide, in inferred order.
fn sources<'a>(mods: &[(String, Module<'a>)], file: &str) -> Result<Vec<Source<'a>>> {
    let mut out = Vec::new();
    for (name, m) in mods {
        match m {
            Module::Rnn(subs) => {
                let mut first: Option<Rnn<'a>> = None;
                for (i, (k, sub)) in subs.iter().enumerate() {
                    if *k != i {
                        let key = sub.forward.any().or(sub.reverse.any());
                        return Err(Error::format(
                            file,
                            format!(
                                "recurrent module '{name}' has sub-layer {k} ({}) but not sub-layer {i} ({name}.weight_ih_l{i} ...): num_layers sub-layers are numbered from 0 without gaps",
                                key.map_or("?", |t| t.name.as_str())
                            ),
                        ));
                    }
                    if let Some(t) = sub.reverse.any() {
                        // Where a bidirectional layer will be mapped: both directions of
                        // sub-layer k, each checked as `check_rnn` does.
                        return Err(Error::UnsupportedFormat {
                            found: format!(
                                "{file}: bidirectional nn.LSTM/nn.GRU: not supported yet (module '{name}' has {})",
                                t.name
                            ),
                            supported: "one-directional nn.LSTM and nn.GRU modules, and nn.Linear"
                                .into(),
                        });
                    }
                    let rnn = check_rnn(name, *k, sub.forward, file)?;
                    if let Some(f) = first {
                        if f.cell != rnn.cell {
                            return Err(Error::format(
                                file,
                                format!(
                                    "module '{name}': sub-layer 0 is an {} but sub-layer {k} an {}; one module is one kind",
                                    f.cell.module(),
                                    rnn.cell.module()
                                ),
                            ));
                        }
                    }
                    first.get_or_insert(rnn);
                    out.push(Source {
                        module: name.clone(),
                        kind: SourceKind::Rnn(rnn),
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

/// The architecture inferred from the modules (see the module documentation).
fn infer_spec(srcs: &[Source<'_>], file: &str) -> Result<Sequential> {
    let hint = "give the architecture explicitly (--arch)";
    let mut spec = Sequential::new().name("torch");
    let mut width: Option<usize> = None;
    let n_rnn = srcs
        .iter()
        .filter(|s| matches!(s.kind, SourceKind::Rnn(_)))
        .count();
    if n_rnn == 0 {
        return Err(Error::format(
            file,
            "no nn.LSTM or nn.GRU parameters (weight_ih_l0 ...) found: not a recurrent state_dict",
        ));
    }
    let mut seen_rnn = 0;
    for s in srcs {
        let (input, out, layer): (usize, usize, LayerSpec) = match &s.kind {
            SourceKind::Rnn(r) => {
                seen_rnn += 1;
                let rs = seen_rnn < n_rnn;
                let layer = match r.cell {
                    Cell::Lstm => Lstm::new(r.units)
                        .return_sequences(rs)
                        .use_bias(r.has_bias())
                        .into(),
                    Cell::Gru => Gru::new(r.units)
                        .return_sequences(rs)
                        .use_bias(r.has_bias())
                        .reset_after(true)
                        .into(),
                };
                (r.input, r.units, layer)
            }
            SourceKind::Linear(w, b) => {
                let w = w.ok_or_else(|| {
                    Error::format(
                        file,
                        format!("{}.weight is missing (expected [out, in])", s.module),
                    )
                })?;
                let (out, input) = dims2(w, file)?;
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
            if !matches!(s.kind, SourceKind::Rnn(_)) {
                return Err(Error::format(
                    file,
                    format!(
                        "cannot infer the layer order: Linear '{}' before every nn.LSTM/nn.GRU; {hint}",
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
    let nonzero_bias = || {
        Error::format(
            file,
            format!(
                "layer '{name}' has use_bias false but '{}' has non-zero biases",
                src.module
            ),
        )
    };
    match (&src.kind, spec) {
        (SourceKind::Rnn(r), LayerSpec::Lstm(l)) if r.cell == Cell::Lstm => {
            let (u, g) = (l.units, r.cell.gates() * l.units);
            let (w_ih, w_hh) = rnn_weights(r, &src.module, file)?;
            let w_ih = fit(w_ih, &[g, input])?;
            let w_hh = fit(w_hh, &[g, u])?;
            let mut out = vec![
                arr(&[input, g], transpose(&w_ih, g, input))?,
                arr(&[u, g], transpose(&w_hh, g, u))?,
            ];
            let mut bias = vec![0.0f32; g];
            for b in [r.t.b_ih, r.t.b_hh].into_iter().flatten() {
                for (acc, v) in bias.iter_mut().zip(fit(b, &[g])?) {
                    *acc += v;
                }
            }
            if l.use_bias {
                out.push(arr(&[g], bias)?);
            } else if bias.iter().any(|&v| v != 0.0) {
                return Err(nonzero_bias());
            }
            Ok(out)
        }
        (SourceKind::Rnn(r), LayerSpec::Gru(l)) if r.cell == Cell::Gru => {
            if !l.reset_after {
                return Err(Error::format(
                    file,
                    format!(
                        "layer '{name}' has reset_after false, but nn.GRU '{}' computes the reset_after true form (the reset gate applied after the recurrent product); set reset_after true",
                        src.module
                    ),
                ));
            }
            let (u, g) = (l.units, r.cell.gates() * l.units);
            let to_keras = |m: &[f32], cols: usize| {
                transpose(
                    &permute_gate_blocks(m, u, cols, &TORCH_GRU_BLOCKS),
                    g,
                    cols,
                )
            };
            let (w_ih, w_hh) = rnn_weights(r, &src.module, file)?;
            let w_ih = fit(w_ih, &[g, input])?;
            let w_hh = fit(w_hh, &[g, u])?;
            let mut out = vec![
                arr(&[input, g], to_keras(&w_ih, input))?,
                arr(&[u, g], to_keras(&w_hh, u))?,
            ];
            // Rows input, recurrent; zeros for a module without biases.
            let mut bias = Vec::with_capacity(2 * g);
            for b in [r.t.b_ih, r.t.b_hh] {
                match b {
                    Some(b) => bias.extend(to_keras(&fit(b, &[g])?, 1)),
                    None => bias.resize(bias.len() + g, 0.0),
                }
            }
            if l.use_bias {
                out.push(arr(&[2, g], bias)?);
            } else if bias.iter().any(|&v| v != 0.0) {
                return Err(nonzero_bias());
            }
            Ok(out)
        }
        (SourceKind::Linear(w, b), LayerSpec::Dense(d)) => {
            let w = w.ok_or_else(|| {
                Error::format(
                    file,
                    format!(
                        "{}.weight is missing (expected {})",
                        src.module,
                        shape_str(&[d.units, input])
                    ),
                )
            })?;
            let k = fit(w, &[d.units, input])?;
            let mut out = vec![arr(&[input, d.units], transpose(&k, d.units, input))?];
            match (b, d.use_bias) {
                (Some(b), true) => out.push(arr(&[d.units], fit(b, &[d.units])?)?),
                (None, true) => out.push(arr(&[d.units], vec![0.0; d.units])?),
                (Some(b), false) => {
                    if tensor_data(b, data).iter().any(|&v| v != 0.0) {
                        return Err(nonzero_bias());
                    }
                }
                (None, false) => {}
            }
            Ok(out)
        }
        (SourceKind::Rnn(r), _) => Err(Error::format(
            file,
            format!(
                "layer '{name}' ({}) is mapped to {} module '{}' (sub-layer {}), which becomes an {} layer",
                spec.config().kind(),
                r.cell.module(),
                src.module,
                r.k,
                r.cell.layer()
            ),
        )),
        (SourceKind::Linear(..), _) => Err(Error::format(
            file,
            format!(
                "layer '{name}' ({}) is mapped to Linear module '{}', which becomes a Dense layer",
                spec.config().kind(),
                src.module
            ),
        )),
    }
}

/// The two weight matrices of a checked sub-layer.
fn rnn_weights<'a>(
    r: &Rnn<'a>,
    module: &str,
    file: &str,
) -> Result<(&'a TensorInfo, &'a TensorInfo)> {
    match (r.t.w_ih, r.t.w_hh) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(Error::format(
            file,
            format!(
                "{module}.weight_ih_l{k} or {module}.weight_hh_l{k} is missing",
                k = r.k
            ),
        )),
    }
}

/// Builds a model from a validated safetensors `state_dict`, with an explicit architecture or
/// an inferred one.
///
/// # Errors
/// [`Error::UnsupportedFormat`] for tensors that are not LSTM/GRU/Linear parameters, for an
/// `nn.RNN` and for a bidirectional module, [`Error::Format`] for a missing or misshapen
/// tensor (naming it and the shape expected), when the architecture cannot be inferred (the
/// message says to give one), when a given one does not fit (naming the module and shapes),
/// or leaves modules unused.
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

/// What an architecture layer takes from the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Rnn(Cell),
    Linear,
}

impl Want {
    fn describe(self) -> String {
        match self {
            Want::Rnn(c) => format!("{} layer", c.module()),
            Want::Linear => "nn.Linear".into(),
        }
    }
    fn of(kind: &SourceKind<'_>) -> Want {
        match kind {
            SourceKind::Rnn(r) => Want::Rnn(r.cell),
            SourceKind::Linear(..) => Want::Linear,
        }
    }
}

/// Which source each layer of an explicit architecture takes: the module its `from` names
/// (the next unused sub-layer of an `nn.LSTM` / `nn.GRU`), else the next unused source of the
/// right kind. Dropout layers have no weights and take no source.
fn map_explicit(arch: &Arch, srcs: &[Source<'_>], file: &str) -> Result<Vec<Option<usize>>> {
    let mut used = vec![false; srcs.len()];
    let mut out = Vec::with_capacity(arch.spec.layers.len());
    for (k, layer) in arch.spec.layers.iter().enumerate() {
        let want = match layer {
            LayerSpec::Lstm(_) => Want::Rnn(Cell::Lstm),
            LayerSpec::Gru(_) => Want::Rnn(Cell::Gru),
            LayerSpec::Dense(_) => Want::Linear,
            LayerSpec::Dropout(_) => {
                out.push(None);
                continue;
            }
            other => {
                return Err(Error::UnsupportedFormat {
                    found: format!(
                        "{file}: architecture layer #{k} ({}), a kind PyTorch import does not map",
                        other.config().kind()
                    ),
                    supported: "LSTM, GRU, Dense and Dropout layers".into(),
                })
            }
        };
        let from = arch.sources.get(k).and_then(|s| s.as_deref());
        let pick = srcs.iter().enumerate().position(|(i, s)| {
            !used[i] && Want::of(&s.kind) == want && from.is_none_or(|f| f == s.module)
        });
        let Some(i) = pick else {
            let wher = from.map_or(String::new(), |f| format!(" in module '{f}'"));
            // A module of the other kind under that name says more than "none left".
            let other = from.and_then(|f| {
                srcs.iter()
                    .find(|s| s.module == f && Want::of(&s.kind) != want)
                    .map(|s| Want::of(&s.kind).describe())
            });
            let why = other.map_or("the file has none left".to_string(), |o| {
                format!("that module is an {o}")
            });
            return Err(Error::format(
                file,
                format!(
                    "architecture layer #{k} ({}) needs an unused {}{wher}; {why}",
                    layer.config().kind(),
                    want.describe()
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
    use crate::io::safetensors::{parse_bytes, to_bytes};

    #[test]
    fn natural_order() {
        let mut v = vec!["lstm10", "lstm2", "lstm1"];
        v.sort_by_key(|s| natural_key(s));
        assert_eq!(v, vec!["lstm1", "lstm2", "lstm10"]);
    }

    #[test]
    fn reverse_keys_are_recognised() {
        assert_eq!(
            rnn_param("weight_ih_l3_reverse"),
            Some(("weight_ih_l", "3", true))
        );
        assert_eq!(rnn_param("bias_hh_l0"), Some(("bias_hh_l", "0", false)));
        assert_eq!(rnn_param("weight"), None);
    }

    /// `(name, shape)` tensors with values 1, 2, 3, ... (non-zero, all different).
    fn state_dict(tensors: &[(&str, &[usize])]) -> Vec<u8> {
        let vals: Vec<Vec<f32>> = tensors
            .iter()
            .scan(0usize, |n, (_, s)| {
                let len: usize = s.iter().product();
                let v = (0..len).map(|i| (*n + i + 1) as f32).collect();
                *n += len;
                Some(v)
            })
            .collect();
        let refs: Vec<(String, Vec<usize>, &[f32])> = tensors
            .iter()
            .zip(&vals)
            .map(|((n, s), v)| (n.to_string(), s.to_vec(), v.as_slice()))
            .collect();
        to_bytes(&refs, &BTreeMap::new()).unwrap()
    }

    fn load(bytes: &[u8], arch: Option<&str>) -> Result<Model> {
        let (header, data) = parse_bytes(bytes, "sd").unwrap();
        let arch = arch.map(|a| Arch::from_json(a, "arch").unwrap());
        from_parts(&header, data, arch.as_ref(), "sd")
    }

    /// An `nn.GRU(2, 3, num_layers = 2)` and an `nn.Linear(3, 1)`.
    const GRU2: &[(&str, &[usize])] = &[
        ("rnn.weight_ih_l0", &[9, 2]),
        ("rnn.weight_hh_l0", &[9, 3]),
        ("rnn.bias_ih_l0", &[9]),
        ("rnn.bias_hh_l0", &[9]),
        ("rnn.weight_ih_l1", &[9, 3]),
        ("rnn.weight_hh_l1", &[9, 3]),
        ("rnn.bias_ih_l1", &[9]),
        ("rnn.bias_hh_l1", &[9]),
        ("head.weight", &[1, 3]),
        ("head.bias", &[1]),
    ];

    fn without(tensors: &[(&'static str, &'static [usize])], drop: &str) -> Vec<u8> {
        let v: Vec<(&str, &[usize])> = tensors.iter().copied().filter(|t| t.0 != drop).collect();
        state_dict(&v)
    }

    fn err(bytes: &[u8], arch: Option<&str>) -> String {
        match load(bytes, arch) {
            Ok(_) => panic!("loaded"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_gru_module_infers_gru_layers() {
        let m = load(&state_dict(GRU2), None).unwrap();
        let kinds: Vec<&str> = m.layers().iter().map(|l| l.kind()).collect();
        assert_eq!(kinds, ["GRU", "GRU", "Dense"]);
        let LayerSpec::Gru(first) = &m.spec().layers[0] else {
            panic!("not a GRU")
        };
        assert!(first.return_sequences && first.use_bias && first.reset_after);
        let LayerSpec::Gru(second) = &m.spec().layers[1] else {
            panic!("not a GRU")
        };
        assert!(!second.return_sequences);
        // Keras' count: 3·3·(2 + 3) + 2·9, 3·3·(3 + 3) + 2·9, 3 + 1.
        assert_eq!(m.param_count(), 63 + 72 + 4);
    }

    #[test]
    fn gru_weights_take_the_gate_swap_and_transpose() {
        // nn.GRU(1, 1): rows r, z, n.
        let sd = state_dict(&[
            ("g.weight_ih_l0", &[3, 1]),
            ("g.weight_hh_l0", &[3, 1]),
            ("g.bias_ih_l0", &[3]),
            ("g.bias_hh_l0", &[3]),
        ]);
        let m = load(&sd, None).unwrap();
        let w = m.layers()[0].weights();
        // weight_ih = [1, 2, 3] (r, z, n) -> kernel [1, 3] z, r, h.
        assert_eq!(w[0].values, &[2.0, 1.0, 3.0]);
        assert_eq!(w[1].values, &[5.0, 4.0, 6.0]);
        // Rows: the input bias, then the recurrent bias.
        assert_eq!(w[2].shape, &[2, 3]);
        assert_eq!(w[2].values, &[8.0, 7.0, 9.0, 11.0, 10.0, 12.0]);
    }

    #[test]
    fn a_gru_without_biases_has_use_bias_false() {
        let sd = state_dict(&[("g.weight_ih_l0", &[6, 3]), ("g.weight_hh_l0", &[6, 2])]);
        let m = load(&sd, None).unwrap();
        let LayerSpec::Gru(g) = &m.spec().layers[0] else {
            panic!("not a GRU")
        };
        assert!(!g.use_bias);
        assert_eq!(m.layers()[0].weights().len(), 2);
        // An architecture with a bias gets zeros.
        let arch = r#"{"input_shape": [null, 3], "layers": [{"type": "gru", "units": 2}]}"#;
        let m = load(&sd, Some(arch)).unwrap();
        assert!(m.layers()[0].weights()[2].values.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn missing_and_misshapen_tensors_name_the_key_and_shape() {
        let cases: Vec<(Vec<u8>, &[&str])> = vec![
            (
                without(GRU2, "rnn.bias_hh_l1"),
                &["rnn.bias_hh_l1 is missing", "[9]", "both biases or neither"],
            ),
            (
                without(GRU2, "rnn.bias_ih_l0"),
                &["rnn.bias_ih_l0 is missing", "[9]"],
            ),
            (
                without(GRU2, "rnn.weight_ih_l1"),
                &["rnn.weight_ih_l1 is missing", "[9, input width]"],
            ),
            (
                without(GRU2, "rnn.weight_hh_l0"),
                &["rnn.weight_hh_l0 is missing", "[9, hidden size]"],
            ),
            (
                state_dict(&[
                    ("rnn.weight_ih_l0", &[9, 2]),
                    ("rnn.weight_hh_l0", &[9, 3]),
                    ("rnn.weight_ih_l2", &[9, 3]),
                    ("rnn.weight_hh_l2", &[9, 3]),
                ]),
                &["'rnn'", "sub-layer 2 (rnn.weight_ih_l2)", "not sub-layer 1"],
            ),
            (
                state_dict(&[
                    ("rnn.weight_ih_l0", &[9, 2]),
                    ("rnn.weight_hh_l0", &[10, 3]),
                ]),
                &["rnn.weight_hh_l0 has shape [10, 3]", "nn.LSTM", "nn.GRU"],
            ),
            (
                state_dict(&[
                    ("rnn.weight_ih_l0", &[12, 2]),
                    ("rnn.weight_hh_l0", &[9, 3]),
                ]),
                &[
                    "rnn.weight_ih_l0 has shape [12, 2]",
                    "nn.GRU",
                    "[9, input width]",
                ],
            ),
            (
                state_dict(&[
                    ("rnn.weight_ih_l0", &[9, 2]),
                    ("rnn.weight_hh_l0", &[9, 3]),
                    ("rnn.bias_ih_l0", &[3]),
                    ("rnn.bias_hh_l0", &[9]),
                ]),
                &["rnn.bias_ih_l0 has shape [3]", "needs [9]"],
            ),
            (
                state_dict(&[("rnn.weight_ih_l0", &[9, 2]), ("rnn.weight_hh_l0", &[9])]),
                &["rnn.weight_hh_l0", "2-D", "[9]"],
            ),
            (
                state_dict(&[("rnn.weight_ih_l0", &[0, 2]), ("rnn.weight_hh_l0", &[0, 0])]),
                &["rnn.weight_hh_l0 has hidden size 0"],
            ),
            (
                state_dict(&[
                    ("rnn.weight_ih_l0", &[9, 2]),
                    ("rnn.weight_hh_l0", &[9, 3]),
                    ("rnn.weight_ih_l1", &[12, 3]),
                    ("rnn.weight_hh_l1", &[12, 3]),
                ]),
                &[
                    "module 'rnn'",
                    "sub-layer 0 is an nn.GRU",
                    "sub-layer 1 an nn.LSTM",
                ],
            ),
        ];
        for (bytes, needles) in cases {
            let e = load(&bytes, None).unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, Error::Format { .. }), "{msg}");
            for n in needles {
                assert!(msg.contains(n), "'{n}' not in: {msg}");
            }
        }
    }

    #[test]
    fn bidirectional_and_elman_modules_are_named() {
        let mut v = GRU2.to_vec();
        v.push(("rnn.weight_ih_l0_reverse", &[9, 2]));
        let e = load(&state_dict(&v), None).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::UnsupportedFormat { .. }), "{msg}");
        assert!(
            msg.contains("bidirectional nn.LSTM/nn.GRU: not supported yet")
                && msg.contains("rnn.weight_ih_l0_reverse"),
            "{msg}"
        );

        let e = load(
            &state_dict(&[("rnn.weight_ih_l0", &[3, 2]), ("rnn.weight_hh_l0", &[3, 3])]),
            None,
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::UnsupportedFormat { .. }), "{msg}");
        assert!(msg.contains("nn.RNN"), "{msg}");
    }

    #[test]
    fn explicit_architectures_are_checked_against_gru_modules() {
        let sd = state_dict(GRU2);
        let ok = r#"{"input_shape": [4, 2], "layers": [
            {"type": "gru", "units": 3, "return_sequences": true, "from": "rnn"},
            {"type": "gru", "units": 3, "return_sequences": true, "from": "rnn"},
            {"type": "dense", "units": 1, "activation": "sigmoid", "from": "head"}]}"#;
        let m = load(&sd, Some(ok)).unwrap();
        assert_eq!(m.input_shape(), (Some(4), 2));
        assert!(m.output_shape().seq);

        let cases: &[(&str, &[&str])] = &[
            (
                r#"{"input_shape": [4, 2], "layers": [
                    {"type": "gru", "units": 3, "return_sequences": true, "reset_after": false},
                    {"type": "gru", "units": 3}, {"type": "dense", "units": 1}]}"#,
                &["reset_after false", "nn.GRU 'rnn'", "set reset_after true"],
            ),
            (
                r#"{"input_shape": [4, 2], "layers": [
                    {"type": "lstm", "units": 3, "return_sequences": true, "from": "rnn"},
                    {"type": "gru", "units": 3}, {"type": "dense", "units": 1}]}"#,
                &[
                    "layer #0 (LSTM)",
                    "nn.LSTM layer in module 'rnn'",
                    "is an nn.GRU layer",
                ],
            ),
            (
                r#"{"input_shape": [4, 2], "layers": [
                    {"type": "gru", "units": 4, "return_sequences": true},
                    {"type": "gru", "units": 3}, {"type": "dense", "units": 1}]}"#,
                &["rnn.weight_ih_l0 has shape [9, 2]", "needs [12, 2]"],
            ),
            (
                r#"{"input_shape": [4, 2], "layers": [
                    {"type": "gru", "units": 3, "return_sequences": true, "use_bias": false},
                    {"type": "gru", "units": 3}, {"type": "dense", "units": 1}]}"#,
                &["use_bias false", "'rnn' has non-zero biases"],
            ),
            (
                r#"{"input_shape": [4, 2], "layers": [{"type": "gru", "units": 3},
                    {"type": "dense", "units": 1}]}"#,
                &["not used by the architecture: rnn"],
            ),
        ];
        for (arch, needles) in cases {
            let msg = err(&sd, Some(arch));
            for n in *needles {
                assert!(msg.contains(n), "'{n}' not in: {msg}");
            }
        }
    }
}
