//! The Bidirectional wrapper (Keras `Bidirectional`): two independent copies of an LSTM or
//! GRU layer, one reading the sequence forward and one backward, their outputs merged.
//!
//! Legend: `B` = batch, `T` = timesteps, `D` = input width, `H` = the wrapped layer's
//! units, `W` = output width (`2H` with `concat`, else `H`). Buffers are time-major.
//!
//! Forward, with `F` the forward copy and `G` the backward copy (each the wrapped layer's
//! own forward, with its own weights):
//! ```text
//! xr[s] = x[T-1-s]                  the backward copy's input: x reversed in time
//! f = F(x)      g = G(xr)           independent (two threads when the work pays)
//! return_sequences:  y[t] = merge(f[t], g[T-1-t])   g flipped back: step t pairs f_t, b_t
//! otherwise:         y    = merge(f_T, g_T)         g_T = b_1, G's state after reading x_1
//! merge: concat [f, b] (forward units first) | sum f + b | mul f ⊙ b | ave (f + b) / 2
//! ```
//! Backward, through the merge into both copies:
//! ```text
//! concat: df = dy[.., :H], db = dy[.., H:]     sum: df = db = dy     ave: df = db = dy / 2
//! mul:    df = dy ⊙ b,     db = dy ⊙ f
//! dg[T-1-t] = db[t] (G's own time order); each copy's backward accumulates its weights'
//! gradients and gives its dx;  dx[t] = dx_F[t] + dx_G[T-1-t]
//! ```
//! The two copies are built through the wrapped spec's [`LayerConfig::build`] and reached
//! through [`Layer`], so nothing here depends on which recurrent kind is wrapped, except
//! the check that it is one (LSTM or GRU) and the ONNX export, which needs each kind's
//! operator. Every buffer lives in the cache and is reused: nothing is allocated per step.
//!
//! Anything that runs along the time axis of the input (the input itself; a per-step mask
//! later) reaches the backward copy through `reverse_steps`, in its time order.

use std::ops::Range;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::init::Rng;
use crate::kernels;
use crate::layers::gru::GruLayer;
use crate::layers::keras::{short, FromKeras, KerasConfig};
use crate::layers::lstm::{Lstm, LstmLayer};
use crate::layers::step_mask;
use crate::layers::onnx::{
    export_recurrent, finish_recurrent, OnnxAttr, OnnxGraph, OnnxValue, RecurrentDirection,
    RecurrentExport,
};
use crate::layers::{
    cache_mut, cache_ref, Backward, Cache, Layer, LayerConfig, LayerSpec, OutShape, StackInput,
    State, Weight,
};

/// How the outputs of the two directions are combined (Keras `merge_mode`).
///
/// Keras' `merge_mode=None`, which returns the two outputs as a list, has no equivalent: a
/// `Sequential` model passes one tensor from layer to layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MergeMode {
    /// `[f, b]`: the forward copy's units, then the backward copy's (width `2H`); Keras'
    /// default.
    #[default]
    Concat,
    /// `f + b` (width `H`).
    Sum,
    /// `f ⊙ b` (width `H`).
    Mul,
    /// `(f + b) / 2` (width `H`).
    Ave,
}

/// Why Keras' `merge_mode=None` is refused, and what to use instead.
const MERGE_NONE: &str = "merge_mode None returns the two directions as a list of two \
    tensors, which a Sequential model cannot pass on to the next layer; use \"concat\" (the \
    default: both outputs side by side), or \"sum\", \"mul\" or \"ave\"";

impl MergeMode {
    /// Every mode, in Keras' documentation order.
    pub const ALL: [MergeMode; 4] = [
        MergeMode::Sum,
        MergeMode::Mul,
        MergeMode::Concat,
        MergeMode::Ave,
    ];

    /// The Keras name (`concat`, `sum`, `mul`, `ave`).
    pub fn name(self) -> &'static str {
        match self {
            MergeMode::Concat => "concat",
            MergeMode::Sum => "sum",
            MergeMode::Mul => "mul",
            MergeMode::Ave => "ave",
        }
    }

    /// The mode of a Keras name.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for any other name.
    pub fn from_name(name: &str) -> Result<Self> {
        MergeMode::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| {
                Error::config(format!(
                    "unknown merge_mode \"{name}\"; use \"concat\", \"sum\", \"mul\" or \"ave\""
                ))
            })
    }

    /// The merged width of two outputs `units` wide.
    pub fn width(self, units: usize) -> usize {
        match self {
            MergeMode::Concat => 2 * units,
            _ => units,
        }
    }

    /// Merges rows of the two directions: `f`, `b` `[n, h]` into `y` `[n, width(h)]`.
    fn merge(self, f: &[f32], b: &[f32], h: usize, y: &mut [f32]) {
        match self {
            MergeMode::Concat => {
                let rows = y.chunks_exact_mut(2 * h).zip(f.chunks_exact(h));
                for ((y, f), b) in rows.zip(b.chunks_exact(h)) {
                    y[..h].copy_from_slice(f);
                    y[h..].copy_from_slice(b);
                }
            }
            MergeMode::Sum => {
                for ((y, f), b) in y.iter_mut().zip(f).zip(b) {
                    *y = f + b;
                }
            }
            MergeMode::Mul => {
                for ((y, f), b) in y.iter_mut().zip(f).zip(b) {
                    *y = f * b;
                }
            }
            MergeMode::Ave => {
                // (f + b) / 2, exactly: halving is exact in binary floating point.
                for ((y, f), b) in y.iter_mut().zip(f).zip(b) {
                    *y = (f + b) * 0.5;
                }
            }
        }
    }

    /// The gradients reaching each direction from `dy` `[n, width(h)]`: `df`, `db`
    /// `[n, h]`; `f`, `b` are the forward outputs the merge read (for `mul`).
    fn split_grad(self, dy: &[f32], (f, b): (&[f32], &[f32]), h: usize, df: &mut [f32], db: &mut [f32]) {
        match self {
            MergeMode::Concat => {
                let rows = dy.chunks_exact(2 * h).zip(df.chunks_exact_mut(h));
                for ((dy, df), db) in rows.zip(db.chunks_exact_mut(h)) {
                    df.copy_from_slice(&dy[..h]);
                    db.copy_from_slice(&dy[h..]);
                }
            }
            MergeMode::Sum => {
                df.copy_from_slice(dy);
                db.copy_from_slice(dy);
            }
            MergeMode::Mul => {
                let grads = df.iter_mut().zip(db.iter_mut());
                for ((((df, db), dy), f), b) in grads.zip(dy).zip(f).zip(b) {
                    *df = dy * b;
                    *db = dy * f;
                }
            }
            MergeMode::Ave => {
                for ((df, db), dy) in df.iter_mut().zip(db.iter_mut()).zip(dy) {
                    *df = dy * 0.5;
                    *db = dy * 0.5;
                }
            }
        }
    }
}

impl<'de> Deserialize<'de> for MergeMode {
    /// A Keras name; `null` (Keras' `None`) and unknown names are errors that say what to
    /// use.
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Err(serde::de::Error::custom(MERGE_NONE)),
            Some(name) => MergeMode::from_name(&name).map_err(|_| {
                serde::de::Error::custom(format!(
                    "unknown merge_mode \"{name}\"; use \"concat\", \"sum\", \"mul\" or \"ave\""
                ))
            }),
        }
    }
}

impl std::fmt::Display for MergeMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Specification of a Bidirectional layer: an LSTM or GRU spec, run once forward and once
/// backward over the sequence by two copies with their own weights, the outputs merged.
///
/// The wrapped spec's options (`units`, `return_sequences`, activations, `use_bias`,
/// dropout, GRU `reset_after`, `stateful`) are those of both copies. Its `name` is not
/// used (the copies are named `<name>/forward` and `<name>/backward`), nor its
/// `trainable`: set `trainable` on the Bidirectional layer.
///
/// A stateful wrapped layer makes both copies stateful: the carried state is the forward
/// copy's tensors, then the backward copy's (each copy carries its own final state into
/// its next batch, as in Keras).
///
/// # Shapes
/// Input `[batch, timesteps, features]`; output `[batch, W]`, or `[batch, timesteps, W]`
/// when the wrapped layer has `return_sequences`; `W` = 2·units with
/// [`MergeMode::Concat`], else units.
///
/// # Example
/// ```
/// use stacklstm::{Bidirectional, Dense, Gru, Lstm, MergeMode, Sequential};
/// let model = Sequential::new()
///     .input_shape(7, 3)
///     .add(Bidirectional::new(Lstm::new(4).return_sequences(true)))
///     .add(Bidirectional::new(Gru::new(3)).merge_mode(MergeMode::Sum))
///     .add(Dense::new(2))
///     .build()?;
/// // Keras' counts: 2 · (4·4·(3 + 4) + 16), then 2 · (3·3·(8 + 3) + 18), then 3·2 + 2.
/// assert_eq!(model.param_count(), 256 + 234 + 8);
/// # Ok::<(), stacklstm::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bidirectional {
    /// The wrapped layer (LSTM or GRU): the options of both copies.
    pub layer: Box<LayerSpec>,
    /// How the two outputs are combined (default [`MergeMode::Concat`]).
    #[serde(default)]
    pub merge_mode: MergeMode,
    /// Layer name; Keras-style defaults (`bidirectional`, `bidirectional_1`, ...) when
    /// `None`.
    #[serde(default)]
    pub name: Option<String>,
    /// Whether training updates the weights of both copies (Keras `trainable`, default
    /// true).
    #[serde(
        default = "Bidirectional::default_trainable",
        skip_serializing_if = "crate::layers::is_true"
    )]
    pub trainable: bool,
}

