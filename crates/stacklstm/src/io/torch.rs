//! Import of PyTorch `state_dict`s saved as safetensors: `nn.LSTM` and `nn.GRU` modules (any
//! `num_layers`, one-directional or bidirectional) and `nn.Linear` heads, mapped onto LSTM,
//! GRU, Bidirectional and Dense layers.
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
//! * **Bidirectional** (`bidirectional=True`): sub-layer `k` also has the same four tensors
//!   with the suffix `_reverse` (`m.weight_ih_l{k}_reverse`, ...), the copy that reads the
//!   sequence backward. Sub-layer `k` becomes one Bidirectional layer around an LSTM or GRU:
//!   its forward copy from the `l{k}` tensors, its backward copy from the `l{k}_reverse`
//!   ones, each converted as above. PyTorch's output is `[forward | backward]` at every step
//!   in input time order, which is Keras' `concat` with `return_sequences`; sub-layer `k + 1`
//!   reads it, so its `weight_ih` is `[G, 2u]` and every sub-layer but the last of a module
//!   is `concat` with `return_sequences` (an architecture saying otherwise is refused). Both
//!   directions of a sub-layer have the same tensors and shapes, and a module is
//!   bidirectional in every sub-layer or in none.
//! * **Linear**: `m.weight` `[out, in]`, `m.bias` `[out]`: `kernel = weightᵀ`.
//!
//! Without biases a recurrent layer has `use_bias` false.
//!
//! A `state_dict` does not record how modules are connected, so the architecture is either
//! given ([`super::Arch`]) or inferred: recurrent modules (`nn.LSTM` and `nn.GRU`) in natural
//! name order (`gru0`, `gru1`, ..., `gru10`), then Linear modules likewise, each layer's input
//! width equal to the previous output width; a module with `num_layers = n` becomes `n`
//! layers. Inferred recurrent layers return sequences except the last, the Dense layers are
//! linear, and the number of timesteps is left variable. An inferred Bidirectional layer
//! merges with `concat`; the last one returns `[forward h_T | backward h_1]` (the backward
//! copy's state after reading back to the first step), which is `h_n` of both directions
//! (`torch.cat([h_n[-2], h_n[-1]], 1)`), the usual readout of a bidirectional module, and
//! also `cat(out[:, -1, :u], out[:, 0, u:])`; a head on `out[:, -1]` alone is not it.
//! Anything else (a model that returns sequences into a per-timestep head, another merge
//! mode, a Dense activation, a fixed length) needs an explicit architecture, whose LSTM, GRU,
//! Bidirectional and Dense layers take the modules of their kind in order (a Bidirectional
//! layer the next sub-layer of a bidirectional module whose cell its wrapped layer is) or
//! the one their `"from"` names.

use std::collections::BTreeMap;

use ndarray::{ArrayD, IxDyn};

use super::safetensors::{tensor_data, Header, TensorInfo};
use super::Arch;
use crate::error::{shape_str, Error, Result};
use crate::layers::bidirectional::{Bidirectional, MergeMode};
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

impl<'a> RnnTensors<'a> {
    fn any(&self) -> Option<&'a TensorInfo> {
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

/// The key of parameter `p` (`weight_ih`, ...) of sub-layer `k` of `module`, in the reverse
/// direction's form (`..._reverse`) when `reverse`.
fn rnn_key(module: &str, p: &str, k: usize, reverse: bool) -> String {
    let suffix = if reverse { "_reverse" } else { "" };
    format!("{module}.{p}_l{k}{suffix}")
}

/// One checked direction of a recurrent sub-layer: its kind, sizes and tensors.
#[derive(Debug, Clone, Copy)]
struct Rnn<'a> {
    cell: Cell,
    /// Sub-layer index `k` in its module.
    k: usize,
    /// Whether these are the `_reverse` tensors of a bidirectional module.
    reverse: bool,
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
    /// A sub-layer of a one-directional module.
    Rnn(Rnn<'a>),
    /// A sub-layer of a bidirectional module: both directions, checked to have the same
    /// kind, sizes and tensors.
    BiRnn {
        forward: Rnn<'a>,
        backward: Rnn<'a>,
        /// Whether sub-layer `k + 1` of the module reads this one's output.
        inner: bool,
    },
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

/// Checks one direction (the `_reverse` tensors when `reverse`) of sub-layer `k` of
/// recurrent module `module` and tells its kind from its shapes.
fn check_rnn<'a>(
    module: &str,
    k: usize,
    reverse: bool,
    t: RnnTensors<'a>,
    file: &str,
) -> Result<Rnn<'a>> {
    let key = |p: &str| rnn_key(module, p, k, reverse);
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
        reverse,
        units,
        input,
        t,
    })
}

