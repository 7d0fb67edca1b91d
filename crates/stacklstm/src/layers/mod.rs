//! Layers: the two traits every layer implements, the registry of layer kinds, and the
//! helpers layers share.
//!
//! A layer is one file. Its *spec* (`Lstm`, `Dense`, ...: options with Keras names,
//! serde-serialisable) implements [`LayerConfig`]: shape inference and the stacking rules,
//! the weight shapes, and `build`. The *built* layer (`LstmLayer`, ...: weights) implements
//! [`Layer`]: weights with Keras names and shapes, forward, backward, dropout masks and
//! carried state. The model, the trainer, the two-thread batch split, the summary, the
//! native file format, the Keras import and the ONNX export reach a layer only through
//! these traits and the registry; they never match on kinds.
//!
//! # Adding a layer
//! Exactly two places:
//! 1. a new file `src/layers/<name>.rs` with
//!    * the spec, implementing [`LayerConfig`] (options, shape inference and stacking
//!      errors, weight shapes, `build`) and [`FromKeras`] (the Keras import hook: reads the
//!      layer's options from a Keras `config.json` through a [`KerasConfig`], recording
//!      every malformed or unsupported option; `KERAS_SUPPORT` says what is supported);
//!    * the built layer, implementing [`Layer`] (weights, forward, backward, masks, state)
//!      and, when ONNX can express it, [`Layer::export_onnx`] (the ONNX export hook: adds
//!      the layer's initializers and nodes to an [`OnnxGraph`]; without it, exporting a
//!      model with the layer is an error naming it);
//!    * its tests: finite differences, shapes, errors, the Keras options it refuses;
//! 2. one line in the `layer_registry!` table below: variant name, module and spec type,
//!    Keras class name (`Gru(gru::Gru) = "GRU",`). The line also declares the module. The
//!    variant's snake_case name is the `"type"` tag of the layer in JSON/TOML specs and
//!    native files; the Keras class is what the Keras import dispatches on.
//!
//! A layer whose step needs a fused kernel of its own (as the LSTM's and GRU's gate
//! passes) puts it in `src/kernels/` — the only place for `unsafe` — declared there.
//!
//! The new kind is then reachable as `stacklstm::layers::<name>::<Spec>`; a `pub use` in
//! `lib.rs` (as for `Lstm`) is an optional shortcut.
//!
//! The PyTorch import (`io::torch`) is the one place that still names kinds: it maps
//! `nn.LSTM` / `nn.GRU` / `nn.Linear` tensors onto LSTM, GRU and Dense specs, and each
//! sub-layer of a bidirectional `nn.LSTM` / `nn.GRU` onto a Bidirectional spec around an
//! LSTM or GRU (its `_reverse` tensors the backward copy), converting PyTorch's gate order
//! and layouts to Keras' (Dropout takes none), and refuses any other
//! kind in an architecture with an error, so a new layer is not importable from a PyTorch
//! `state_dict` until a mapping is written there. The gate-block helpers
//! (`permute_gate_blocks`, `transpose`) below serve it and the recurrent layers' ONNX hooks.
//!
//! # Masks
//! A `Masking` or `Embedding(mask_zero)` first layer makes a step mask from the model
//! input ([`Layer::compute_mask`]): `[T, B]`, time-major like the buffers, true where a
//! step is kept. It travels up the stack as in Keras: a layer whose output keeps the time
//! axis passes it on, one that drops it (a recurrent layer without `return_sequences`)
//! ends it. Every layer below the end gets it in [`Layer::forward`] and
//! [`Backward::mask`]. A recurrent layer skips masked steps: the state is carried
//! unchanged, the output there is the carried `h`, and no gradient flows through the
//! step. When the model output carries the mask, the loss and the metrics count the kept
//! positions only. Without a mask the layers get `None` and run exactly as before.
//!
//! # Buffers
//! Between layers, activations are time-major: `[T, B, width]` for sequences, `[B, width]`
//! otherwise (`T` = timesteps, `B` = batch). What forward keeps for backward lives in a
//! per-layer cache ([`Cache`], made by [`Layer::new_cache`]) owned by the caller, so a
//! built layer is immutable during a pass and two batch halves can run at once.