impl Bidirectional {
    /// Wraps `layer` (an [`Lstm`] or a [`Gru`](crate::layers::gru::Gru) spec), merging
    /// with Keras' default `concat`.
    #[must_use]
    pub fn new(layer: impl Into<LayerSpec>) -> Self {
        Bidirectional {
            layer: Box::new(layer.into()),
            merge_mode: MergeMode::Concat,
            name: None,
            trainable: true,
        }
    }
    /// Sets `merge_mode`.
    #[must_use]
    pub fn merge_mode(mut self, mode: MergeMode) -> Self {
        self.merge_mode = mode;
        self
    }
    /// Sets the layer name.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Sets `trainable` (false: training leaves both copies' weights as they are).
    #[must_use]
    pub fn trainable(mut self, on: bool) -> Self {
        self.trainable = on;
        self
    }

    fn default_trainable() -> bool {
        true
    }

    /// Checks what the wrapper itself requires of the wrapped spec: an LSTM or GRU,
    /// without `return_state`, `trainable` left on (it is the wrapper's to set). The
    /// wrapped layer's own options are checked by its own spec.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the layer and what to change.
    pub fn validate(&self, name: &str) -> Result<()> {
        let return_state = match &*self.layer {
            LayerSpec::Lstm(l) => l.return_state,
            LayerSpec::Gru(g) => g.return_state,
            other => {
                let kind = other.config().kind();
                return Err(Error::config(format!(
                    "layer '{name}' (Bidirectional) wraps a {kind} layer; only LSTM and GRU \
                     layers can be wrapped, e.g. Bidirectional::new(Lstm::new(4))"
                )));
            }
        };
        let kind = self.layer.config().kind();
        if return_state {
            return Err(Error::config(format!(
                "layer '{name}' (Bidirectional): the wrapped {kind} has return_state, which is \
                 not available inside a Sequential model (it passes one tensor between \
                 layers); turn return_state off"
            )));
        }
        if !self.layer.config().trainable() {
            return Err(Error::config(format!(
                "layer '{name}' (Bidirectional): the wrapped {kind} has trainable false, which \
                 the wrapper does not read; set trainable(false) on the Bidirectional layer \
                 instead"
            )));
        }
        Ok(())
    }
}

/// The name of one copy of the layer `name`.
fn copy_name(name: &str, backward: bool) -> String {
    if backward {
        format!("{name}/backward")
    } else {
        format!("{name}/forward")
    }
}

/// The name of a copy's weight `w` in the wrapper: `forward/<w>` or `backward/<w>`, for the
/// weight names the recurrent layers have. `Weight::name` is `&'static str`, hence the
/// table; a name outside it (no wrapped kind has one) keeps a `forward/` or `backward/`
/// prefix without the weight's own name.
fn weight_name(backward: bool, w: &str) -> &'static str {
    macro_rules! names {
        ($($n:literal),*) => {
            match (backward, w) {
                $((false, $n) => concat!("forward/", $n),
                  (true, $n) => concat!("backward/", $n),)*
                (false, _) => "forward/weight",
                (true, _) => "backward/weight",
            }
        };
    }
    names!("kernel", "recurrent_kernel", "bias")
}

impl LayerConfig for Bidirectional {
    config_identity!("Bidirectional", "bidirectional", trainable);
    fn stateful(&self) -> bool {
        self.layer.config().stateful()
    }
    fn has_return_sequences(&self) -> bool {
        true
    }
    fn output_width(&self, input_width: usize) -> usize {
        self.merge_mode
            .width(self.layer.config().output_width(input_width))
    }
    fn output_shape(&self, name: &str, input: &StackInput<'_>) -> Result<OutShape> {
        input.require_sequence(name, "Bidirectional")?;
        self.validate(name)?;
        let inner = self
            .layer
            .config()
            .output_shape(&copy_name(name, false), input)?;
        Ok(OutShape {
            seq: inner.seq,
            width: self.merge_mode.width(inner.width),
        })
    }
    /// The forward copy's weights, then the backward copy's, each named `forward/<w>` or
    /// `backward/<w>` after the wrapped layer's `<w>` (Keras' `get_weights()` order).
    fn weight_shapes(
        &self,
        name: &str,
        input_width: usize,
    ) -> Result<Vec<(&'static str, Vec<usize>)>> {
        self.validate(name)?;
        let inner = self
            .layer
            .config()
            .weight_shapes(&copy_name(name, false), input_width)?;
        let mut out = Vec::with_capacity(2 * inner.len());
        for backward in [false, true] {
            out.extend(
                inner
                    .iter()
                    .map(|(w, s)| (weight_name(backward, w), s.clone())),
            );
        }
        Ok(out)
    }
    /// A Keras 3 weights file keeps the copies under `backward_layer/cell/vars` and
    /// `forward_layer/cell/vars`, which the reader lists in that (path) order: the
    /// backward copy's variables come first there.
    fn keras_file_order(&self, n: usize) -> Option<Vec<usize>> {
        n.is_multiple_of(2)
            .then(|| (0..n).map(|k| (k + n / 2) % n).collect())
    }
    fn build(
        &self,
        name: String,
        input: OutShape,
        rng: &mut Rng,
        init: bool,
    ) -> Result<Box<dyn Layer>> {
        Ok(Box::new(BidirectionalLayer::build(
            self.clone(),
            name,
            input,
            rng,
            init,
        )?))
    }
}

impl FromKeras for Bidirectional {
    const KERAS_SUPPORT: &'static str = "Bidirectional (around an LSTM or GRU, with the options \
        supported for those; merge_mode concat, sum, mul or ave; the backward layer the \
        forward layer's copy with go_backwards)";

    fn from_keras(cfg: &mut KerasConfig<'_>) -> Self {
        cfg.dtype();
        let merge_mode = match cfg.get("merge_mode") {
            None => MergeMode::Concat,
            Some(Value::Null) => {
                cfg.unsupported(MERGE_NONE);
                MergeMode::Concat
            }
            Some(Value::String(s)) => MergeMode::from_name(s).unwrap_or_else(|_| {
                cfg.unsupported(format_args!(
                    "merge_mode '{s}' (use concat, sum, mul or ave)"
                ));
                MergeMode::Concat
            }),
            Some(v) => {
                cfg.malformed(format_args!(
                    "'merge_mode' should be a string, found {}",
                    short(v)
                ));
                MergeMode::Concat
            }
        };
        let trainable = cfg.bool("trainable", true);
        let forward = wrapped_from_keras(cfg, "layer", trainable);
        // Keras writes the backward layer too; when it does not, it makes the forward
        // layer's copy, as here.
        if let (Some(fwd), Some(_)) = (&forward, cfg.get("backward_layer")) {
            if let Some(bwd) = wrapped_from_keras(cfg, "backward_layer", trainable) {
                let differ = differing_options(fwd, &bwd);
                if !differ.is_empty() {
                    cfg.unsupported(format_args!(
                        "backward_layer's {} differ from layer's; only a backward layer with \
                         the forward layer's options is supported",
                        differ.join(", ")
                    ));
                }
            }
        }
        Bidirectional {
            // A placeholder when the wrapped layer could not be read (the problem is
            // recorded, so the spec is not used).
            layer: Box::new(forward.unwrap_or_else(|| Lstm::new(1).into())),
            merge_mode,
            name: Some(cfg.name().to_string()),
            trainable,
        }
    }
}