/// Checks that the reverse direction of a bidirectional sub-layer has the forward
/// direction's tensors with the same shapes, as PyTorch makes them.
fn check_directions(module: &str, fwd: &Rnn<'_>, rev: &Rnn<'_>, file: &str) -> Result<()> {
    let pairs = [
        ("weight_ih", fwd.t.w_ih, rev.t.w_ih),
        ("weight_hh", fwd.t.w_hh, rev.t.w_hh),
        ("bias_ih", fwd.t.b_ih, rev.t.b_ih),
        ("bias_hh", fwd.t.b_hh, rev.t.b_hh),
    ];
    for (p, f, r) in pairs {
        let msg = match (f, r) {
            (Some(f), Some(r)) if f.shape != r.shape => format!(
                "{} has shape {} but {} has {}: both directions of a bidirectional {} have the same shapes (expected {})",
                r.name,
                shape_str(&r.shape),
                f.name,
                shape_str(&f.shape),
                fwd.cell.module(),
                shape_str(&f.shape)
            ),
            (Some(f), None) => format!(
                "{} is missing (expected {}, as {} of the forward direction)",
                rnn_key(module, p, fwd.k, true),
                shape_str(&f.shape),
                f.name
            ),
            (None, Some(r)) => format!(
                "{} is missing (expected {}, as {} of the reverse direction)",
                rnn_key(module, p, fwd.k, false),
                shape_str(&r.shape),
                r.name
            ),
            _ => continue,
        };
        return Err(Error::format(file, msg));
    }
    Ok(())
}