pub mod keras;
pub mod onnx;
pub(crate) mod step_mask;

use std::any::Any;
use std::fmt;
use std::ops::Range;

use ndarray::{Array3, ArrayView3};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::init::Rng;
pub use keras::{FromKeras, KerasConfig};
pub use onnx::{OnnxGraph, OnnxValue};

/// The [`LayerConfig`] methods every spec writes the same way: its Keras class name, the
/// prefix of its default names, its `name` field, and (with `trainable`) its `trainable`
/// field. Used inside `impl LayerConfig for Spec`.
macro_rules! config_identity {
    ($kind:literal, $prefix:literal) => {
        fn kind(&self) -> &'static str {
            $kind
        }
        fn default_prefix(&self) -> &'static str {
            $prefix
        }
        fn explicit_name(&self) -> Option<&str> {
            self.name.as_deref()
        }
    };
    ($kind:literal, $prefix:literal, trainable) => {
        config_identity!($kind, $prefix);
        fn trainable(&self) -> bool {
            self.trainable
        }
        fn set_trainable(&mut self, on: bool) {
            self.trainable = on;
        }
    };
}

/// The [`Layer`] methods every built layer writes the same way: its `name` field, its
/// Keras class name, a boxed copy, itself as `Any`. Used inside `impl Layer for Built`.
macro_rules! layer_identity {
    ($kind:literal) => {
        fn name(&self) -> &str {
            &self.name
        }
        fn kind(&self) -> &'static str {
            $kind
        }
        fn clone_layer(&self) -> Box<dyn $crate::layers::Layer> {
            Box::new(self.clone())
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    };
}

/// The registry: one line per layer kind. Declares the layer's module (`pub mod gru;`),
/// generates [`LayerSpec`] (the serialisable enum of specs, tagged by the snake_case
/// variant name), `From<Spec> for LayerSpec`, the
/// delegation to [`LayerConfig`], and the Keras import's dispatch from class name to
/// [`FromKeras::from_keras`]. Apart from the PyTorch mapping (see the module docs), nothing
/// else in the crate lists the kinds.
macro_rules! layer_registry {
    ($($(#[$doc:meta])* $variant:ident($module:ident::$name:ident) = $class:literal,)*) => {
        $(pub mod $module;)*

        /// One layer's specification: any registered layer kind.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        #[non_exhaustive]
        pub enum LayerSpec {
            $($(#[$doc])* $variant($module::$name),)*
        }

        $(impl From<$module::$name> for LayerSpec {
            fn from(s: $module::$name) -> Self {
                LayerSpec::$variant(s)
            }
        })*

        impl LayerSpec {
            /// The Keras class names of the registered kinds, in registry order.
            pub const KERAS_CLASSES: &'static [&'static str] = &[$($class),*];

            /// What the engine supports of each registered Keras class
            /// ([`FromKeras::KERAS_SUPPORT`]), in registry order.
            pub const KERAS_SUPPORT: &'static [&'static str] =
                &[$(<$module::$name as FromKeras>::KERAS_SUPPORT),*];

            /// The spec of a Keras layer of class `class` whose `config` object `cfg`
            /// holds, problems recorded in `cfg`; `None` when no registered kind has that
            /// Keras class.
            pub fn from_keras(class: &str, cfg: &mut KerasConfig<'_>) -> Option<LayerSpec> {
                match class {
                    $($class => Some(LayerSpec::$variant(<$module::$name as FromKeras>::from_keras(cfg))),)*
                    _ => None,
                }
            }

            /// The spec as a [`LayerConfig`].
            pub fn config(&self) -> &dyn LayerConfig {
                match self {
                    $(LayerSpec::$variant(s) => s,)*
                }
            }
            /// The spec as a mutable [`LayerConfig`].
            pub fn config_mut(&mut self) -> &mut dyn LayerConfig {
                match self {
                    $(LayerSpec::$variant(s) => s,)*
                }
            }
        }
    };
}

layer_registry! {
    /// An LSTM layer.
    Lstm(lstm::Lstm) = "LSTM",
    /// A Dense layer.
    Dense(dense::Dense) = "Dense",
    /// An Embedding layer (first layer only).
    Embedding(embedding::Embedding) = "Embedding",
    /// A Dropout layer.
    Dropout(dropout::Dropout) = "Dropout",
    /// A GRU layer.
    Gru(gru::Gru) = "GRU",
    /// A Masking layer (first layer only).
    Masking(masking::Masking) = "Masking",
    /// A Bidirectional wrapper around an LSTM or GRU layer.
    Bidirectional(bidirectional::Bidirectional) = "Bidirectional",
}

/// Output of one layer, per sample: a sequence `[T, width]` or a vector `[width]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutShape {
    /// Whether the output keeps the time axis.
    pub seq: bool,
    /// Last-axis width.
    pub width: usize,
}

/// What a layer is stacked on, for shape inference and stacking errors.
#[derive(Debug, Clone, Copy)]
pub struct StackInput<'a> {
    /// 0-based position of the layer in the model.
    pub index: usize,
    /// The shape arriving at the layer (the model input for the first layer).
    pub shape: OutShape,
    /// Where the time axis was removed, when `shape.seq` is false.
    pub flat_origin: Option<&'a FlatOrigin>,
}