/// The spec of the wrapped layer in `cfg[key]` (`layer`, or `backward_layer`, whose
/// `go_backwards` must be true and is checked here: the wrapped kinds' own hooks refuse
/// it). Its problems are recorded in `cfg`; its `trainable` must be the wrapper's
/// (Keras sets both) and is then left on, as [`Bidirectional::validate`] wants.
fn wrapped_from_keras(cfg: &mut KerasConfig<'_>, key: &str, trainable: bool) -> Option<LayerSpec> {
    let Some(v) = cfg.get(key) else {
        cfg.malformed(format_args!("'{key}' missing"));
        return None;
    };
    let class = v.get("class_name").and_then(Value::as_str);
    let inner = v.get("config").and_then(Value::as_object);
    let (Some(class), Some(inner)) = (class, inner) else {
        cfg.malformed(format_args!(
            "'{key}' has no 'class_name' and 'config' object"
        ));
        return None;
    };
    if !matches!(class, "LSTM" | "GRU") {
        cfg.unsupported(format_args!(
            "{key} of class {class} (only LSTM and GRU layers can be wrapped)"
        ));
        return None;
    }
    let backward = key == "backward_layer";
    let stripped;
    let inner = if backward {
        if inner.get("go_backwards") != Some(&Value::Bool(true)) {
            cfg.unsupported(format_args!(
                "{key} without go_backwards=true (the backward copy reads the sequence in \
                 reverse)"
            ));
        }
        let mut m = inner.clone();
        m.remove("go_backwards");
        stripped = m;
        &stripped
    } else {
        inner
    };
    let mut k = KerasConfig::new(class, inner);
    let mut spec = LayerSpec::from_keras(class, &mut k);
    let problems = k.into_problems();
    for m in problems.malformed {
        cfg.malformed(m);
    }
    for m in problems.unsupported {
        cfg.unsupported(m);
    }
    if let Some(s) = spec.as_mut() {
        if s.config().trainable() != trainable {
            cfg.unsupported(format_args!(
                "{key} with trainable {} in a Bidirectional with trainable {trainable}",
                s.config().trainable()
            ));
        }
        s.config_mut().set_trainable(true);
    }
    spec
}

/// The options (other than the name) in which the backward copy's spec `b` differs from
/// the forward copy's `a`.
fn differing_options(a: &LayerSpec, b: &LayerSpec) -> Vec<String> {
    let (Ok(Value::Object(a)), Ok(Value::Object(b))) =
        (serde_json::to_value(a), serde_json::to_value(b))
    else {
        return Vec::new();
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| *k != "name" && a.get(*k) != b.get(*k))
        .map(|k| format!("{k} (backward {}, forward {})", show(b.get(k)), show(a.get(k))))
        .collect()
}

fn show(v: Option<&Value>) -> String {
    v.map_or_else(|| "absent".to_string(), short)
}

/// Forward FLOPs of the two copies together from which they run on two threads: the
/// batch split's threshold (`model/exec.rs`; measured on a quiet machine to pay from about
/// 8 MFLOP, see `docs/performance.md`), for the same kind of split: two independent halves
/// of the work, joined once. Measured here with LSTM and GRU copies at batch 1 (threaded
/// against one thread, best of 7 interleaved rounds) on this project's shared 2-core
/// machine, whose second core other processes kept busy throughout (load average 1.2-5):
/// a join costs about 13 µs, so threading lost below ~1 MFLOP per copy (x0.2-0.8); from 2
/// to 28 MFLOP per copy it stayed within noise (x0.9-1.1, inference and training steps),
/// as did the batch split itself in the same runs (x0.7-1.0 at batch 2). The threaded and
/// the one-thread runs give the same bits: each copy's work is the same either way.
const MIN_FLOPS: usize = 8_000_000;

/// A built Bidirectional layer: two built copies of the wrapped layer.
#[derive(Debug, Clone)]
pub struct BidirectionalLayer {
    spec: Bidirectional,
    name: String,
    /// Reads `x` forward.
    forward: Box<dyn Layer>,
    /// Reads `x` reversed in time.
    backward: Box<dyn Layer>,
    /// Input width `D`.
    input_width: usize,
    /// Each copy's output width `H`.
    units: usize,
    /// Whether the copies return sequences.
    seq: bool,
    /// Weight tensors per copy.
    n_weights: usize,
    /// State tensors per copy.
    n_states: usize,
    /// Weights per copy (its forward FLOPs per timestep and batch row: twice that).
    copy_params: usize,
}

/// What forward keeps for backward, and backward's scratch. Reused across calls.
#[derive(Debug)]
pub struct BidirectionalCache {
    /// Timesteps and batch of the last forward.
    t: usize,
    b: usize,
    /// The forward copy's cache.
    fwd: Box<dyn Cache>,
    /// The backward copy's cache (its own time order).
    bwd: Box<dyn Cache>,
    /// `[T, B, D]`: the input reversed in time, what the backward copy reads.
    xr: Vec<f32>,
    /// `[T, B, W]` or `[B, W]`: the merged output.
    out: Vec<f32>,
    /// `[T, B, H]` or `[B, H]`: the gradient reaching the forward copy's output.
    df: Vec<f32>,
    /// `[T, B, H]` or `[B, H]`: the gradient reaching the backward copy's output, in its
    /// time order.
    dg: Vec<f32>,
    /// `[T, B, D]`: the backward copy's dx, in its time order.
    dxg: Vec<f32>,
    /// The carried state's tensors of each copy (stateful only).
    state_f: State,
    state_g: State,
    /// `[T, B]`: the step mask of the last forward, and reversed in time (what the
    /// backward copy reads); empty without a mask.
    keep: Vec<bool>,
    keep_r: Vec<bool>,
}

/// `dst[s] = src[t-1-s]` for the `t` equal blocks (timesteps) of `src`.
fn reverse_steps<T: Copy>(src: &[T], t: usize, dst: &mut Vec<T>) {
    dst.clear();
    if t == 0 {
        return;
    }
    for block in src.chunks_exact(src.len() / t).rev() {
        dst.extend_from_slice(block);
    }
}

/// `dst` holds tensors `range` of `src`, its buffers reused.
fn copy_tensors(src: &State, range: Range<usize>, dst: &mut State) {
    dst.batch = src.batch;
    dst.tensors.resize_with(range.len(), Vec::new);
    for (d, s) in dst.tensors.iter_mut().zip(&src.tensors[range]) {
        d.clear();
        d.extend_from_slice(s);
    }
}

impl BidirectionalLayer {
    /// Builds the two copies through the wrapped spec's [`LayerConfig::build`] (the
    /// forward copy's weights drawn first), on a sequence input `input`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] from [`Bidirectional::validate`] and the wrapped spec.
    pub fn build(
        spec: Bidirectional,
        name: String,
        input: OutShape,
        rng: &mut Rng,
        init: bool,
    ) -> Result<Self> {
        spec.validate(&name)?;
        let inner = spec.layer.config();
        let out = inner.output_shape(
            &copy_name(&name, false),
            &StackInput {
                index: 0,
                shape: input,
                flat_origin: None,
            },
        )?;
        let forward = inner.build(copy_name(&name, false), input, rng, init)?;
        let backward = inner.build(copy_name(&name, true), input, rng, init)?;
        let weights = forward.weights();
        let (n_weights, copy_params) = (
            weights.len(),
            weights.iter().map(|w| w.values.len()).sum(),
        );
        let n_states = forward.state_widths().len();
        Ok(BidirectionalLayer {
            spec,
            name,
            forward,
            backward,
            input_width: input.width,
            units: out.width,
            seq: out.seq,
            n_weights,
            n_states,
            copy_params,
        })
    }

    /// The options it was built from.
    pub fn spec(&self) -> &Bidirectional {
        &self.spec
    }

    /// The merge mode.
    pub fn merge_mode(&self) -> MergeMode {
        self.spec.merge_mode
    }

    /// The copy that reads the sequence forward.
    pub fn forward_layer(&self) -> &dyn Layer {
        &*self.forward
    }

    /// The copy that reads the sequence backward.
    pub fn backward_layer(&self) -> &dyn Layer {
        &*self.backward
    }

    /// Input width `D`.
    pub fn input_width(&self) -> usize {
        self.input_width
    }

    /// Whether a pass over `rows` (timesteps × batch) rows runs the copies on two threads:
    /// only with two threads to spare (not inside a batch part already split) and enough
    /// work to pay for the join.
    fn threaded(&self, rows: usize) -> bool {
        kernels::threads_here() >= 2 && 2 * 2 * self.copy_params * rows >= MIN_FLOPS
    }

    /// Runs `a` (forward copy) and `b` (backward copy), on two threads when it pays. Each
    /// copy's work is the same either way, so the results are bit-identical.
    fn both(&self, rows: usize, a: impl FnOnce() + Send, b: impl FnOnce() + Send) {
        if self.threaded(rows) {
            rayon::join(|| kernels::sequential(a), || kernels::sequential(b));
        } else {
            a();
            b();
        }
    }

    /// The timesteps of the copies' outputs: `t` with `return_sequences`, else one.
    fn out_steps(&self, t: usize) -> usize {
        if self.seq {
            t
        } else {
            1
        }
    }
}