/// Every layer the modules provide, in inferred order.
fn sources<'a>(mods: &[(String, Module<'a>)], file: &str) -> Result<Vec<Source<'a>>> {
    let mut out = Vec::new();
    for (name, m) in mods {
        match m {
            Module::Rnn(subs) => {
                for kind in rnn_sources(name, subs, file)? {
                    out.push(Source {
                        module: name.clone(),
                        kind,
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

/// The layers of recurrent module `name`, one per sub-layer, checked as PyTorch builds
/// them: numbered from 0, one kind, bidirectional in every sub-layer or in none, and each
/// sub-layer after the first reading the previous one's output (`u` wide, `2u` with both
/// directions).
fn rnn_sources<'a>(
    name: &str,
    subs: &BTreeMap<usize, RnnSub<'a>>,
    file: &str,
) -> Result<Vec<SourceKind<'a>>> {
    let mut out = Vec::new();
    // Sub-layer 0 (its forward direction, and a reverse key if it has one).
    let mut first: Option<(Rnn<'a>, Option<&'a TensorInfo>)> = None;
    // The width sub-layer `k - 1` outputs.
    let mut feed: Option<usize> = None;
    for (i, (k, sub)) in subs.iter().enumerate() {
        let k = *k;
        if k != i {
            let key = sub.forward.any().or(sub.reverse.any());
            return Err(Error::format(
                file,
                format!(
                    "recurrent module '{name}' has sub-layer {k} ({}) but not sub-layer {i} ({name}.weight_ih_l{i} ...): num_layers sub-layers are numbered from 0 without gaps",
                    key.map_or("?", |t| t.name.as_str())
                ),
            ));
        }
        let rev_key = sub.reverse.any();
        if let (None, Some(t)) = (sub.forward.any(), rev_key) {
            return Err(Error::format(
                file,
                format!(
                    "{} has no forward partner: {} (and the other l{k} tensors) are missing; a bidirectional module has both directions of every sub-layer",
                    t.name,
                    rnn_key(name, "weight_ih", k, false)
                ),
            ));
        }
        let forward = check_rnn(name, k, false, sub.forward, file)?;
        let backward = match rev_key {
            Some(_) => {
                let b = check_rnn(name, k, true, sub.reverse, file)?;
                check_directions(name, &forward, &b, file)?;
                Some(b)
            }
            None => None,
        };
        if let Some((f, f_rev)) = first {
            if f.cell != forward.cell {
                return Err(Error::format(
                    file,
                    format!(
                        "module '{name}': sub-layer 0 is an {} but sub-layer {k} an {}; one module is one kind",
                        f.cell.module(),
                        forward.cell.module()
                    ),
                ));
            }
            match (f_rev, rev_key) {
                (Some(r0), None) => {
                    return Err(Error::format(
                        file,
                        format!(
                            "module '{name}': sub-layer 0 is bidirectional ({}) but sub-layer {k} has no _reverse tensors ({} is missing); a module is bidirectional in every sub-layer or in none",
                            r0.name,
                            rnn_key(name, "weight_ih", k, true)
                        ),
                    ))
                }
                (None, Some(rk)) => {
                    return Err(Error::format(
                        file,
                        format!(
                            "module '{name}': sub-layer {k} is bidirectional ({}) but sub-layer 0 is not ({} is missing); a module is bidirectional in every sub-layer or in none",
                            rk.name,
                            rnn_key(name, "weight_ih", 0, true)
                        ),
                    ))
                }
                _ => {}
            }
        }
        first.get_or_insert((forward, rev_key));
        // PyTorch feeds sub-layer k the output of sub-layer k - 1.
        if let Some(w) = feed {
            for r in std::iter::once(&forward).chain(&backward) {
                if r.input != w {
                    let both = if backward.is_some() {
                        format!(" (2 x {}: both directions concatenated)", w / 2)
                    } else {
                        String::new()
                    };
                    let w_ih = rnn_key(name, "weight_ih", k, r.reverse);
                    return Err(Error::format(
                        file,
                        format!(
                            "{w_ih} has shape {} but sub-layer {k} of {} '{name}' reads sub-layer {}'s output, {w} wide{both}: expected {}",
                            shape_str(&[forward.cell.gates() * r.units, r.input]),
                            forward.cell.module(),
                            k - 1,
                            shape_str(&[forward.cell.gates() * r.units, w])
                        ),
                    ));
                }
            }
        }
        let dirs = if backward.is_some() { 2 } else { 1 };
        feed = Some(dirs * forward.units);
        out.push(match backward {
            Some(backward) => SourceKind::BiRnn {
                forward,
                backward,
                inner: k + 1 < subs.len(),
            },
            None => SourceKind::Rnn(forward),
        });
    }
    Ok(out)
}

/// The architecture inferred from the modules (see the module documentation).
fn infer_spec(srcs: &[Source<'_>], file: &str) -> Result<Sequential> {
    let hint = "give the architecture explicitly (--arch)";
    let mut spec = Sequential::new().name("torch");
    let mut width: Option<usize> = None;
    let is_rnn = |k: &SourceKind<'_>| matches!(k, SourceKind::Rnn(_) | SourceKind::BiRnn { .. });
    let n_rnn = srcs.iter().filter(|s| is_rnn(&s.kind)).count();
    if n_rnn == 0 {
        return Err(Error::format(
            file,
            "no nn.LSTM or nn.GRU parameters (weight_ih_l0 ...) found: not a recurrent state_dict",
        ));
    }
    let mut seen_rnn = 0;
    // The hidden size of the previous layer when it is an inferred Bidirectional one.
    let mut bi_units: Option<usize> = None;
    for s in srcs {
        let (input, out, layer): (usize, usize, LayerSpec) = match &s.kind {
            SourceKind::Rnn(r) => {
                seen_rnn += 1;
                (r.input, r.units, rnn_spec(r, seen_rnn < n_rnn))
            }
            SourceKind::BiRnn { forward: r, .. } => {
                seen_rnn += 1;
                let layer = Bidirectional::new(rnn_spec(r, seen_rnn < n_rnn))
                    .merge_mode(MergeMode::Concat)
                    .into();
                (r.input, MergeMode::Concat.width(r.units), layer)
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
                // A head as wide as one direction follows a sum/mul/ave merge.
                let merge = match bi_units {
                    Some(u) if u == input => format!(
                        " (the inferred Bidirectional merges with concat, {w} wide; a sum, mul or ave merge would give {u})"
                    ),
                    _ => String::new(),
                };
                return Err(Error::format(
                    file,
                    format!(
                        "cannot infer the layer order: '{}' takes width {input} but the layer before it outputs {w}{merge}; {hint}",
                        s.module
                    ),
                ));
            }
        } else {
            if !is_rnn(&s.kind) {
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
        bi_units = match &s.kind {
            SourceKind::BiRnn { forward, .. } => Some(forward.units),
            _ => None,
        };
        spec = spec.add(layer);
    }
    Ok(spec)
}

/// The inferred LSTM or GRU spec of one direction of a sub-layer.
fn rnn_spec(r: &Rnn<'_>, return_sequences: bool) -> LayerSpec {
    match r.cell {
        Cell::Lstm => Lstm::new(r.units)
            .return_sequences(return_sequences)
            .use_bias(r.has_bias())
            .into(),
        Cell::Gru => Gru::new(r.units)
            .return_sequences(return_sequences)
            .use_bias(r.has_bias())
            .reset_after(true)
            .into(),
    }
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
        (
            SourceKind::BiRnn {
                forward,
                backward,
                inner,
            },
            LayerSpec::Bidirectional(b),
        ) => {
            let return_sequences = match &*b.layer {
                LayerSpec::Lstm(l) => l.return_sequences,
                LayerSpec::Gru(g) => g.return_sequences,
                _ => false,
            };
            if *inner && (b.merge_mode != MergeMode::Concat || !return_sequences) {
                return Err(Error::format(
                    file,
                    format!(
                        "layer '{name}' takes sub-layer {k} of bidirectional {} '{}', whose output PyTorch feeds to sub-layer {} as [forward | backward] at every step: the layer needs merge_mode concat and return_sequences true (it has merge_mode {}, return_sequences {return_sequences})",
                        forward.cell.module(),
                        src.module,
                        forward.k + 1,
                        b.merge_mode,
                        k = forward.k
                    ),
                ));
            }
            // Keras' order: the forward copy's weights, then the backward copy's.
            let mut out = Vec::new();
            for (r, copy) in [(forward, "forward"), (backward, "backward")] {
                let one = Source {
                    module: src.module.clone(),
                    kind: SourceKind::Rnn(*r),
                };
                out.extend(layer_weights(
                    &one,
                    &b.layer,
                    &format!("{name}/{copy}"),
                    input,
                    data,
                    file,
                )?);
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
        (SourceKind::BiRnn { forward: r, .. }, _) => Err(Error::format(
            file,
            format!(
                "layer '{name}' ({}) is mapped to bidirectional {} module '{}' (sub-layer {}), which becomes a Bidirectional layer around an {} layer",
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
                "{} or {} is missing",
                rnn_key(module, "weight_ih", r.k, r.reverse),
                rnn_key(module, "weight_hh", r.k, r.reverse)
            ),
        )),
    }
}

/// Builds a model from a validated safetensors `state_dict`, with an explicit architecture or
/// an inferred one.
///
/// # Errors
/// [`Error::UnsupportedFormat`] for tensors that are not LSTM/GRU/Linear parameters and for
/// an `nn.RNN`, [`Error::Format`] for a missing or misshapen tensor (naming it and the shape
/// expected), a `_reverse` tensor without its forward partner, a module bidirectional in some
/// sub-layers only, when the architecture cannot be inferred (the message says to give one),
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

/// What an architecture layer takes from the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Rnn(Cell),
    /// A sub-layer of a bidirectional module of this cell.
    BiRnn(Cell),
    Linear,
}

impl Want {
    /// What it is, after "an unused".
    fn describe(self) -> String {
        match self {
            Want::Rnn(c) => format!("{} layer", c.module()),
            Want::BiRnn(c) => format!("bidirectional {} layer", c.module()),
            Want::Linear => "nn.Linear".into(),
        }
    }
    /// What it is, with its article.
    fn a(self) -> String {
        match self {
            Want::BiRnn(_) => format!("a {}", self.describe()),
            _ => format!("an {}", self.describe()),
        }
    }
    fn of(kind: &SourceKind<'_>) -> Want {
        match kind {
            SourceKind::Rnn(r) => Want::Rnn(r.cell),
            SourceKind::BiRnn { forward, .. } => Want::BiRnn(forward.cell),
            SourceKind::Linear(..) => Want::Linear,
        }
    }
}

/// Which source each layer of an explicit architecture takes: the module its `from` names
/// (the next unused sub-layer of an `nn.LSTM` / `nn.GRU`), else the next unused source of the
/// right kind (for a Bidirectional layer, a sub-layer of a bidirectional module of its
/// wrapped layer's kind). Dropout layers have no weights and take no source.
fn map_explicit(arch: &Arch, srcs: &[Source<'_>], file: &str) -> Result<Vec<Option<usize>>> {
    let mut used = vec![false; srcs.len()];
    let mut out = Vec::with_capacity(arch.spec.layers.len());
    for (k, layer) in arch.spec.layers.iter().enumerate() {
        let want = match layer {
            LayerSpec::Lstm(_) => Want::Rnn(Cell::Lstm),
            LayerSpec::Gru(_) => Want::Rnn(Cell::Gru),
            LayerSpec::Bidirectional(b) => match &*b.layer {
                LayerSpec::Lstm(_) => Want::BiRnn(Cell::Lstm),
                LayerSpec::Gru(_) => Want::BiRnn(Cell::Gru),
                other => {
                    return Err(Error::UnsupportedFormat {
                        found: format!(
                            "{file}: architecture layer #{k} (Bidirectional) wraps a {} layer, which PyTorch import does not map",
                            other.config().kind()
                        ),
                        supported: "Bidirectional around an LSTM or GRU layer".into(),
                    })
                }
            },
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
                    supported: "LSTM, GRU, Bidirectional, Dense and Dropout layers".into(),
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
                    .map(|s| Want::of(&s.kind).a())
            });
            // The same cell in the other direction count is the likely slip.
            let twin = match want {
                Want::Rnn(c) => Some((Want::BiRnn(c), format!("Bidirectional({})", c.layer()))),
                Want::BiRnn(c) => Some((Want::Rnn(c), format!("a plain {} layer", c.layer()))),
                Want::Linear => None,
            };
            let twin = twin.and_then(|(w, fix)| {
                srcs.iter()
                    .find(|s| Want::of(&s.kind) == w)
                    .map(|s| format!(" ('{}' is {}: use {fix})", s.module, w.a()))
            });
            let why = other.map_or_else(
                || format!("the file has none left{}", twin.unwrap_or_default()),
                |o| format!("that module is {o}"),
            );
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
    fn elman_modules_are_named() {
        let e = load(
            &state_dict(&[("rnn.weight_ih_l0", &[3, 2]), ("rnn.weight_hh_l0", &[3, 3])]),
            None,
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::UnsupportedFormat { .. }), "{msg}");
        assert!(msg.contains("nn.RNN"), "{msg}");
    }

    /// An `nn.GRU(2, 3, num_layers = 2, bidirectional = True)` and an `nn.Linear(6, 1)`.
    const BIGRU2: &[(&str, &[usize])] = &[
        ("rnn.weight_ih_l0", &[9, 2]),
        ("rnn.weight_hh_l0", &[9, 3]),
        ("rnn.bias_ih_l0", &[9]),
        ("rnn.bias_hh_l0", &[9]),
        ("rnn.weight_ih_l0_reverse", &[9, 2]),
        ("rnn.weight_hh_l0_reverse", &[9, 3]),
        ("rnn.bias_ih_l0_reverse", &[9]),
        ("rnn.bias_hh_l0_reverse", &[9]),
        ("rnn.weight_ih_l1", &[9, 6]),
        ("rnn.weight_hh_l1", &[9, 3]),
        ("rnn.bias_ih_l1", &[9]),
        ("rnn.bias_hh_l1", &[9]),
        ("rnn.weight_ih_l1_reverse", &[9, 6]),
        ("rnn.weight_hh_l1_reverse", &[9, 3]),
        ("rnn.bias_ih_l1_reverse", &[9]),
        ("rnn.bias_hh_l1_reverse", &[9]),
        ("head.weight", &[1, 6]),
        ("head.bias", &[1]),
    ];

    /// `tensors` with the shapes of those named in `reshape` replaced.
    fn reshaped(
        tensors: &[(&'static str, &'static [usize])],
        reshape: &[(&str, &'static [usize])],
    ) -> Vec<u8> {
        let v: Vec<(&str, &[usize])> = tensors
            .iter()
            .map(|&(n, s)| (n, reshape.iter().find(|r| r.0 == n).map_or(s, |r| r.1)))
            .collect();
        state_dict(&v)
    }

    #[test]
    fn a_bidirectional_module_infers_bidirectional_layers() {
        let m = load(&state_dict(BIGRU2), None).unwrap();
        let kinds: Vec<&str> = m.layers().iter().map(|l| l.kind()).collect();
        assert_eq!(kinds, ["Bidirectional", "Bidirectional", "Dense"]);
        for (i, rs) in [(0, true), (1, false)] {
            let LayerSpec::Bidirectional(b) = &m.spec().layers[i] else {
                panic!("not a Bidirectional")
            };
            assert_eq!(b.merge_mode, MergeMode::Concat);
            let LayerSpec::Gru(g) = &*b.layer else {
                panic!("not around a GRU")
            };
            assert_eq!(g.units, 3);
            assert_eq!(g.return_sequences, rs, "layer {i}");
            assert!(g.use_bias && g.reset_after);
        }
        assert_eq!(m.input_shape(), (None, 2));
        // Keras' counts: 2 · (3·3·(2 + 3) + 2·9), 2 · (3·3·(6 + 3) + 2·9), 6 + 1.
        assert_eq!(m.param_count(), 126 + 198 + 7);
    }

    #[test]
    fn bidirectional_weights_are_the_forward_copy_then_the_backward_copy() {
        // nn.GRU(1, 1, bidirectional=True): rows r, z, n; values 1, 2, 3, ... in key order.
        let sd = state_dict(&[
            ("g.weight_ih_l0", &[3, 1]),
            ("g.weight_hh_l0", &[3, 1]),
            ("g.bias_ih_l0", &[3]),
            ("g.bias_hh_l0", &[3]),
            ("g.weight_ih_l0_reverse", &[3, 1]),
            ("g.weight_hh_l0_reverse", &[3, 1]),
            ("g.bias_ih_l0_reverse", &[3]),
            ("g.bias_hh_l0_reverse", &[3]),
        ]);
        let m = load(&sd, None).unwrap();
        let w: Vec<Vec<f32>> = m.layers()[0]
            .weights()
            .iter()
            .map(|w| w.values.to_vec())
            .collect();
        let want: [&[f32]; 6] = [
            &[2.0, 1.0, 3.0],
            &[5.0, 4.0, 6.0],
            &[8.0, 7.0, 9.0, 11.0, 10.0, 12.0],
            &[14.0, 13.0, 15.0],
            &[17.0, 16.0, 18.0],
            &[20.0, 19.0, 21.0, 23.0, 22.0, 24.0],
        ];
        assert_eq!(w, want.map(<[f32]>::to_vec));

        // nn.LSTM(1, 1, bidirectional=True): each copy's bias is bias_ih + bias_hh.
        let sd = state_dict(&[
            ("l.weight_ih_l0", &[4, 1]),
            ("l.weight_hh_l0", &[4, 1]),
            ("l.bias_ih_l0", &[4]),
            ("l.bias_hh_l0", &[4]),
            ("l.weight_ih_l0_reverse", &[4, 1]),
            ("l.weight_hh_l0_reverse", &[4, 1]),
            ("l.bias_ih_l0_reverse", &[4]),
            ("l.bias_hh_l0_reverse", &[4]),
        ]);
        let m = load(&sd, None).unwrap();
        let w = m.layers()[0].weights();
        let names: Vec<&str> = w.iter().map(|w| w.name).collect();
        assert_eq!(
            names,
            [
                "forward/kernel",
                "forward/recurrent_kernel",
                "forward/bias",
                "backward/kernel",
                "backward/recurrent_kernel",
                "backward/bias"
            ]
        );
        assert_eq!(w[2].values, &[22.0, 24.0, 26.0, 28.0]);
        assert_eq!(w[3].values, &[17.0, 18.0, 19.0, 20.0]);
        assert_eq!(w[5].values, &[54.0, 56.0, 58.0, 60.0]);
    }

    #[test]
    fn a_head_as_wide_as_one_direction_asks_for_the_merge_mode() {
        // nn.GRU(2, 3, bidirectional=True) into nn.Linear(3, 1): Keras' sum/mul/ave.
        let mut v: Vec<(&str, &[usize])> = BIGRU2[..8].to_vec();
        v.extend([("head.weight", &[1usize, 3][..]), ("head.bias", &[1][..])]);
        let msg = err(&state_dict(&v), None);
        assert!(
            msg.contains("'head' takes width 3 but the layer before it outputs 6")
                && msg.contains("a sum, mul or ave merge would give 3")
                && msg.contains("--arch"),
            "{msg}"
        );
        let arch = r#"{"input_shape": [null, 2], "layers": [
            {"type": "bidirectional", "merge_mode": "ave", "layer": {"type": "gru", "units": 3}},
            {"type": "dense", "units": 1}]}"#;
        assert!(load(&state_dict(&v), Some(arch)).is_ok());
    }

    #[test]
    fn malformed_bidirectional_modules_name_the_key_and_shape() {
        let cases: Vec<(Vec<u8>, &[&str])> = vec![
            (
                state_dict(&[
                    ("rnn.weight_ih_l0_reverse", &[9, 2]),
                    ("rnn.weight_hh_l0_reverse", &[9, 3]),
                ]),
                &[
                    "rnn.weight_ih_l0_reverse has no forward partner",
                    "rnn.weight_ih_l0 ",
                ],
            ),
            (
                without(BIGRU2, "rnn.weight_hh_l1_reverse"),
                &["rnn.weight_hh_l1_reverse is missing", "[9, hidden size]"],
            ),
            (
                without(BIGRU2, "rnn.bias_hh_l0_reverse"),
                &[
                    "rnn.bias_hh_l0_reverse is missing",
                    "[9]",
                    "both biases or neither",
                ],
            ),
            (
                {
                    let v: Vec<(&str, &[usize])> = BIGRU2
                        .iter()
                        .copied()
                        .filter(|t| !t.0.starts_with("rnn.bias_") || !t.0.ends_with("l0_reverse"))
                        .collect();
                    state_dict(&v)
                },
                &[
                    "rnn.bias_ih_l0_reverse is missing",
                    "expected [9]",
                    "rnn.bias_ih_l0 of the forward direction",
                ],
            ),
            (
                {
                    let v: Vec<(&str, &[usize])> = BIGRU2
                        .iter()
                        .copied()
                        .filter(|t| !t.0.starts_with("rnn.bias_") || t.0.ends_with("_reverse"))
                        .collect();
                    state_dict(&v)
                },
                &["rnn.bias_ih_l0 is missing", "rnn.bias_ih_l0_reverse"],
            ),
            (
                reshaped(BIGRU2, &[("rnn.weight_ih_l0_reverse", &[9, 4])]),
                &[
                    "rnn.weight_ih_l0_reverse has shape [9, 4]",
                    "rnn.weight_ih_l0 has [9, 2]",
                    "expected [9, 2]",
                ],
            ),
            (
                reshaped(
                    BIGRU2,
                    &[
                        ("rnn.weight_ih_l1", &[9, 3]),
                        ("rnn.weight_ih_l1_reverse", &[9, 3]),
                    ],
                ),
                &[
                    "rnn.weight_ih_l1 has shape [9, 3]",
                    "expected [9, 6]",
                    "both directions concatenated",
                ],
            ),
            (
                reshaped(GRU2, &[("rnn.weight_ih_l1", &[9, 2])]),
                &["rnn.weight_ih_l1 has shape [9, 2]", "expected [9, 3]"],
            ),
            (
                state_dict(&BIGRU2[..12]),
                &[
                    "module 'rnn'",
                    "sub-layer 0 is bidirectional (rnn.weight_ih_l0_reverse)",
                    "sub-layer 1 has no _reverse tensors",
                    "rnn.weight_ih_l1_reverse is missing",
                ],
            ),
            (
                {
                    let v: Vec<(&str, &[usize])> = BIGRU2
                        .iter()
                        .copied()
                        .filter(|t| !t.0.ends_with("l0_reverse"))
                        .collect();
                    state_dict(&v)
                },
                &[
                    "sub-layer 1 is bidirectional (rnn.weight_ih_l1_reverse)",
                    "sub-layer 0 is not",
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
    fn explicit_architectures_are_checked_against_bidirectional_modules() {
        let sd = state_dict(BIGRU2);
        // Both sub-layers returning sequences into a per-timestep head; `from` on the
        // wrapper or on its wrapped layer.
        for from in [r#""from": "rnn","#, ""] {
            let inner_from = if from.is_empty() {
                r#", "from": "rnn""#
            } else {
                ""
            };
            let ok = format!(
                r#"{{"input_shape": [4, 2], "layers": [
                {{"type": "bidirectional", {from} "layer": {{"type": "gru", "units": 3, "return_sequences": true{inner_from}}}}},
                {{"type": "bidirectional", "merge_mode": "concat", {from}
                  "layer": {{"type": "gru", "units": 3, "return_sequences": true{inner_from}}}}},
                {{"type": "dense", "units": 1, "from": "head"}}]}}"#
            );
            let m = load(&sd, Some(&ok)).unwrap();
            assert_eq!(m.input_shape(), (Some(4), 2));
            assert!(m.output_shape().seq);
        }

        let bi = |merge0: &str, layer0: &str, layer1: &str| {
            format!(
                r#"{{"input_shape": [4, 2], "layers": [
                {{"type": "bidirectional", "merge_mode": "{merge0}", "layer": {layer0}}},
                {{"type": "bidirectional", "layer": {layer1}}},
                {{"type": "dense", "units": 1}}]}}"#
            )
        };
        let gru = r#"{"type": "gru", "units": 3, "return_sequences": true}"#;
        let last = r#"{"type": "gru", "units": 3}"#;
        let cases: Vec<(String, &[&str])> = vec![
            (
                bi(
                    "sum",
                    gru,
                    r#"{"type": "gru", "units": 3, "return_sequences": false}"#,
                ),
                &[
                    "layer 'bidirectional' takes sub-layer 0 of bidirectional nn.GRU 'rnn'",
                    "to sub-layer 1",
                    "needs merge_mode concat and return_sequences true",
                    "merge_mode sum",
                ],
            ),
            (
                bi(
                    "concat",
                    r#"{"type": "gru", "units": 4, "return_sequences": true}"#,
                    last,
                ),
                &[
                    "rnn.weight_ih_l0 has shape [9, 2]",
                    "layer 'bidirectional/forward' needs [12, 2]",
                ],
            ),
            (
                bi(
                    "concat",
                    r#"{"type": "gru", "units": 3, "return_sequences": true, "reset_after": false}"#,
                    last,
                ),
                &["layer 'bidirectional/forward' has reset_after false"],
            ),
            (
                bi(
                    "concat",
                    r#"{"type": "gru", "units": 3, "return_sequences": true, "use_bias": false}"#,
                    last,
                ),
                &["use_bias false", "'rnn' has non-zero biases"],
            ),
            (
                bi(
                    "concat",
                    r#"{"type": "lstm", "units": 3, "return_sequences": true}"#,
                    last,
                ),
                &[
                    "layer #0 (Bidirectional)",
                    "needs an unused bidirectional nn.LSTM layer",
                ],
            ),
            (
                r#"{"input_shape": [4, 2], "layers": [
                    {"type": "gru", "units": 3, "return_sequences": true},
                    {"type": "gru", "units": 3}, {"type": "dense", "units": 1}]}"#
                    .into(),
                &[
                    "layer #0 (GRU) needs an unused nn.GRU layer",
                    "'rnn' is a bidirectional nn.GRU layer: use Bidirectional(GRU)",
                ],
            ),
            (
                r#"{"input_shape": [4, 2], "layers": [
                    {"type": "gru", "units": 3, "return_sequences": true, "from": "rnn"},
                    {"type": "gru", "units": 3}, {"type": "dense", "units": 1}]}"#
                    .into(),
                &["in module 'rnn'; that module is a bidirectional nn.GRU layer"],
            ),
            (
                r#"{"input_shape": [4, 2], "layers": [
                    {"type": "bidirectional", "from": "rnn",
                     "layer": {"type": "gru", "units": 3, "from": "head"}}]}"#
                    .into(),
                &["names module 'rnn' and its wrapped layer module 'head'"],
            ),
        ];
        for (arch, needles) in &cases {
            // An architecture that does not parse is an error too.
            let msg = match Arch::from_json(arch, "arch") {
                Ok(_) => err(&sd, Some(arch)),
                Err(e) => e.to_string(),
            };
            for n in *needles {
                assert!(msg.contains(n), "'{n}' not in: {msg}");
            }
        }

        // A Bidirectional architecture for a one-directional module says what the file has.
        let msg = err(&state_dict(GRU2), Some(&bi("concat", gru, last)));
        assert!(
            msg.contains("needs an unused bidirectional nn.GRU layer")
                && msg.contains("'rnn' is an nn.GRU layer: use a plain GRU layer"),
            "{msg}"
        );
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