/// The layer whose output is the current 2-D `[batch, width]` tensor, and the layer whose
/// `return_sequences(true)` would keep the time axis: what a stacking error names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlatOrigin {
    /// The layer that produced the 2-D output.
    pub layer: String,
    /// Its Keras class name.
    pub kind: &'static str,
    /// The recurrent layer that dropped the time axis, if one did.
    pub sequence_source: Option<String>,
}

impl StackInput<'_> {
    /// Fails unless the input is a sequence, with the message that names the layer that
    /// removed the time axis and the fix (`return_sequences(true)` on it).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`].
    pub fn require_sequence(&self, name: &str, kind: &str) -> Result<()> {
        if self.shape.seq {
            return Ok(());
        }
        let (prev, prev_kind, fix) = match self.flat_origin {
            Some(o) => (
                o.layer.as_str(),
                o.kind,
                match &o.sequence_source {
                    Some(src) => format!("set return_sequences(true) on '{src}'"),
                    None => format!("a {kind} needs a sequence; move it before the layers that remove the time axis"),
                },
            ),
            None => ("", "", String::new()),
        };
        Err(Error::config(format!(
            "layer '{name}' ({kind}) needs a 3-D sequence input [batch, timesteps, features], but layer '{prev}' ({prev_kind}) outputs 2-D [batch, {}]: {fix}",
            self.shape.width
        )))
    }
}

impl StackInput<'_> {
    /// The output shape of a recurrent layer (`kind`, built as `built`) stacked on this
    /// input: it needs a sequence, cannot return its state inside a `Sequential`, and
    /// outputs `units` per step (`return_sequences`) or per sample.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the layer and the fix.
    pub fn recurrent_output(
        &self,
        name: &str,
        kind: &str,
        built: &str,
        (return_state, return_sequences, units): (bool, bool, usize),
    ) -> Result<OutShape> {
        self.require_sequence(name, kind)?;
        if return_state {
            return Err(Error::config(format!(
                "layer '{name}' ({kind}): return_state is not available inside a Sequential model, which passes one tensor between layers; call the layer directly ({built}::call) to get the final state"
            )));
        }
        Ok(OutShape {
            seq: return_sequences,
            width: units,
        })
    }
}