impl Layer for BidirectionalLayer {
    layer_identity!("Bidirectional");
    /// Keras order: the forward copy's weights, then the backward copy's.
    fn weights(&self) -> Vec<Weight<'_>> {
        let mut w = Vec::with_capacity(2 * self.n_weights);
        for (backward, copy) in [(false, &self.forward), (true, &self.backward)] {
            w.extend(copy.weights().into_iter().map(|w| Weight {
                name: weight_name(backward, w.name),
                ..w
            }));
        }
        w
    }
    fn weights_mut(&mut self) -> Vec<&mut [f32]> {
        let mut w = self.forward.weights_mut();
        w.extend(self.backward.weights_mut());
        w
    }
    fn new_cache(&self) -> Box<dyn Cache> {
        let empty = || State {
            batch: 0,
            tensors: Vec::new(),
        };
        Box::new(BidirectionalCache {
            t: 0,
            b: 0,
            fwd: self.forward.new_cache(),
            bwd: self.backward.new_cache(),
            xr: Vec::new(),
            out: Vec::new(),
            df: Vec::new(),
            dg: Vec::new(),
            dxg: Vec::new(),
            state_f: empty(),
            state_g: empty(),
            keep: Vec::new(),
            keep_r: Vec::new(),
        })
    }
    /// Under a step mask each copy skips the masked steps (the backward copy reads the mask
    /// reversed with `x`), and with `return_sequences` the merged output is zero at masked
    /// steps, as Keras forces `zero_output_for_mask` inside a Bidirectional.
    fn forward(
        &self,
        x: &[f32],
        t: usize,
        b: usize,
        state: Option<&State>,
        mask: Option<&[bool]>,
        cache: &mut dyn Cache,
    ) {
        let c: &mut BidirectionalCache = cache_mut(cache);
        c.t = t;
        c.b = b;
        reverse_steps(x, t, &mut c.xr);
        c.keep.clear();
        c.keep_r.clear();
        if let Some(m) = mask {
            c.keep.extend_from_slice(m);
            reverse_steps(m, t, &mut c.keep_r);
        }
        if let Some(s) = state {
            let n = self.n_states;
            copy_tensors(s, 0..n, &mut c.state_f);
            copy_tensors(s, n..2 * n, &mut c.state_g);
        }
        let BidirectionalCache {
            fwd,
            bwd,
            xr,
            out,
            state_f,
            state_g,
            keep,
            keep_r,
            ..
        } = c;
        let (mf, mg) = if mask.is_some() {
            (Some(&keep[..]), Some(&keep_r[..]))
        } else {
            (None, None)
        };
        let (sf, sg) = match state {
            Some(_) => (Some(&*state_f), Some(&*state_g)),
            None => (None, None),
        };
        let xr: &[f32] = xr;
        let (fwd_cache, bwd_cache) = (&mut **fwd, &mut **bwd);
        self.both(
            t * b,
            || self.forward.forward(x, t, b, sf, mf, fwd_cache),
            || self.backward.forward(xr, t, b, sg, mg, bwd_cache),
        );
        let f = self.forward.output(&**fwd);
        let g = self.backward.output(&**bwd);
        let (h, w) = (self.units, self.spec.merge_mode.width(self.units));
        let steps = self.out_steps(t);
        out.resize(steps * b * w, 0.0);
        for s in 0..steps {
            // Step s of the output pairs the forward copy's step s with the backward
            // copy's step steps-1-s (its output flipped back into input order).
            let r = steps - 1 - s;
            self.spec.merge_mode.merge(
                &f[s * b * h..(s + 1) * b * h],
                &g[r * b * h..(r + 1) * b * h],
                h,
                &mut out[s * b * w..(s + 1) * b * w],
            );
        }
        if self.seq && mask.is_some() {
            step_mask::zero(keep, out, w);
        }
    }
    fn output<'c>(&self, cache: &'c dyn Cache) -> &'c [f32] {
        &cache_ref::<BidirectionalCache>(cache).out
    }
    fn backward(&self, pass: Backward<'_>) {
        let Backward {
            x,
            dy,
            cache,
            mut dx,
            grads,
            mask,
        } = pass;
        let Some(grads) = grads else {
            unreachable!("a Bidirectional layer forms its weight gradients in backward");
        };
        let c: &mut BidirectionalCache = cache_mut(cache);
        let (t, b, h) = (c.t, c.b, self.units);
        let w = self.spec.merge_mode.width(h);
        let steps = self.out_steps(t);
        let BidirectionalCache {
            fwd,
            bwd,
            xr,
            df,
            dg,
            dxg,
            keep,
            keep_r,
            ..
        } = c;
        // Every element is written below, so the buffers are only sized.
        df.resize(steps * b * h, 0.0);
        dg.resize(steps * b * h, 0.0);
        {
            let f = self.forward.output(&**fwd);
            let g = self.backward.output(&**bwd);
            let n = b * h;
            for s in 0..steps {
                let r = steps - 1 - s;
                self.spec.merge_mode.split_grad(
                    &dy[s * b * w..(s + 1) * b * w],
                    (&f[s * n..(s + 1) * n], &g[r * n..(r + 1) * n]),
                    h,
                    &mut df[s * n..(s + 1) * n],
                    &mut dg[r * n..(r + 1) * n],
                );
            }
        }
        if self.seq && mask.is_some() {
            // The output is zero at masked steps, whatever the copies computed there.
            step_mask::zero(keep, df, h);
            step_mask::zero(keep_r, dg, h);
        }
        let (mf, mg) = if mask.is_some() {
            (Some(&keep[..]), Some(&keep_r[..]))
        } else {
            (None, None)
        };
        let (grads_f, grads_g) = grads.split_at_mut(self.n_weights);
        let want_dx = dx.is_some();
        let dx_f = dx.as_deref_mut();
        let dx_g = want_dx.then_some(&mut *dxg);
        let (xr, df, dg): (&[f32], &[f32], &[f32]) = (xr, df, dg);
        let (fwd_cache, bwd_cache) = (&mut **fwd, &mut **bwd);
        self.both(
            t * b,
            || {
                self.forward.backward(Backward {
                    x,
                    dy: df,
                    cache: fwd_cache,
                    mask: mf,
                    dx: dx_f,
                    grads: Some(grads_f),
                });
            },
            || {
                self.backward.backward(Backward {
                    x: xr,
                    dy: dg,
                    cache: bwd_cache,
                    mask: mg,
                    dx: dx_g,
                    grads: Some(grads_g),
                });
            },
        );
        if let Some(dx) = dx {
            // dx[s] += the backward copy's dx of step t-1-s (its input was x reversed).
            let bd = b * self.input_width;
            for (s, dxs) in dx.chunks_exact_mut(bd).enumerate() {
                let r = t - 1 - s;
                for (v, g) in dxs.iter_mut().zip(&dxg[r * bd..(r + 1) * bd]) {
                    *v += g;
                }
            }
        }
    }
    /// The forward copy's masks, then the backward copy's, from the same generator.
    fn draw_masks(&self, rng: &mut Rng, t: usize, b: usize, cache: &mut dyn Cache) {
        let c: &mut BidirectionalCache = cache_mut(cache);
        self.forward.draw_masks(rng, t, b, &mut *c.fwd);
        self.backward.draw_masks(rng, t, b, &mut *c.bwd);
    }
    fn clear_masks(&self, cache: &mut dyn Cache) {
        let c: &mut BidirectionalCache = cache_mut(cache);
        self.forward.clear_masks(&mut *c.fwd);
        self.backward.clear_masks(&mut *c.bwd);
    }
    fn copy_mask_rows(
        &self,
        full: &dyn Cache,
        rows: Range<usize>,
        t: usize,
        b: usize,
        part: &mut dyn Cache,
    ) {
        let src: &BidirectionalCache = cache_ref(full);
        let dst: &mut BidirectionalCache = cache_mut(part);
        self.forward
            .copy_mask_rows(&*src.fwd, rows.clone(), t, b, &mut *dst.fwd);
        self.backward
            .copy_mask_rows(&*src.bwd, rows, t, b, &mut *dst.bwd);
    }
    fn stateful(&self) -> bool {
        self.forward.stateful()
    }
    /// The forward copy's state widths, then the backward copy's.
    fn state_widths(&self) -> Vec<usize> {
        let mut w = self.forward.state_widths();
        w.extend(self.backward.state_widths());
        w
    }
    fn final_state<'c>(&self, cache: &'c dyn Cache) -> Vec<&'c [f32]> {
        let c: &BidirectionalCache = cache_ref(cache);
        let mut s = self.forward.final_state(&*c.fwd);
        s.extend(self.backward.final_state(&*c.bwd));
        s
    }
    /// One ONNX `LSTM` or `GRU` operator with `direction = "bidirectional"` (the weights
    /// of both copies stacked along its `num_directions` axis, as each kind's own export
    /// lays them out), then the merge: `Split` of the direction axis, `Concat` on the last
    /// axis or `Add` / `Mul` (`Add` then `Mul` by 0.5 for `ave`), and `Squeeze` of the
    /// direction axis. The operator's backward direction reads the sequence reversed and
    /// gives its outputs in input order, as the merge wants. A stateful layer is refused:
    /// the exported graph starts every sequence from zero state.
    fn export_onnx(&self, g: &mut dyn OnnxGraph, x: OnnxValue) -> Result<OnnxValue> {
        let what = format!("layer '{}' (Bidirectional)", self.name);
        let h = self.units;
        let rec = export_recurrent(
            g,
            x,
            RecurrentExport {
                base: "bidirectional",
                name: &self.name,
                kind: "Bidirectional",
                stateful: self.stateful(),
                return_sequences: self.seq,
                units: h,
                input_width: self.input_width,
                dirs: vec![
                    onnx_direction(&*self.forward, &what)?,
                    onnx_direction(&*self.backward, &what)?,
                ],
            },
        )?;
        let p = rec.prefix.clone();
        // Y [T, 2, B, H] with return_sequences, else Y_h [2, B, H]: the direction axis is
        // 1 or 0, the unit axis 3 or 2.
        let dir_axis = if self.seq { 1 } else { 0 };
        let split = format!("{p}/split");
        let (yf, yb) = (format!("{split}:0"), format!("{split}:1"));
        g.add_node(
            split,
            "Split",
            vec![rec.y.clone()],
            vec![yf.clone(), yb.clone()],
            vec![("axis", OnnxAttr::Int(dir_axis))],
        );
        let mode = self.spec.merge_mode;
        let (merge_op, merge_attrs) = match mode {
            MergeMode::Concat => ("Concat", vec![("axis", OnnxAttr::Int(dir_axis + 2))]),
            MergeMode::Sum | MergeMode::Ave => ("Add", vec![]),
            MergeMode::Mul => ("Mul", vec![]),
        };
        let merge = format!("{p}/{}", mode.name());
        let mut merged = format!("{merge}:0");
        g.add_node(
            merge,
            merge_op,
            vec![yf, yb],
            vec![merged.clone()],
            merge_attrs,
        );
        if mode == MergeMode::Ave {
            let half = format!("{p}/half");
            g.add_initializer(&half, &[1], &[0.5])?;
            let node = format!("{p}/halve");
            let o = format!("{node}:0");
            g.add_node(node, "Mul", vec![merged, half], vec![o.clone()], vec![]);
            merged = o;
        }
        let axes = g.axes(dir_axis);
        let sq = format!("{p}/squeeze");
        let out = format!("{sq}:0");
        g.add_node(sq, "Squeeze", vec![merged, axes], vec![out.clone()], vec![]);
        // Inside a Bidirectional, Keras outputs zeros at masked steps.
        Ok(finish_recurrent(g, &rec, out, self.seq, true, mode.width(h)))
    }
}

/// One copy as a direction of an ONNX recurrent operator. The one place that names the
/// wrapped kinds past [`Bidirectional::validate`]: each kind lays out its own ONNX weights.
fn onnx_direction(copy: &dyn Layer, what: &str) -> Result<RecurrentDirection> {
    let any = copy.as_any();
    if let Some(l) = any.downcast_ref::<LstmLayer>() {
        return l.onnx_direction(what);
    }
    if let Some(l) = any.downcast_ref::<GruLayer>() {
        return l.onnx_direction(what);
    }
    Err(Error::UnsupportedFormat {
        found: format!("ONNX export of {what} around a {} layer", copy.kind()),
        supported: "Bidirectional layers around LSTM or GRU layers".into(),
    })
}

#[cfg(test)]
mod tests {
    use ndarray::{s, Array2, Array3, ArrayView3, Axis};

    use super::*;
    use crate::layers::dense::Dense;
    use crate::layers::gru::Gru;
    use crate::layers::test_util::{fd_check, rand_vec};
    use crate::layers::{to_batch_major, to_time_major};
    use crate::model::Sequential;

    const NAME: &str = "bidirectional";

    /// The layer on a `d`-wide sequence, every weight (biases included) drawn uniformly
    /// from [-0.5, 0.5], as the fixtures do.
    fn setup(spec: Bidirectional, d: usize, seed: u64) -> BidirectionalLayer {
        let mut rng = Rng::new(seed);
        let input = OutShape { seq: true, width: d };
        let mut l = BidirectionalLayer::build(spec, NAME.into(), input, &mut rng, true).unwrap();
        for w in l.weights_mut() {
            for v in w.iter_mut() {
                *v = rng.uniform(-0.5, 0.5) as f32;
            }
        }
        l
    }

    fn zero_grads(l: &dyn Layer) -> Vec<Vec<f32>> {
        l.weights()
            .iter()
            .map(|w| vec![0.0; w.values.len()])
            .collect()
    }

    fn dot(a: &[f32], w: &[f32]) -> f64 {
        a.iter()
            .zip(w)
            .map(|(a, w)| f64::from(*a) * f64::from(*w))
            .sum()
    }

    /// A fresh cache for a `[t, b]` pass, with the layer's own dropout masks drawn from a
    /// fixed seed when `masks` (so every evaluation sees the same masks).
    fn cache(l: &BidirectionalLayer, t: usize, b: usize, masks: bool) -> Box<dyn Cache> {
        let mut c = l.new_cache();
        if masks {
            l.draw_masks(&mut Rng::new(5), t, b, &mut *c);
        }
        c
    }

    /// Forward, then backward of `dy`: (output, dx, weight gradients).
    fn pass(
        l: &BidirectionalLayer,
        x: &[f32],
        (t, b): (usize, usize),
        dy: Option<&[f32]>,
        masks: bool,
    ) -> (Vec<f32>, Vec<f32>, Vec<Vec<f32>>) {
        let mut c = cache(l, t, b, masks);
        l.forward(x, t, b, None, None, &mut *c);
        let y = l.output(&*c).to_vec();
        let (mut dx, mut g) = (Vec::new(), zero_grads(l));
        if let Some(dy) = dy {
            l.backward(Backward {
                x,
                dy,
                cache: &mut *c,
                mask: None,
                dx: Some(&mut dx),
                grads: Some(&mut g),
            });
        }
        (y, dx, g)
    }

    /// Finite differences of the input and of every weight of both copies for the scalar
    /// `L = Σ wy ⊙ output` (fixed random `wy`, so every output element gets a distinct
    /// gradient). Default activations: smooth, so `fd_check`'s step and tolerance hold.
    fn check(spec: Bidirectional, masks: bool) {
        let (t, b, d) = (4, 3, 2);
        let tag = format!(
            "{} {} rs={} masks={masks}",
            spec.layer.config().kind(),
            spec.merge_mode,
            setup(spec.clone(), d, 1).seq
        );
        let l = setup(spec, d, 11);
        let mut rng = Rng::new(12);
        let x = rand_vec(&mut rng, t * b * d, 1.0);
        let n_out = pass(&l, &x, (t, b), None, masks).0.len();
        let wy = rand_vec(&mut rng, n_out, 1.0);
        let (_, dx, g) = pass(&l, &x, (t, b), Some(&wy), masks);
        let eval = |l: &BidirectionalLayer, x: &[f32]| dot(&pass(l, x, (t, b), None, masks).0, &wy);
        fd_check(&format!("{tag}: input"), &dx, x.len(), |i, e| {
            let mut x2 = x.clone();
            x2[i] += e;
            eval(&l, &x2)
        });
        let names: Vec<&str> = l.weights().iter().map(|w| w.name).collect();
        assert_eq!(g.len(), names.len());
        for (k, name) in names.iter().enumerate() {
            fd_check(&format!("{tag}: {name}"), &g[k], g[k].len(), |i, e| {
                let mut l2 = l.clone();
                l2.weights_mut()[k][i] += e;
                eval(&l2, &x)
            });
        }
    }

    #[test]
    fn gradients_every_merge_mode_around_lstm() {
        for mode in MergeMode::ALL {
            for rs in [true, false] {
                check(
                    Bidirectional::new(Lstm::new(3).return_sequences(rs)).merge_mode(mode),
                    false,
                );
            }
        }
    }

    #[test]
    fn gradients_every_merge_mode_around_gru_both_reset_modes() {
        for mode in MergeMode::ALL {
            for rs in [true, false] {
                for reset_after in [true, false] {
                    let gru = Gru::new(3).return_sequences(rs).reset_after(reset_after);
                    check(Bidirectional::new(gru).merge_mode(mode), false);
                }
            }
        }
    }

    #[test]
    fn gradients_without_bias_and_with_dropout_masks() {
        let lstm = Lstm::new(3).return_sequences(true);
        check(Bidirectional::new(lstm.clone().use_bias(false)), false);
        check(
            Bidirectional::new(lstm.dropout(0.3).recurrent_dropout(0.3)).merge_mode(MergeMode::Mul),
            true,
        );
        let gru = Gru::new(3).dropout(0.3).recurrent_dropout(0.3);
        check(Bidirectional::new(gru).merge_mode(MergeMode::Ave), true);
    }