/// A layer's options (the spec): Keras-named configuration, shape inference, build.
pub trait LayerConfig: fmt::Debug + Send + Sync {
    /// Keras class name (`LSTM`, `Dense`, ...), shown in summaries and errors.
    fn kind(&self) -> &'static str;
    /// Prefix of default names (`lstm` gives `lstm`, `lstm_1`, ...).
    fn default_prefix(&self) -> &'static str;
    /// The name set by the user, if any.
    fn explicit_name(&self) -> Option<&str>;
    /// Whether training updates the layer's weights (Keras `trainable`).
    fn trainable(&self) -> bool {
        true
    }
    /// Sets `trainable`; a layer without weights ignores it.
    fn set_trainable(&mut self, _on: bool) {}
    /// Whether the layer carries its final state into the next batch (Keras `stateful`).
    fn stateful(&self) -> bool {
        false
    }
    /// Whether the layer has a `return_sequences` option (what a stacking error suggests
    /// turning on when it is off).
    fn has_return_sequences(&self) -> bool {
        false
    }
    /// Whether the layer reads integer token ids (one feature per timestep; a 2-D
    /// `[batch, timesteps]` input in Keras), which makes it a first layer only.
    fn takes_token_ids(&self) -> bool {
        false
    }
    /// Whether the layer makes a per-step mask from the model input (`Masking`,
    /// `Embedding(mask_zero)`), which makes it a first layer only. See the masking
    /// section of the module docs.
    fn makes_mask(&self) -> bool {
        false
    }
    /// Checks the options against the input and returns the layer's output shape.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the layer and what to change.
    fn output_shape(&self, name: &str, input: &StackInput<'_>) -> Result<OutShape>;
    /// The last-axis width of the output for input width `input_width` (no checks).
    fn output_width(&self, input_width: usize) -> usize;
    /// The weights a built layer has for input width `input_width`, Keras names and shapes
    /// in Keras order, computed without allocating them.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for bad options or an absurd size.
    fn weight_shapes(
        &self,
        name: &str,
        input_width: usize,
    ) -> Result<Vec<(&'static str, Vec<usize>)>>;
    /// Where a Keras 3 weights file lists this layer's weights, when that is not the
    /// order of [`weight_shapes`](Self::weight_shapes). The file keeps a layer's variables
    /// under object paths, and the reader lists the layer's own `vars` first, then those
    /// of nested objects in path order (`cell/vars`, ...): Keras' order for a layer whose
    /// nested objects sort in the order Keras creates them (the default, `None`).
    /// Otherwise `order`, where `order[k]` is the position in the file's list of
    /// weight `k`, for a file listing `n` variables.
    fn keras_file_order(&self, _n: usize) -> Option<Vec<usize>> {
        None
    }
    /// Builds the layer on `input` with Keras' default initialisers drawn from `rng`; with
    /// `init` false, initialisers that cost more than O(weights) may be skipped (the
    /// weights are about to be set).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] as [`output_shape`](Self::output_shape).
    fn build(
        &self,
        name: String,
        input: OutShape,
        rng: &mut Rng,
        init: bool,
    ) -> Result<Box<dyn Layer>>;
}

/// One weight tensor of a built layer.
#[derive(Debug, Clone, Copy)]
pub struct Weight<'a> {
    /// Keras name within the layer (`kernel`, `recurrent_kernel`, `bias`, ...).
    pub name: &'static str,
    /// Keras shape.
    pub shape: &'a [usize],
    /// Values, row-major.
    pub values: &'a [f32],
}

/// Carried state of a stateful layer: `tensors[k]` is `[batch, width_k]` row-major (an
/// LSTM carries `h` and `c`).
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// Rows of every tensor.
    pub batch: usize,
    /// The state tensors.
    pub tensors: Vec<Vec<f32>>,
}

impl State {
    /// Rows `rows` of every tensor.
    pub fn rows(&self, rows: Range<usize>) -> State {
        let tensors = self
            .tensors
            .iter()
            .map(|v| {
                let w = v.len() / self.batch.max(1);
                v[rows.start * w..rows.end * w].to_vec()
            })
            .collect();
        State {
            batch: rows.len(),
            tensors,
        }
    }
}

/// A layer's forward cache (and, after backward, its scratch). Any `'static` type that is
/// `Debug + Send + Sync` is one (caches are plain buffers; `Sync` makes a `Trainer`
/// shareable by reference, as a Python object holding one must be).
pub trait Cache: Any + fmt::Debug + Send + Sync {
    /// `self` as `Any`, to downcast to the layer's own type.
    fn as_any(&self) -> &dyn Any;
    /// `self` as mutable `Any`.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Any + fmt::Debug + Send + Sync> Cache for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// The layer's own cache type. A cache always comes from the same layer's
/// [`Layer::new_cache`] (the model pairs them by index), so a mismatch is a bug.
pub(crate) fn cache_ref<T: 'static>(c: &dyn Cache) -> &T {
    match c.as_any().downcast_ref::<T>() {
        Some(c) => c,
        None => unreachable!("a layer was given another layer's cache"),
    }
}

/// Mutable [`cache_ref`].
pub(crate) fn cache_mut<T: 'static>(c: &mut dyn Cache) -> &mut T {
    match c.as_any_mut().downcast_mut::<T>() {
        Some(c) => c,
        None => unreachable!("a layer was given another layer's cache"),
    }
}

/// The arguments of [`Layer::backward`].
#[derive(Debug)]
pub struct Backward<'a> {
    /// The layer's input in the forward being differentiated (time-major).
    pub x: &'a [f32],
    /// Gradient of the loss w.r.t. the layer's output (same layout as the output).
    pub dy: &'a [f32],
    /// The cache of that forward; backward may overwrite it (one backward per forward).
    pub cache: &'a mut dyn Cache,
    /// The step mask the forward was given (see [`Layer::forward`]).
    pub mask: Option<&'a [bool]>,
    /// Where to write the gradient w.r.t. `x`, when the layer below needs it.
    pub dx: Option<&'a mut Vec<f32>>,
    /// Weight gradients to **accumulate** into, one buffer per weight in
    /// [`Layer::weights`] order; `None` only for a layer whose
    /// [`defers_weight_grads`](Layer::defers_weight_grads) is true, whose weight gradients
    /// are then formed by [`weight_grads_of_parts`](Layer::weight_grads_of_parts).
    pub grads: Option<&'a mut [Vec<f32>]>,
}

/// One batch part's view of a layer after forward and backward, for
/// [`Layer::weight_grads_of_parts`].
#[derive(Debug, Clone, Copy)]
pub struct Part<'a> {
    /// The layer's input.
    pub x: &'a [f32],
    /// The gradient that reached the layer's output.
    pub dy: &'a [f32],
    /// The layer's cache after its backward (or its forward, for a first layer whose
    /// backward was skipped).
    pub cache: &'a dyn Cache,
}