    #[test]
    fn gradients_accumulate() {
        let l = setup(Bidirectional::new(Gru::new(2).return_sequences(true)), 2, 3);
        let x = rand_vec(&mut Rng::new(4), 3 * 2 * 2, 1.0);
        let dy = rand_vec(&mut Rng::new(5), 3 * 2 * 4, 1.0);
        let (_, _, once) = pass(&l, &x, (3, 2), Some(&dy), false);
        let mut c = l.new_cache();
        let mut g = zero_grads(&l);
        for _ in 0..2 {
            l.forward(&x, 3, 2, None, None, &mut *c);
            l.backward(Backward {
                x: &x,
                dy: &dy,
                cache: &mut *c,
                mask: None,
                dx: None,
                grads: Some(&mut g),
            });
        }
        for (a, b) in g.iter().flatten().zip(once.iter().flatten()) {
            assert!((a - 2.0 * b).abs() <= 1e-6 * (1.0 + b.abs()), "{a} vs 2 * {b}");
        }
    }

    /// The final state `h` of one copy run on its own on a `[B, T, D]` input.
    fn copy_h(copy: &dyn Layer, x: ArrayView3<'_, f32>) -> Array2<f32> {
        let any = copy.as_any();
        if let Some(l) = any.downcast_ref::<LstmLayer>() {
            l.call(x, None).unwrap().h
        } else if let Some(l) = any.downcast_ref::<GruLayer>() {
            l.call(x, None).unwrap().h
        } else {
            panic!("not a recurrent copy: {}", copy.kind())
        }
    }

    /// `x` reversed along time.
    fn flip(x: ArrayView3<'_, f32>) -> Array3<f32> {
        x.slice(s![.., ..;-1, ..]).to_owned()
    }