/// A built layer: weights, forward, backward, masks and state.
///
/// Buffers are time-major (see the module docs); `t` and `b` are the timesteps and batch
/// rows of the pass.
pub trait Layer: fmt::Debug + Send + Sync + Any {
    /// The layer's name.
    fn name(&self) -> &str;
    /// Keras class name.
    fn kind(&self) -> &'static str;
    /// A boxed copy.
    fn clone_layer(&self) -> Box<dyn Layer>;
    /// `self` as `Any`, to reach the concrete type (e.g. `LstmLayer::call`).
    fn as_any(&self) -> &dyn Any;
    /// Weights in Keras order with their names and shapes.
    fn weights(&self) -> Vec<Weight<'_>>;
    /// The same weights, mutable, in the same order (fixed sizes: slices, not vectors).
    fn weights_mut(&mut self) -> Vec<&mut [f32]>;
    /// A new, empty cache for this layer.
    fn new_cache(&self) -> Box<dyn Cache>;
    /// Checks a model input before the first layer runs on it (an Embedding checks token
    /// ids). Only called on the first layer.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the bad value.
    fn check_input(&self, _x: ArrayView3<'_, f32>) -> Result<()> {
        Ok(())
    }
    /// The step mask of a model input `x` `[batch, timesteps, features]`, time-major
    /// `[T, B]` into `mask` (true keeps the step), for a layer whose spec
    /// [makes a mask](LayerConfig::makes_mask). Only called on the first layer.
    fn compute_mask(&self, _x: ArrayView3<'_, f32>, _mask: &mut Vec<bool>) {}
    /// Forward over `x`, starting from `state` for a stateful layer (zero when `None`);
    /// keeps the output and what backward needs in `cache`. `mask` (`[T, B]` time-major,
    /// true keeps the step) is given when the input carries a mask, and to the layer that
    /// makes it; a recurrent layer skips the masked steps (see the module docs).
    fn forward(
        &self,
        x: &[f32],
        t: usize,
        b: usize,
        state: Option<&State>,
        mask: Option<&[bool]>,
        cache: &mut dyn Cache,
    );
    /// The output of the last forward, from the cache.
    fn output<'c>(&self, cache: &'c dyn Cache) -> &'c [f32];
    /// Backward of the last forward: accumulates the weight gradients, writes `dx` when
    /// asked.
    fn backward(&self, pass: Backward<'_>);
    /// Whether, when a batch runs as several parts, the weight gradients should be formed
    /// once after the parts ([`weight_grads_of_parts`](Self::weight_grads_of_parts))
    /// rather than per part, so no second copy of a large gradient is kept. `first` and
    /// `last` give the layer's position; a first layer that defers is not run backward
    /// at all in the parts.
    fn defers_weight_grads(&self, _first: bool, _last: bool) -> bool {
        false
    }
    /// The weight gradients of several batch parts, accumulated in order (see
    /// [`defers_weight_grads`](Self::defers_weight_grads)).
    fn weight_grads_of_parts(&self, _parts: &[Part<'_>], _grads: &mut [Vec<f32>]) {}
    /// Draws the training dropout masks of a `[t, b]` batch into `cache`, in a fixed order
    /// from `rng`.
    fn draw_masks(&self, _rng: &mut Rng, _t: usize, _b: usize, _cache: &mut dyn Cache) {}
    /// Removes the masks (inference).
    fn clear_masks(&self, _cache: &mut dyn Cache) {}
    /// Copies batch rows `rows` of the masks drawn in `full` for a `[t, b]` batch into
    /// `part`.
    fn copy_mask_rows(
        &self,
        _full: &dyn Cache,
        _rows: Range<usize>,
        _t: usize,
        _b: usize,
        _part: &mut dyn Cache,
    ) {
    }
    /// Whether the layer carries its final state into the next batch.
    fn stateful(&self) -> bool {
        false
    }
    /// The widths of the state tensors the layer carries (`[H, H]` for an LSTM's `h`,
    /// `c`); empty for a layer without state.
    fn state_widths(&self) -> Vec<usize> {
        Vec::new()
    }
    /// The final state of the last forward, `[b, width_k]` per tensor (see
    /// [`state_widths`](Self::state_widths)).
    fn final_state<'c>(&self, _cache: &'c dyn Cache) -> Vec<&'c [f32]> {
        Vec::new()
    }
    /// The ONNX export hook: adds the layer's initializers and nodes to `g`, reading
    /// `input` (the output of the layers below, or the model input), and returns the
    /// layer's output value. The default refuses the layer.
    ///
    /// # Errors
    /// [`Error::UnsupportedFormat`] naming the layer and its kind when ONNX cannot express
    /// it (or one of its options), and errors from `g` (size limits).
    fn export_onnx(&self, _g: &mut dyn OnnxGraph, _input: OnnxValue) -> Result<OnnxValue> {
        Err(Error::UnsupportedFormat {
            found: format!("ONNX export of layer '{}' ({})", self.name(), self.kind()),
            supported: format!(
                "models whose layers all have an ONNX export; {} has none",
                self.kind()
            ),
        })
    }
}

impl Clone for Box<dyn Layer> {
    fn clone(&self) -> Self {
        self.clone_layer()
    }
}

/// `true`: for `skip_serializing_if` on options that default to true.
#[allow(clippy::trivially_copy_pass_by_ref)] // serde passes a reference.
pub(crate) fn is_true(v: &bool) -> bool {
    *v
}

/// The most weights one layer may have: 2^31 (8 GiB of f32). Anything larger is almost
/// certainly a typo (`units = 10^12`) and is refused before any allocation.
pub const MAX_LAYER_PARAMS: u128 = 1 << 31;

/// Refuses a layer whose weight count (the product of `dims`) exceeds [`MAX_LAYER_PARAMS`].
pub(crate) fn check_size(name: &str, kind: &str, dims: &[usize]) -> Result<()> {
    let n = dims
        .iter()
        .fold(1u128, |acc, &d| acc.saturating_mul(d as u128));
    if n > MAX_LAYER_PARAMS {
        return Err(Error::config(format!(
            "layer '{name}' ({kind}) is too large: about {n} weights, the limit is {MAX_LAYER_PARAMS}; check its units and input width"
        )));
    }
    Ok(())
}

/// Fails on the first non-finite value, naming its `[batch, timestep, feature]` index.
///
/// Non-finite inputs are rejected rather than propagated: one NaN would silently turn
/// every later output (and, in training, every weight) into NaN.
pub(crate) fn check_finite(x: ArrayView3<'_, f32>, what: &str) -> Result<()> {
    if x.iter().all(|v| v.is_finite()) {
        return Ok(());
    }
    for ((b, t, f), v) in x.indexed_iter() {
        if !v.is_finite() {
            return Err(Error::input(format!(
                "{what}: input value {v} at [{b}, {t}, {f}] (batch, timestep, feature); NaN and infinite inputs are rejected"
            )));
        }
    }
    Ok(())
}

/// `[B, T, D]` (batch-major) into a time-major `[T, B, D]` buffer (reusing `out`).
pub(crate) fn to_time_major_into(x: ArrayView3<'_, f32>, out: &mut Vec<f32>) {
    let (b, t, _) = x.dim();
    out.clear();
    out.reserve(x.len());
    for s in 0..t {
        for i in 0..b {
            out.extend(x.slice(ndarray::s![i, s, ..]).iter().copied());
        }
    }
}

/// `[B, T, D]` (batch-major) to a time-major `[T, B, D]` buffer.
pub(crate) fn to_time_major(x: ArrayView3<'_, f32>) -> Vec<f32> {
    let mut out = Vec::new();
    to_time_major_into(x, &mut out);
    out
}

/// A time-major `[T, B, D]` buffer to a batch-major `[B, T, D]` array.
pub(crate) fn to_batch_major(v: &[f32], t: usize, b: usize, d: usize) -> Array3<f32> {
    Array3::from_shape_fn((b, t, d), |(i, s, k)| v[(s * b + i) * d + k])
}

/// Rows `rows` of a time-major `[t, b, w]` buffer (`[b, w]` when `t` is 1), appended to
/// `out` step by step.
pub(crate) fn copy_time_major_rows(
    src: &[f32],
    rows: Range<usize>,
    t: usize,
    b: usize,
    w: usize,
    out: &mut Vec<f32>,
) {
    for step in 0..t {
        let base = step * b;
        out.extend_from_slice(&src[(base + rows.start) * w..(base + rows.end) * w]);
    }
}

/// Transposes a row-major `[r, c]` matrix into `[c, r]`.
pub(crate) fn transpose(m: &[f32], r: usize, c: usize) -> Vec<f32> {
    debug_assert_eq!(m.len(), r * c);
    let mut out = vec![0.0; m.len()];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = m[i * c + j];
        }
    }
    out
}