    /// Keras' definition, step by step: output step t merges the forward copy's output
    /// after reading x_1..x_t (its final h on that prefix) with the backward copy's after
    /// reading x_T..x_t (its final h on that suffix, reversed); without return_sequences,
    /// f_T with b_1. Each copy is run on its own.
    #[test]
    fn each_step_merges_the_forward_prefix_and_the_backward_suffix() {
        let (b, t, d, h) = (2, 5, 3, 4);
        let x = Array3::from_shape_fn((b, t, d), |(i, j, k)| {
            ((i * 13 + j * 5 + k * 3) as f32 * 0.71).sin()
        });
        let merge = |mode: MergeMode, f: &Array2<f32>, g: &Array2<f32>| match mode {
            MergeMode::Concat => ndarray::concatenate(Axis(1), &[f.view(), g.view()]).unwrap(),
            MergeMode::Sum => f + g,
            MergeMode::Mul => f * g,
            MergeMode::Ave => (f + g) / 2.0,
        };
        let specs: [LayerSpec; 3] = [
            Lstm::new(h).return_sequences(true).into(),
            Gru::new(h).return_sequences(true).into(),
            Gru::new(h).return_sequences(true).reset_after(false).into(),
        ];
        for inner in specs {
            for mode in MergeMode::ALL {
                for rs in [true, false] {
                    let mut spec = Bidirectional::new(inner.clone()).merge_mode(mode);
                    if !rs {
                        spec.layer = Box::new(match *spec.layer {
                            LayerSpec::Lstm(l) => l.return_sequences(false).into(),
                            LayerSpec::Gru(g) => g.return_sequences(false).into(),
                            other => other,
                        });
                    }
                    let l = setup(spec, d, 7);
                    let (y, _, _) = pass(&l, &to_time_major(x.view()), (t, b), None, false);
                    let w = mode.width(h);
                    let steps: Vec<usize> = if rs { (0..t).collect() } else { vec![t - 1] };
                    let y = if rs {
                        to_batch_major(&y, t, b, w)
                    } else {
                        Array3::from_shape_vec((b, 1, w), y).unwrap()
                    };
                    for (k, &step) in steps.iter().enumerate() {
                        let f = copy_h(l.forward_layer(), x.slice(s![.., ..=step, ..]));
                        let from = if rs { step } else { 0 };
                        let back = flip(x.slice(s![.., from.., ..]));
                        let g = copy_h(l.backward_layer(), back.view());
                        let want = merge(mode, &f, &g);
                        let got = y.index_axis(Axis(1), k);
                        for (a, e) in got.iter().zip(&want) {
                            assert!(
                                (a - e).abs() <= 1e-6,
                                "{} {mode} rs={rs} step {step}: {a} vs {e}",
                                l.forward_layer().kind()
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn two_threads_give_the_one_thread_results_bit_for_bit() {
        let (t, b, d) = (40, 4, 8);
        for inner in [
            LayerSpec::from(Lstm::new(64).return_sequences(true)),
            LayerSpec::from(Gru::new(64)),
        ] {
            let l = setup(Bidirectional::new(inner).merge_mode(MergeMode::Mul), d, 8);
            assert!(kernels::threads() < 2 || l.threaded(t * b), "must run on two threads");
            let x = rand_vec(&mut Rng::new(9), t * b * d, 1.0);
            let n = pass(&l, &x, (t, b), None, false).0.len();
            let dy = rand_vec(&mut Rng::new(10), n, 1.0);
            let two = pass(&l, &x, (t, b), Some(&dy), false);
            let one = kernels::sequential(|| {
                assert!(!l.threaded(t * b));
                pass(&l, &x, (t, b), Some(&dy), false)
            });
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&two.0), bits(&one.0), "output");
            assert_eq!(bits(&two.1), bits(&one.1), "dx");
            for (a, b) in two.2.iter().zip(&one.2) {
                assert_eq!(bits(a), bits(b), "weight gradients");
            }
        }
    }

    #[test]
    fn weights_are_named_and_ordered_as_keras_lists_them() {
        let spec = Bidirectional::new(Gru::new(4));
        let l = setup(spec.clone(), 3, 1);
        let got: Vec<(&str, Vec<usize>)> = l
            .weights()
            .iter()
            .map(|w| (w.name, w.shape.to_vec()))
            .collect();
        let want = vec![
            ("forward/kernel", vec![3, 12]),
            ("forward/recurrent_kernel", vec![4, 12]),
            ("forward/bias", vec![2, 12]),
            ("backward/kernel", vec![3, 12]),
            ("backward/recurrent_kernel", vec![4, 12]),
            ("backward/bias", vec![2, 12]),
        ];
        assert_eq!(got, want);
        assert_eq!(spec.weight_shapes(NAME, 3).unwrap(), want);
        // weights_mut in the same order: the forward copy's kernel, then the backward's.
        let mut l2 = l.clone();
        l2.weights_mut()[3][0] = 42.0;
        assert_eq!(l2.backward_layer().weights()[0].values[0], 42.0);
        assert_eq!(l2.weights()[3].values[0], 42.0);
        // The two copies start from different weights (two draws from the generator).
        let fresh = BidirectionalLayer::build(
            spec.clone(),
            NAME.into(),
            OutShape { seq: true, width: 3 },
            &mut Rng::new(0),
            true,
        )
        .unwrap();
        assert_ne!(fresh.weights()[0].values, fresh.weights()[3].values);
        // A Keras file lists backward_layer's variables before forward_layer's.
        assert_eq!(spec.keras_file_order(6), Some(vec![3, 4, 5, 0, 1, 2]));
        assert_eq!(spec.keras_file_order(5), None);
        for (backward, w) in [(false, "kernel"), (true, "recurrent_kernel"), (true, "bias")] {
            assert!(weight_name(backward, w).ends_with(w));
        }
    }

    #[test]
    fn in_a_model_counts_and_stacking_read_like_keras() {
        // Keras' summary of the bilstm_concat_stack fixture: 256, then 2 · 4·3·(8 + 3) + 2 · 12
        // = 288, then 6·2 + 2 = 14.
        let m = Sequential::new()
            .input_shape(7, 3)
            .add(Bidirectional::new(Lstm::new(4).return_sequences(true)))
            .add(Bidirectional::new(Lstm::new(3)))
            .add(Dense::new(2))
            .build()
            .unwrap();
        assert_eq!(m.param_count(), 256 + 288 + 14);
        let s = m.summary();
        for needle in [
            "bidirectional (Bidirectional)",
            "bidirectional_1 (Bidirectional)",
            "(None, 7, 8)",
            "(None, 6)",
            "256",
            "288",
        ] {
            assert!(s.contains(needle), "{needle} not in\n{s}");
        }
        // bigru_sum: GRU(5) on 2 features, sum: 2 · (3·5·(2 + 5) + 30) = 270, then Dense 12.
        let m = Sequential::new()
            .input_shape(6, 2)
            .add(Bidirectional::new(Gru::new(5).return_sequences(true)).merge_mode(MergeMode::Sum))
            .add(Dense::new(2))
            .build()
            .unwrap();
        assert_eq!(m.param_count(), 270 + 12);
        assert_eq!(m.output_shape(), OutShape { seq: true, width: 2 });
    }

    fn build_err(spec: Sequential) -> String {
        spec.build().unwrap_err().to_string()
    }

    #[test]
    fn stacking_errors_name_the_layers_and_the_fix() {
        // A Bidirectional without return_sequences under a recurrent layer.
        let err = build_err(
            Sequential::new()
                .input_shape(5, 2)
                .add(Bidirectional::new(Lstm::new(4)))
                .add(Lstm::new(3)),
        );
        assert!(
            err.contains("'lstm' (LSTM)")
                && err.contains("'bidirectional' (Bidirectional)")
                && err.contains("return_sequences(true) on 'bidirectional'"),
            "{err}"
        );
        // ... under another Bidirectional.
        let err = build_err(
            Sequential::new()
                .input_shape(5, 2)
                .add(Bidirectional::new(Gru::new(4)).name("encoder"))
                .add(Dense::new(3))
                .add(Bidirectional::new(Gru::new(3))),
        );
        assert!(
            err.contains("'bidirectional' (Bidirectional)")
                && err.contains("'dense' (Dense)")
                && err.contains("on 'encoder'"),
            "{err}"
        );
        // An LSTM without return_sequences under a Bidirectional.
        let err = build_err(
            Sequential::new()
                .input_shape(5, 2)
                .add(Lstm::new(4))
                .add(Bidirectional::new(Lstm::new(3))),
        );
        assert!(err.contains("return_sequences(true) on 'lstm'"), "{err}");
    }

    #[test]
    fn only_lstm_and_gru_without_return_state_can_be_wrapped() {
        let build = |b: Bidirectional| build_err(Sequential::new().input_shape(5, 2).add(b));
        let err = build(Bidirectional::new(Dense::new(3)));
        assert!(
            err.contains("'bidirectional' (Bidirectional) wraps a Dense layer")
                && err.contains("only LSTM and GRU"),
            "{err}"
        );
        let err = build(Bidirectional::new(Bidirectional::new(Lstm::new(2))));
        assert!(err.contains("wraps a Bidirectional layer"), "{err}");
        let err = build(Bidirectional::new(Lstm::new(2).return_state(true)));
        assert!(
            err.contains("return_state") && err.contains("turn return_state off"),
            "{err}"
        );
        let err = build(Bidirectional::new(Gru::new(2).trainable(false)));
        assert!(
            err.contains("trainable(false) on the Bidirectional layer"),
            "{err}"
        );
        let err = build(Bidirectional::new(Lstm::new(0)));
        assert!(
            err.contains("'bidirectional/forward' (LSTM): units must be at least 1"),
            "{err}"
        );
        let err = build(Bidirectional::new(Gru::new(2).dropout(1.5)));
        assert!(err.contains("dropout must be in [0, 1)"), "{err}");
        // Frozen as a whole: nothing trainable.
        let m = Sequential::new()
            .input_shape(5, 2)
            .add(Bidirectional::new(Lstm::new(2)).trainable(false))
            .build()
            .unwrap();
        assert_eq!(m.trainable_param_count(), 0);
        assert_eq!(m.param_count(), 2 * (8 * 4 + 8));
    }

    #[test]
    fn json_specs_parse_and_refuse_merge_mode_none() {
        let spec: LayerSpec = serde_json::from_str(
            r#"{"type": "bidirectional", "merge_mode": "sum",
                "layer": {"type": "gru", "units": 3, "return_sequences": true}}"#,
        )
        .unwrap();
        let want = Bidirectional::new(Gru::new(3).return_sequences(true)).merge_mode(MergeMode::Sum);
        assert_eq!(spec, LayerSpec::from(want.clone()));
        let text = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<LayerSpec>(&text).unwrap(), spec);
        // merge_mode defaults to concat.
        let spec: LayerSpec =
            serde_json::from_str(r#"{"type": "bidirectional", "layer": {"type": "lstm", "units": 2}}"#)
                .unwrap();
        assert_eq!(spec, LayerSpec::from(Bidirectional::new(Lstm::new(2))));
        let err = serde_json::from_str::<LayerSpec>(
            r#"{"type": "bidirectional", "merge_mode": null, "layer": {"type": "lstm", "units": 2}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("merge_mode None") && err.contains("use \"concat\""),
            "{err}"
        );
        let err = serde_json::from_str::<LayerSpec>(
            r#"{"type": "bidirectional", "merge_mode": "max", "layer": {"type": "lstm", "units": 2}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown merge_mode \"max\""), "{err}");
        assert!(serde_json::from_str::<LayerSpec>(r#"{"type": "bidirectional"}"#).is_err());
    }

    /// The config Keras 3 writes for `Bidirectional(LSTM(4, return_sequences=True))`
    /// (trimmed of the initialisers), with `edit` applied.
    fn keras_config(edit: impl FnOnce(&mut Value)) -> (Bidirectional, Vec<String>, Vec<String>) {
        let inner = |name: &str, back: bool| {
            serde_json::json!({"module": "keras.layers", "class_name": "LSTM", "config": {
                "name": name, "trainable": true, "dtype": "float32", "return_sequences": true,
                "return_state": false, "go_backwards": back, "stateful": false,
                "unroll": false, "zero_output_for_mask": true, "units": 4,
                "activation": "tanh", "recurrent_activation": "sigmoid", "use_bias": true,
                "unit_forget_bias": true, "dropout": 0.0, "recurrent_dropout": 0.0,
                "seed": null}})
        };
        let mut cfg = serde_json::json!({"name": "bidirectional", "trainable": true,
            "dtype": "float32", "merge_mode": "concat",
            "layer": inner("forward_lstm", false),
            "backward_layer": inner("backward_lstm", true)});
        edit(&mut cfg);
        let map = cfg.as_object().unwrap().clone();
        let mut k = KerasConfig::new("Bidirectional", &map);
        let spec = Bidirectional::from_keras(&mut k);
        let p = k.into_problems();
        (spec, p.malformed, p.unsupported)
    }

    #[test]
    fn keras_config_reads_the_wrapped_layer_and_merge_mode() {
        let (spec, malformed, unsupported) = keras_config(|_| {});
        assert!(malformed.is_empty() && unsupported.is_empty(), "{malformed:?} {unsupported:?}");
        let want = Bidirectional::new(Lstm::new(4).return_sequences(true).name("forward_lstm"))
            .name("bidirectional");
        assert_eq!(spec, want);
        let (spec, _, unsupported) = keras_config(|c| {
            c["merge_mode"] = "ave".into();
            c["trainable"] = false.into();
            c["layer"]["config"]["trainable"] = false.into();
            c["backward_layer"]["config"]["trainable"] = false.into();
        });
        assert!(unsupported.is_empty(), "{unsupported:?}");
        assert_eq!(spec.merge_mode, MergeMode::Ave);
        assert!(!spec.trainable && spec.layer.config().trainable());
        // Without a backward_layer Keras makes the forward layer's copy.
        let (_, malformed, unsupported) = keras_config(|c| {
            c.as_object_mut().unwrap().remove("backward_layer");
        });
        assert!(malformed.is_empty() && unsupported.is_empty());
    }

    #[test]
    fn keras_config_refuses_what_a_sequential_cannot_run() {
        let unsupported = |edit: fn(&mut Value)| keras_config(edit).2.join("; ");
        let u = unsupported(|c| c["merge_mode"] = Value::Null);
        assert!(
            u.starts_with("layer 'bidirectional' (Bidirectional): merge_mode None")
                && u.contains("use \"concat\""),
            "{u}"
        );
        let u = unsupported(|c| c["merge_mode"] = "max".into());
        assert!(u.contains("merge_mode 'max'"), "{u}");
        let u = unsupported(|c| c["layer"]["class_name"] = "SimpleRNN".into());
        assert!(
            u.contains("layer of class SimpleRNN (only LSTM and GRU layers can be wrapped)"),
            "{u}"
        );
        let u = unsupported(|c| c["backward_layer"]["config"]["units"] = 5.into());
        assert!(
            u.contains("backward_layer's units (backward 5, forward 4) differ from layer's"),
            "{u}"
        );
        let u = unsupported(|c| c["backward_layer"]["config"]["go_backwards"] = false.into());
        assert!(u.contains("backward_layer without go_backwards=true"), "{u}");
        let u = unsupported(|c| c["layer"]["config"]["go_backwards"] = true.into());
        assert!(u.contains("'forward_lstm' (LSTM): go_backwards=true"), "{u}");
        let u = unsupported(|c| c["layer"]["config"]["activation"] = "swish".into());
        assert!(
            u.contains("layer 'bidirectional' (Bidirectional): layer 'forward_lstm' (LSTM): activation 'swish'"),
            "{u}"
        );
        let u = unsupported(|c| c["layer"]["config"]["trainable"] = false.into());
        assert!(u.contains("layer with trainable false in a Bidirectional with trainable true"), "{u}");
        let (_, malformed, _) = keras_config(|c| {
            c.as_object_mut().unwrap().remove("layer");
        });
        assert!(malformed.join("; ").contains("'layer' missing"), "{malformed:?}");
        let (_, malformed, _) = keras_config(|c| c["layer"]["config"]["units"] = 0.into());
        assert!(malformed.join("; ").contains("'units' = 0"), "{malformed:?}");
    }

    #[test]
    fn masks_are_drawn_forward_copy_first_and_split_by_rows() {
        let (t, b, d) = (3, 5, 2);
        let spec = Bidirectional::new(Lstm::new(3).return_sequences(true).dropout(0.5));
        let l = setup(spec, d, 2);
        // The forward copy's masks, then the backward copy's, from one generator.
        let mut full = l.new_cache();
        l.draw_masks(&mut Rng::new(6), t, b, &mut *full);
        let mut rng = Rng::new(6);
        let (mut f, mut g) = (l.forward.new_cache(), l.backward.new_cache());
        l.forward.draw_masks(&mut rng, t, b, &mut *f);
        l.backward.draw_masks(&mut rng, t, b, &mut *g);
        let x = rand_vec(&mut Rng::new(7), t * b * d, 1.0);
        let run_copy = |copy: &dyn Layer, x: &[f32], c: &mut dyn Cache| {
            copy.forward(x, t, b, None, None, c);
            copy.output(c).to_vec()
        };
        let mut xr = Vec::new();
        reverse_steps(&x, t, &mut xr);
        let (yf, yg) = (run_copy(&*l.forward, &x, &mut *f), run_copy(&*l.backward, &xr, &mut *g));
        l.forward(&x, t, b, None, None, &mut *full);
        let y = l.output(&*full).to_vec();
        let h = 3;
        for s in 0..t {
            for i in 0..b {
                let row = &y[(s * b + i) * 2 * h..(s * b + i + 1) * 2 * h];
                assert_eq!(row[..h], yf[(s * b + i) * h..(s * b + i + 1) * h]);
                let r = t - 1 - s;
                assert_eq!(row[h..], yg[(r * b + i) * h..(r * b + i + 1) * h]);
            }
        }
        // A part with rows 1..4 of those masks gives rows 1..4 of the output.
        let mut part = l.new_cache();
        l.copy_mask_rows(&*full, 1..4, t, b, &mut *part);
        let mut xp = Vec::new();
        crate::layers::copy_time_major_rows(&x, 1..4, t, b, d, &mut xp);
        l.forward(&xp, t, 3, None, None, &mut *part);
        let mut want = Vec::new();
        crate::layers::copy_time_major_rows(&y, 1..4, t, b, 2 * h, &mut want);
        for (a, e) in l.output(&*part).iter().zip(&want) {
            assert!((a - e).abs() <= 1e-6, "{a} vs {e}");
        }
        // Cleared masks: the plain layer.
        l.clear_masks(&mut *full);
        let plain = pass(&l, &x, (t, b), None, false).0;
        l.forward(&x, t, b, None, None, &mut *full);
        assert_eq!(l.output(&*full), &plain[..]);
    }

    #[test]
    fn stateful_copies_carry_their_own_state() {
        let (t, b, d, h) = (3, 2, 2, 3);
        for inner in [
            LayerSpec::from(Lstm::new(h).return_sequences(true).stateful(true)),
            LayerSpec::from(Gru::new(h).stateful(true)),
        ] {
            let spec = Bidirectional::new(inner).merge_mode(MergeMode::Sum);
            assert!(spec.stateful());
            let l = setup(spec.clone(), d, 4);
            assert!(l.stateful());
            let n = l.forward.state_widths().len();
            assert_eq!(l.state_widths(), vec![h; 2 * n]);
            let mut rng = Rng::new(5);
            let (x1, x2) = (rand_vec(&mut rng, t * b * d, 1.0), rand_vec(&mut rng, t * b * d, 1.0));
            // The layer over two batches, the state of the first carried into the second.
            let mut c = l.new_cache();
            l.forward(&x1, t, b, None, None, &mut *c);
            let state = State {
                batch: b,
                tensors: l.final_state(&*c).iter().map(|s| s.to_vec()).collect(),
            };
            l.forward(&x2, t, b, Some(&state), None, &mut *c);
            let y = l.output(&*c).to_vec();
            // Each copy on its own: the forward copy over x1 then x2, the backward copy over
            // x1 reversed then x2 reversed, each carrying its own state.
            let carry = |copy: &dyn Layer, a: &[f32], b2: &[f32]| {
                let mut c = copy.new_cache();
                copy.forward(a, t, b, None, None, &mut *c);
                let st = State {
                    batch: b,
                    tensors: copy.final_state(&*c).iter().map(|s| s.to_vec()).collect(),
                };
                copy.forward(b2, t, b, Some(&st), None, &mut *c);
                copy.output(&*c).to_vec()
            };
            let yf = carry(&*l.forward, &x1, &x2);
            let (mut r1, mut r2) = (Vec::new(), Vec::new());
            reverse_steps(&x1, t, &mut r1);
            reverse_steps(&x2, t, &mut r2);
            let yg = carry(&*l.backward, &r1, &r2);
            let steps = y.len() / (b * h);
            for s in 0..steps {
                let r = steps - 1 - s;
                for k in 0..b * h {
                    assert_eq!(y[s * b * h + k], yf[s * b * h + k] + yg[r * b * h + k]);
                }
            }
            // In a model: predict_on_batch carries the same state.
            let mut m = Sequential::new().input_features(d).add(spec).build().unwrap();
            m.set_weights(
                &l.weights()
                    .iter()
                    .map(|w| {
                        ndarray::ArrayD::from_shape_vec(w.shape.to_vec(), w.values.to_vec()).unwrap()
                    })
                    .collect::<Vec<_>>(),
            )
            .unwrap();
            let batch = |v: &[f32]| to_batch_major(v, t, b, d);
            m.predict_on_batch(&batch(&x1)).unwrap();
            let got = m.predict_on_batch(&batch(&x2)).unwrap();
            let want: Vec<f32> = if steps == 1 {
                y.clone()
            } else {
                to_batch_major(&y, t, b, h).iter().copied().collect()
            };
            assert_eq!(got.iter().copied().collect::<Vec<_>>(), want);
        }
    }

    #[test]
    fn onnx_export_refuses_stateful_layers_and_flat_inputs() {
        struct Nothing;
        impl OnnxGraph for Nothing {
            fn layer_prefix(&mut self, base: &str) -> String {
                base.into()
            }
            fn add_initializer(&mut self, _: &str, _: &[usize], _: &[f32]) -> Result<()> {
                Ok(())
            }
            fn axes(&mut self, _: i64) -> String {
                String::new()
            }
            fn add_node(
                &mut self,
                _: String,
                _: &'static str,
                _: Vec<String>,
                _: Vec<String>,
                _: Vec<(&'static str, OnnxAttr)>,
            ) {
            }
            fn to_layout(&mut self, v: OnnxValue, to: crate::layers::onnx::OnnxLayout, _: &str) -> Result<OnnxValue> {
                Ok(OnnxValue { layout: to, ..v })
            }
            fn add_initializer_i64(&mut self, _: &str, _: &[usize], _: &[i64]) {}
            fn step_mask(&self) -> Option<crate::layers::onnx::OnnxStepMask> {
                None
            }
            fn set_step_mask(&mut self, _: Option<crate::layers::onnx::OnnxStepMask>) {}
        }
        let seq = |width| OnnxValue {
            name: "x".into(),
            layout: crate::layers::onnx::OnnxLayout::BatchMajor,
            width,
        };
        let l = setup(Bidirectional::new(Lstm::new(2).stateful(true)), 3, 1);
        let err = l.export_onnx(&mut Nothing, seq(3)).unwrap_err().to_string();
        assert!(err.contains("stateful layer 'bidirectional' (Bidirectional)"), "{err}");
        let l = setup(Bidirectional::new(Gru::new(2)).merge_mode(MergeMode::Ave), 3, 1);
        let flat = OnnxValue {
            layout: crate::layers::onnx::OnnxLayout::Flat,
            ..seq(3)
        };
        let err = l.export_onnx(&mut Nothing, flat).unwrap_err().to_string();
        assert!(err.contains("needs a 3-D sequence input"), "{err}");
        let out = l.export_onnx(&mut Nothing, seq(3)).unwrap();
        assert_eq!((out.layout, out.width), (crate::layers::onnx::OnnxLayout::Flat, 2));
    }
}