/// Reorders the gate blocks of a row-major `[order.len() * h, inner]` matrix (a vector when
/// `inner` is 1) along its first axis: output block `k` is input block `order[k]`.
///
/// Recurrent layers keep their gates as `h`-wide blocks in a library's own order (Keras
/// i, f, c, o and z, r, h; PyTorch i, f, g, o and r, z, n; ONNX i, o, f, c and z, r, h);
/// converting between them is this plus [`transpose`].
pub(crate) fn permute_gate_blocks(m: &[f32], h: usize, inner: usize, order: &[usize]) -> Vec<f32> {
    let block = h * inner;
    debug_assert_eq!(m.len(), order.len() * block);
    let mut out = Vec::with_capacity(m.len());
    for &src in order {
        out.extend_from_slice(&m[src * block..(src + 1) * block]);
    }
    out
}

#[cfg(test)]
pub(crate) mod test_util {
    use crate::init::Rng;

    /// Uniform values in `[-scale, scale]`.
    pub fn rand_vec(rng: &mut Rng, n: usize, scale: f64) -> Vec<f32> {
        (0..n).map(|_| rng.uniform(-scale, scale) as f32).collect()
    }

    /// Central finite differences against an analytic gradient.
    ///
    /// The layers compute in f32, so the difference quotient carries rounding noise of
    /// about `1e-7 |L| / eps`; with `eps = 5e-3` that is ~1e-5, and the truncation error
    /// `eps^2 |L'''| / 6` is ~1e-5 for these smooth, O(1) losses. The tolerance
    /// `1e-3 + 1e-2 |fd|` sits two orders above both and two below the size of a real
    /// mistake (a missing term or a wrong derivative changes a gradient by O(0.1)).
    pub fn fd_check(
        what: &str,
        analytic: &[f32],
        n: usize,
        mut loss: impl FnMut(usize, f32) -> f64,
    ) {
        assert_eq!(analytic.len(), n, "{what}: gradient has the wrong length");
        let eps = 5e-3f32;
        for (i, &a) in analytic.iter().enumerate() {
            let fd = (loss(i, eps) - loss(i, -eps)) / (2.0 * f64::from(eps));
            let a = f64::from(a);
            assert!(
                (a - fd).abs() <= 1e-3 + 1e-2 * fd.abs(),
                "{what}[{i}]: analytic {a} vs finite difference {fd}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_and_gate_block_permutation() {
        assert_eq!(
            transpose(&[1., 2., 3., 4., 5., 6.], 2, 3),
            vec![1., 4., 2., 5., 3., 6.]
        );
        assert_eq!(transpose(&[], 0, 3), Vec::<f32>::new());
        // Three blocks of h = 2 rows, 1 column each: [a a | b b | c c] -> [b b | a a | c c].
        let v = [1., 2., 3., 4., 5., 6.];
        assert_eq!(
            permute_gate_blocks(&v, 2, 1, &[1, 0, 2]),
            vec![3., 4., 1., 2., 5., 6.]
        );
        // Blocks of 1 row x 2 columns: whole rows move.
        assert_eq!(
            permute_gate_blocks(&v, 1, 2, &[2, 0, 1]),
            vec![5., 6., 1., 2., 3., 4.]
        );
        // A swap of two blocks is its own inverse.
        let once = permute_gate_blocks(&v, 2, 1, &[1, 0, 2]);
        assert_eq!(permute_gate_blocks(&once, 2, 1, &[1, 0, 2]), v.to_vec());
    }

    #[test]
    fn every_registered_keras_class_reads_into_its_own_kind() {
        let cfg = serde_json::Map::new();
        assert_eq!(
            LayerSpec::KERAS_CLASSES.len(),
            LayerSpec::KERAS_SUPPORT.len()
        );
        for (class, support) in LayerSpec::KERAS_CLASSES
            .iter()
            .zip(LayerSpec::KERAS_SUPPORT)
        {
            let mut k = KerasConfig::new(class, &cfg);
            let spec = LayerSpec::from_keras(class, &mut k).expect(class);
            assert_eq!(spec.config().kind(), *class);
            assert!(support.starts_with(class), "{support}");
        }
        let mut k = KerasConfig::new("ConvLSTM1D", &cfg);
        assert!(LayerSpec::from_keras("ConvLSTM1D", &mut k).is_none());
    }
}
