//! The GRU layer: spec, built layer, cache, forward and hand-derived backward.
//!
//! Legend: `B` = batch, `T` = timesteps, `D` = input width, `H` = units. Internal buffers
//! are time-major (`[T, B, ..]`), so one timestep is one contiguous `[B, ..]` block.
//!
//! Gate order z, r, h (update gate, reset gate, candidate) in every `3H`-wide weight, as in
//! Keras; `σ` = recurrent activation, `φ` = activation, `h_p` = h[t-1].
//!
//! Forward with `reset_after` (Keras' default), for t = 0..T:
//! ```text
//! A      = X · kernel                           one GEMM for all timesteps: [T·B, 3H]
//! P[t]   = h_p · recurrent_kernel                one GEMM per step:          [B, 3H]
//! z = σ(A_z + bx_z + P_z + bh_z)   r = σ(A_r + bx_r + P_r + bh_r)
//! ĥ = φ(A_h + bx_h + r ⊙ (P_h + bh_h))          fused pass (bias [2, 3H]: rows bx, bh)
//! h[t] = z ⊙ h_p + (1 − z) ⊙ ĥ
//! ```
//! Forward with `reset_after` false (bias `[3H]`): the candidate's product needs `r`, so a
//! step is two products of a third of the work each, around two passes:
//! ```text
//! A_zr[t] += h_p · recurrent_kernel[:, z r]      GEMM [B, 2H]
//! z = σ(A_z + b_z)   r = σ(A_r + b_r)   q = r ⊙ h_p          gates pass
//! A_h[t]  += q · recurrent_kernel[:, h]          GEMM [B, H]
//! ĥ = φ(A_h + b_h)   h[t] = z ⊙ h_p + (1 − z) ⊙ ĥ           candidate pass
//! ```
//! Backward runs the passes in reverse (see `kernels::gru`), one or two `dz · Rᵀ` products
//! per step, then the weight gradients as one GEMM each over all timesteps. The derivation
//! is in `docs/gru-backward.md`. No heap allocation happens inside the time loops: every
//! buffer is sized once per call and reused across calls.
//!
//! Dropout follows Keras 3: one mask per sequence (the same for every timestep). With
//! `dropout` alone, one `[B, D]` mask multiplies the input of all three gates. With
//! `recurrent_dropout` (Keras' `implementation=1`), every gate draws its own masks: three
//! `[B, D]` input masks (when `dropout` is set) and three `[B, H]` masks on the state each
//! gate's product sees; the mix `z ⊙ h_p` uses the unmasked state.

use std::ops::Range;

use ndarray::{Array2, ArrayD, ArrayView2, ArrayView3, IxDyn};
use serde::{Deserialize, Serialize};

use crate::error::{shape_str, Error, Result};
use crate::init::{glorot_uniform, orthogonal, Rng};
use crate::kernels::activation::Activation;
use crate::kernels::gru::{
    self, AfterBackward, AfterForward, BeforeCandidate, BeforeCandidateBackward, BeforeGates,
    BeforeGatesBackward, GATE_H, GATE_R, GATE_Z,
};
use crate::kernels::matmul::{sgemm, Trans};
use crate::layers::dropout::draw_mask;
use crate::layers::step_mask;
use crate::layers::keras::{FromKeras, KerasConfig, REGULARIZERS};
use crate::layers::onnx::{
    export_one_direction, recurrent_activation, reorder_transpose, OnnxAttr, OnnxGraph,
    OnnxValue, RecurrentDirection, RecurrentExport,
};
use crate::layers::{
    cache_mut, cache_ref, check_size, copy_time_major_rows, to_batch_major, to_time_major,
    Backward, Cache, Layer, LayerConfig, OutShape, StackInput, State, Weight,
};

/// Specification of a GRU layer, with Keras' options and defaults.
///
/// # Shapes
/// Input `[batch, timesteps, features]`; output `[batch, units]`, or
/// `[batch, timesteps, units]` with `return_sequences(true)`.
///
/// # Example
/// ```
/// use stacklstm::{Dense, Gru, Sequential};
/// let model = Sequential::new()
///     .input_shape(6, 3)
///     .add(Gru::new(5).return_sequences(true))
///     .add(Gru::new(4).reset_after(false))
///     .add(Dense::new(1))
///     .build()?;
/// // Keras' counts: 3·5·(3 + 5) + 2·15, then 3·4·(5 + 4) + 12, then 4 + 1.
/// assert_eq!(model.param_count(), 150 + 120 + 5);
/// # Ok::<(), stacklstm::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Gru {
    /// Number of hidden units `H`.
    pub units: usize,
    /// Output the whole sequence of hidden states, not only the last one.
    pub return_sequences: bool,
    /// Also return the final state `h` (only when calling the layer directly, see
    /// [`GruLayer::call`]; a `Sequential` passes one tensor between layers).
    pub return_state: bool,
    /// Add biases to the gate pre-activations.
    pub use_bias: bool,
    /// `φ`, applied to the candidate.
    pub activation: Activation,
    /// `σ`, applied to the update and reset gates.
    pub recurrent_activation: Activation,
    /// Apply the reset gate after the recurrent product (Keras 3's default, cuDNN's and
    /// PyTorch's form, with separate input and recurrent biases `[2, 3H]`); false applies
    /// it to the state before the product (one bias `[3H]`).
    pub reset_after: bool,
    /// Fraction of the input units to drop during training (masks per sequence).
    pub dropout: f32,
    /// Fraction of the recurrent units to drop during training (masks per sequence).
    pub recurrent_dropout: f32,
    /// Carry the final `h` of each batch into the next one (truncated BPTT over a long
    /// stream, Keras `stateful=True`); reset with `Model::reset_states`.
    pub stateful: bool,
    /// Layer name; Keras-style defaults (`gru`, `gru_1`, ...) when `None`.
    pub name: Option<String>,
    /// Whether training updates the weights (Keras `trainable`, default true).
    #[serde(skip_serializing_if = "crate::layers::is_true")]
    pub trainable: bool,
}

impl Default for Gru {
    fn default() -> Self {
        Gru {
            units: 1,
            return_sequences: false,
            return_state: false,
            use_bias: true,
            activation: Activation::Tanh,
            recurrent_activation: Activation::Sigmoid,
            reset_after: true,
            dropout: 0.0,
            recurrent_dropout: 0.0,
            stateful: false,
            name: None,
            trainable: true,
        }
    }
}

impl Gru {
    /// A GRU with `units` hidden units and Keras' defaults for everything else.
    #[must_use]
    pub fn new(units: usize) -> Self {
        Gru {
            units,
            ..Gru::default()
        }
    }
    /// Sets `return_sequences`.
    #[must_use]
    pub fn return_sequences(mut self, on: bool) -> Self {
        self.return_sequences = on;
        self
    }
    /// Sets `return_state`.
    #[must_use]
    pub fn return_state(mut self, on: bool) -> Self {
        self.return_state = on;
        self
    }
    /// Sets `use_bias`.
    #[must_use]
    pub fn use_bias(mut self, on: bool) -> Self {
        self.use_bias = on;
        self
    }
    /// Sets `activation` (`φ`).
    #[must_use]
    pub fn activation(mut self, a: Activation) -> Self {
        self.activation = a;
        self
    }
    /// Sets `recurrent_activation` (`σ`).
    #[must_use]
    pub fn recurrent_activation(mut self, a: Activation) -> Self {
        self.recurrent_activation = a;
        self
    }
    /// Sets `reset_after`.
    #[must_use]
    pub fn reset_after(mut self, on: bool) -> Self {
        self.reset_after = on;
        self
    }
    /// Sets `dropout` (input dropout rate in `[0, 1)`).
    #[must_use]
    pub fn dropout(mut self, rate: f32) -> Self {
        self.dropout = rate;
        self
    }
    /// Sets `recurrent_dropout` (rate in `[0, 1)`).
    #[must_use]
    pub fn recurrent_dropout(mut self, rate: f32) -> Self {
        self.recurrent_dropout = rate;
        self
    }
    /// Sets `stateful`.
    #[must_use]
    pub fn stateful(mut self, on: bool) -> Self {
        self.stateful = on;
        self
    }
    /// Sets the layer name.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Sets `trainable` (false: training leaves the weights as they are).
    #[must_use]
    pub fn trainable(mut self, on: bool) -> Self {
        self.trainable = on;
        self
    }

    /// The bias shape: `[2, 3H]` (input and recurrent rows) with `reset_after`, else `[3H]`.
    fn bias_shape(&self) -> Vec<usize> {
        if self.reset_after {
            vec![2, 3 * self.units]
        } else {
            vec![3 * self.units]
        }
    }

    /// Number of weights for input width `d`: `3H(D + H)`, plus `6H` of bias with
    /// `reset_after` or `3H` without (Keras' count).
    pub fn param_count(&self, d: usize) -> usize {
        let g = 3 * self.units;
        let bias = if !self.use_bias {
            0
        } else if self.reset_after {
            2 * g
        } else {
            g
        };
        g * (d + self.units) + bias
    }

    /// Checks the options, and that the layer's size is sane, before anything is allocated.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the layer and the bad option.
    pub fn validate(&self, name: &str, input_width: usize) -> Result<()> {
        if self.units == 0 {
            return Err(Error::config(format!(
                "layer '{name}' (GRU): units must be at least 1, got 0"
            )));
        }
        for (what, a) in [
            ("activation", self.activation),
            ("recurrent_activation", self.recurrent_activation),
        ] {
            if !a.is_elementwise() {
                return Err(Error::config(format!(
                    "layer '{name}' (GRU): {what} '{a}' is not elementwise; use tanh, sigmoid, hard_sigmoid, relu or linear"
                )));
            }
        }
        for (what, r) in [
            ("dropout", self.dropout),
            ("recurrent_dropout", self.recurrent_dropout),
        ] {
            if !(0.0..1.0).contains(&r) {
                return Err(Error::config(format!(
                    "layer '{name}' (GRU): {what} must be in [0, 1), got {r}"
                )));
            }
        }
        check_size(
            name,
            "GRU",
            &[self.units, 3, input_width.max(self.units) + 2],
        )
    }
}

/// A built GRU layer: the spec plus weights (Keras layout).
#[derive(Debug, Clone)]
pub struct GruLayer {
    spec: Gru,
    name: String,
    /// Input width `D`.
    input_width: usize,
    /// `[D, 3H]`, gate blocks z, r, h.
    kernel: Vec<f32>,
    /// `[H, 3H]`.
    recurrent_kernel: Vec<f32>,
    /// `[2, 3H]` (input row, then recurrent row) with `reset_after`, else `[3H]`; empty
    /// when `use_bias` is false.
    bias: Vec<f32>,
    /// Keras shapes of `kernel`, `recurrent_kernel`, `bias`.
    shapes: ([usize; 2], [usize; 2], Vec<usize>),
}

/// The activations a GRU runs (elementwise; the Keras names).
const ACTIVATIONS: &[Activation] = &[
    Activation::Tanh,
    Activation::Sigmoid,
    Activation::HardSigmoid,
    Activation::Relu,
    Activation::Linear,
];

impl FromKeras for Gru {
    const KERAS_SUPPORT: &'static str = "GRU (reset_after true or false; activations tanh, \
        sigmoid, hard_sigmoid, relu, linear; no go_backwards, time_major, return_state, \
        regularizers, constraints)";

    fn from_keras(cfg: &mut KerasConfig<'_>) -> Self {
        cfg.dtype();
        cfg.forbid_true("go_backwards");
        cfg.forbid_true("time_major");
        // A Sequential passes one tensor between layers: the final state has nowhere to go.
        cfg.forbid_true("return_state");
        cfg.forbid_set(REGULARIZERS);
        cfg.forbid_set(&["recurrent_regularizer", "recurrent_constraint"]);
        Gru::new(cfg.dim("units"))
            .name(cfg.name())
            .return_sequences(cfg.bool("return_sequences", false))
            .activation(cfg.activation("activation", Activation::Tanh, ACTIVATIONS))
            .recurrent_activation(cfg.activation(
                "recurrent_activation",
                Activation::Sigmoid,
                ACTIVATIONS,
            ))
            .use_bias(cfg.bool("use_bias", true))
            .reset_after(cfg.bool("reset_after", true))
            .dropout(cfg.rate("dropout"))
            .recurrent_dropout(cfg.rate("recurrent_dropout"))
            .stateful(cfg.bool("stateful", false))
            .trainable(cfg.bool("trainable", true))
    }
}

impl LayerConfig for Gru {
    config_identity!("GRU", "gru", trainable);
    fn stateful(&self) -> bool {
        self.stateful
    }
    fn has_return_sequences(&self) -> bool {
        true
    }
    fn output_width(&self, _: usize) -> usize {
        self.units
    }
    fn output_shape(&self, name: &str, input: &StackInput<'_>) -> Result<OutShape> {
        let out = input.recurrent_output(
            name,
            "GRU",
            "GruLayer",
            (self.return_state, self.return_sequences, self.units),
        )?;
        self.validate(name, input.shape.width)?;
        Ok(out)
    }
    fn weight_shapes(
        &self,
        name: &str,
        input_width: usize,
    ) -> Result<Vec<(&'static str, Vec<usize>)>> {
        self.validate(name, input_width)?;
        let g = 3 * self.units;
        let mut w = vec![
            ("kernel", vec![input_width, g]),
            ("recurrent_kernel", vec![self.units, g]),
        ];
        if self.use_bias {
            w.push(("bias", self.bias_shape()));
        }
        Ok(w)
    }
    fn build(
        &self,
        name: String,
        input: OutShape,
        rng: &mut Rng,
        init: bool,
    ) -> Result<Box<dyn Layer>> {
        Ok(Box::new(GruLayer::build_with(
            self.clone(),
            name,
            input.width,
            rng,
            init,
        )?))
    }
}

/// What forward keeps for backward, and backward's scratch. Reused across calls.
#[derive(Debug, Default, Clone)]
pub struct GruCache {
    /// Timesteps and batch of the last forward.
    pub(crate) t: usize,
    pub(crate) b: usize,
    /// `[T, B, 3H]`: post-activation z, r, ĥ after forward; backward overwrites them with
    /// the gradient w.r.t. the input-side pre-activations (`x·kernel + bias`), step by step.
    gates: Vec<f32>,
    /// `reset_after` only, `[T, B, 3H]`: `h_p·recurrent_kernel`, its candidate block with
    /// the recurrent bias added (`hr`, what `r` multiplies); backward overwrites it with the
    /// gradient w.r.t. the recurrent-side pre-activations. Empty otherwise.
    rec: Vec<f32>,
    /// `reset_after` false only, `[T, B, H]`: `q = r ⊙ h_p` (the candidate product's left
    /// operand, masked state under recurrent dropout). Empty otherwise.
    q: Vec<f32>,
    /// `[T+1, B, H]`: h[-1] = h0, then h[0..T].
    hs: Vec<f32>,
    /// `[B, H]`: gradient reaching h of the current step; after backward, d h0.
    pub(crate) dh: Vec<f32>,
    /// `[B, H]`: backward scratch: `dq` (`reset_after` false).
    dq: Vec<f32>,
    /// `[B, H]`: backward scratch: one gate's `dz · Rᵀ` under recurrent dropout.
    dh_part: Vec<f32>,
    /// `[T, B, D]`: backward scratch: one gate's `dX` under per-gate input masks.
    dx_part: Vec<f32>,
    /// `[G, B, D]`: input dropout masks (0 or 1/(1-rate)), the same for every timestep:
    /// `G` = 1 (shared by the gates) or 3 (one per gate z, r, h); empty when off.
    pub(crate) in_mask: Vec<f32>,
    /// `[3, B, H]`: recurrent dropout masks, one per gate z, r, h; empty when off.
    pub(crate) rec_mask: Vec<f32>,
    /// `[G, T, B, D]`: the masked input of each input mask (only with input masks).
    xm: Vec<f32>,
    /// `[3, T, B, H]`: the masked h[t-1] each gate sees, every step (only with recurrent
    /// masks).
    hm: Vec<f32>,
    /// `[T, B]`: the step mask of the last forward (true keeps the step); empty without.
    pub(crate) steps: Vec<bool>,
    /// Backward scratch: the masked rows' `dh` of the current step.
    held: Vec<f32>,
}

impl GruCache {
    /// Final hidden state `[B, H]` of the last forward.
    pub(crate) fn h_last(&self, units: usize) -> &[f32] {
        let n = self.b * units;
        &self.hs[self.t * n..(self.t + 1) * n]
    }
    /// `[T, B, H]`: `h` of every step of the last forward (the output with
    /// `return_sequences`).
    pub(crate) fn outputs(&self) -> &[f32] {
        let n = self.hs.len() / (self.t + 1);
        &self.hs[n..]
    }
}

/// Output of [`GruLayer::call`].
#[derive(Debug, Clone)]
pub struct GruOutput {
    /// `[B, H]`, or `[B, T, H]` with `return_sequences`.
    pub output: ArrayD<f32>,
    /// Final hidden state `[B, H]`.
    pub h: Array2<f32>,
}

fn resize(v: &mut Vec<f32>, n: usize) {
    v.clear();
    v.resize(n, 0.0);
}

/// Block `g` (`[n]`, one step) of a `[G, T, n]` buffer.
fn slab(v: &[f32], g: usize, t: usize, step: usize, n: usize) -> &[f32] {
    &v[(g * t + step) * n..(g * t + step + 1) * n]
}

/// How a product over the `3H` gate columns splits: one product over all of them, or one
/// per gate (width `H`) when each gate's operand has its own dropout mask.
fn column_groups(masks: usize, h: usize) -> (usize, usize) {
    if masks == 3 {
        (3, h)
    } else {
        (1, 3 * h)
    }
}

/// `dst[k] += src[k] * mask[k]`.
fn add_masked(dst: &mut [f32], src: &[f32], mask: &[f32]) {
    for ((d, s), m) in dst.iter_mut().zip(src).zip(mask) {
        *d += s * m;
    }
}

impl GruLayer {
    /// Builds the layer with Keras' default initialisers: `glorot_uniform` kernel,
    /// `orthogonal` recurrent kernel, zero bias.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] from [`Gru::validate`].
    pub fn build(spec: Gru, name: String, input_width: usize, rng: &mut Rng) -> Result<Self> {
        Self::build_with(spec, name, input_width, rng, true)
    }

    /// [`build`](Self::build); with `init` false the recurrent kernel is left at zero, for a
    /// layer whose weights are about to be set (the orthogonal initialiser costs O(H^3)).
    pub(crate) fn build_with(
        spec: Gru,
        name: String,
        input_width: usize,
        rng: &mut Rng,
        init: bool,
    ) -> Result<Self> {
        spec.validate(&name, input_width)?;
        let h = spec.units;
        let kernel = glorot_uniform(rng, input_width, 3 * h);
        let recurrent_kernel = if init {
            orthogonal(rng, h, 3 * h)
        } else {
            vec![0.0; h * 3 * h]
        };
        let bias_shape = spec.bias_shape();
        let bias = if spec.use_bias {
            vec![0.0; bias_shape.iter().product()]
        } else {
            Vec::new()
        };
        let shapes = ([input_width, 3 * h], [h, 3 * h], bias_shape);
        Ok(GruLayer {
            spec,
            name,
            input_width,
            kernel,
            recurrent_kernel,
            bias,
            shapes,
        })
    }

    /// Units `H`.
    pub fn units(&self) -> usize {
        self.spec.units
    }

    /// The options it was built from.
    pub fn spec(&self) -> &Gru {
        &self.spec
    }

    /// Input width `D`.
    pub fn input_width(&self) -> usize {
        self.input_width
    }

    /// The input-side bias `[3H]` (empty without bias).
    fn bias_x(&self) -> &[f32] {
        if self.bias.is_empty() {
            &[]
        } else {
            &self.bias[..3 * self.spec.units]
        }
    }

    /// The recurrent-side bias `[3H]` (`reset_after` with a bias only, else empty).
    fn bias_h(&self) -> &[f32] {
        if self.spec.reset_after && !self.bias.is_empty() {
            &self.bias[3 * self.spec.units..]
        } else {
            &[]
        }
    }

    /// Forward over a time-major input `x` `[T, B, D]` from the initial state `h0` `[B, H]`
    /// (zero when `None`). Writes the output (`[T, B, H]` or `[B, H]`) to `out` and keeps
    /// what backward needs in `cache`.
    fn run(
        &self,
        x: &[f32],
        t: usize,
        b: usize,
        h0: Option<&[f32]>,
        cache: &mut GruCache,
        out: &mut Vec<f32>,
    ) {
        self.forward_cached(x, t, b, h0, cache);
        out.clear();
        if self.spec.return_sequences {
            out.extend_from_slice(cache.outputs());
        } else {
            out.extend_from_slice(cache.h_last(self.spec.units));
        }
    }

    /// `gates = X · kernel` for every timestep: one GEMM, or one per gate under per-gate
    /// input masks (each gate's product reads its own masked copy of `X`). The biases are
    /// added in the gate passes.
    fn project_input(&self, x: &[f32], t: usize, b: usize, cache: &mut GruCache) {
        let (d, h) = (self.input_width, self.spec.units);
        let (h3, bd) = (3 * h, b * d);
        let masks = cache.in_mask.len() / bd.max(1);
        let x_used: &[f32] = if masks == 0 {
            x
        } else {
            // One [T, B, D] copy of the input per mask, the mask the same at every step.
            cache.xm.clear();
            for m in cache.in_mask.chunks_exact(bd) {
                for xt in x.chunks_exact(bd) {
                    cache.xm.extend(xt.iter().zip(m).map(|(v, m)| v * m));
                }
            }
            &cache.xm
        };
        let (groups, w) = column_groups(masks, h);
        for g in 0..groups {
            sgemm(
                Trans::No,
                Trans::No,
                t * b,
                w,
                d,
                1.0,
                &x_used[g * t * bd..(g + 1) * t * bd],
                d,
                &self.kernel[g * w..],
                h3,
                0.0,
                &mut cache.gates[g * w..],
                h3,
            );
        }
    }

    /// [`run`](Self::run) leaving the output in the cache only (see
    /// [`GruCache::outputs`] and [`GruCache::h_last`]): a stack reads the next layer's
    /// input from there instead of a copy.
    fn forward_cached(
        &self,
        x: &[f32],
        t: usize,
        b: usize,
        h0: Option<&[f32]>,
        cache: &mut GruCache,
    ) {
        let (d, h) = (self.input_width, self.spec.units);
        let (h3, bh) = (3 * h, b * h);
        debug_assert_eq!(x.len(), t * b * d);
        cache.t = t;
        cache.b = b;
        // Every element below is written before it is read, so the buffers are only sized.
        cache.gates.resize(t * b * h3, 0.0);
        cache.hs.resize((t + 1) * bh, 0.0);
        match h0 {
            Some(h0) => cache.hs[..bh].copy_from_slice(h0),
            None => cache.hs[..bh].fill(0.0),
        }
        if self.spec.reset_after {
            cache.rec.resize(t * b * h3, 0.0);
        } else {
            cache.q.resize(t * bh, 0.0);
        }
        let rec_drop = !cache.rec_mask.is_empty();
        if rec_drop {
            cache.hm.resize(3 * t * bh, 0.0);
        }
        self.project_input(x, t, b, cache);
        let (ra, act) = (self.spec.recurrent_activation, self.spec.activation);
        let rk = &self.recurrent_kernel;
        let GruCache {
            gates,
            rec,
            q,
            hs,
            rec_mask,
            hm,
            steps,
            ..
        } = cache;
        for step in 0..t {
            let (past, future) = hs.split_at_mut((step + 1) * bh);
            let h_prev = &past[step * bh..];
            let h_new = &mut future[..bh];
            if rec_drop {
                for (g, m) in rec_mask.chunks_exact(bh).enumerate() {
                    let at = (g * t + step) * bh;
                    for ((o, v), m) in hm[at..at + bh].iter_mut().zip(h_prev).zip(m) {
                        *o = v * m;
                    }
                }
            }
            // The state gate g's product sees: h[t-1], or its masked copy.
            let hm: &[f32] = hm;
            let seen = |g: usize| {
                if rec_drop {
                    slab(hm, g, t, step, bh)
                } else {
                    h_prev
                }
            };
            // With no initial state, h[-1] = 0: the first step's products are zero.
            let first_zero = h0.is_none() && step == 0;
            let z = &mut gates[step * b * h3..(step + 1) * b * h3];
            if self.spec.reset_after {
                // P[t] = h[t-1] · recurrent_kernel, one GEMM (one per gate under recurrent
                // dropout); the bias and r ⊙ (P_h + bh_h) come in the pass.
                let p = &mut rec[step * b * h3..(step + 1) * b * h3];
                if first_zero {
                    p.fill(0.0);
                } else {
                    let (groups, w) = column_groups(if rec_drop { 3 } else { 0 }, h);
                    for g in 0..groups {
                        sgemm(
                            Trans::No,
                            Trans::No,
                            b,
                            w,
                            h,
                            1.0,
                            seen(g),
                            h,
                            &rk[g * w..],
                            h3,
                            0.0,
                            &mut p[g * w..],
                            h3,
                        );
                    }
                }
                gru::after_forward_step(
                    AfterForward {
                        gates: z,
                        rec: p,
                        bias_x: self.bias_x(),
                        bias_h: self.bias_h(),
                        h_prev,
                        h: h_new,
                    },
                    h,
                    ra,
                    act,
                );
            } else {
                let q = &mut q[step * bh..(step + 1) * bh];
                // A_zr[t] += h[t-1] · recurrent_kernel[:, z r].
                if !first_zero {
                    let (groups, w) = if rec_drop { (2, h) } else { (1, 2 * h) };
                    for g in 0..groups {
                        sgemm(
                            Trans::No,
                            Trans::No,
                            b,
                            w,
                            h,
                            1.0,
                            seen(GATE_Z + g),
                            h,
                            &rk[g * w..],
                            h3,
                            1.0,
                            &mut z[g * w..],
                            h3,
                        );
                    }
                }
                gru::before_gates_step(
                    BeforeGates {
                        gates: z,
                        bias: self.bias_x(),
                        h_cand: seen(GATE_H),
                        q,
                    },
                    h,
                    ra,
                    act,
                );
                // A_h[t] += (r ⊙ h[t-1]) · recurrent_kernel[:, h] (zero when h[-1] is).
                if !first_zero {
                    sgemm(
                        Trans::No,
                        Trans::No,
                        b,
                        h,
                        h,
                        1.0,
                        q,
                        h,
                        &rk[GATE_H * h..],
                        h3,
                        1.0,
                        &mut z[GATE_H * h..],
                        h3,
                    );
                }
                gru::before_candidate_step(
                    BeforeCandidate {
                        gates: z,
                        bias: self.bias_x(),
                        h_prev,
                        h: h_new,
                    },
                    h,
                    ra,
                    act,
                );
            }
            // Masked rows keep h[t-1] (the output there is the carried h).
            if let Some(keep) = steps.get(step * b..(step + 1) * b) {
                if !step_mask::all_kept(keep) {
                    let (before, after) = hs.split_at_mut((step + 1) * bh);
                    step_mask::hold(keep, &before[step * bh..], &mut after[..bh], h);
                }
            }
        }
    }

    /// Backward of the last forward. `dy` is the gradient of the output (`[T, B, H]` or
    /// `[B, H]`), `d_final` an optional gradient reaching the final `h` directly (returned
    /// state, or a stateful successor). Accumulates the weight gradients into `grads`
    /// (`[d kernel, d recurrent_kernel, d bias]`, the last only with a bias); writes `dx`
    /// `[T, B, D]` when asked; leaves `d h0` in `cache.dh`.
    ///
    /// Backward overwrites the cached gates with their gradients: one backward per
    /// forward.
    pub(crate) fn backward_into(
        &self,
        x: &[f32],
        dy: &[f32],
        d_final: Option<&[f32]>,
        cache: &mut GruCache,
        dx: Option<&mut Vec<f32>>,
        grads: &mut [Vec<f32>],
    ) {
        let (d, h) = (self.input_width, self.spec.units);
        let (t, b) = (cache.t, cache.b);
        let (h3, bh, bd) = (3 * h, b * h, b * d);
        let (ra, act) = (self.spec.recurrent_activation, self.spec.activation);
        let rk = &self.recurrent_kernel;
        resize(&mut cache.dh, bh);
        if let Some(dh_t) = d_final {
            cache.dh.copy_from_slice(dh_t);
        }
        if !self.spec.return_sequences {
            for (a, g) in cache.dh.iter_mut().zip(dy) {
                *a += g;
            }
        }
        let rec_drop = !cache.rec_mask.is_empty();
        resize(&mut cache.dh_part, if rec_drop { bh } else { 0 });
        resize(&mut cache.dq, if self.spec.reset_after { 0 } else { bh });
        let GruCache {
            gates,
            rec,
            hs,
            dh,
            dq,
            dh_part,
            rec_mask,
            hm,
            steps,
            held,
            ..
        } = cache;
        let n = |g: usize| &rec_mask[g * bh..(g + 1) * bh];
        for step in (0..t).rev() {
            if self.spec.return_sequences {
                for (a, g) in dh.iter_mut().zip(&dy[step * bh..(step + 1) * bh]) {
                    *a += g;
                }
            }
            // A row masked at this step passes dh through to the previous step.
            let keep = steps
                .get(step * b..(step + 1) * b)
                .filter(|k| !step_mask::all_kept(k));
            if let Some(keep) = keep {
                step_mask::save(keep, dh, h, held);
            }
            let h_prev = &hs[step * bh..(step + 1) * bh];
            let z = &mut gates[step * b * h3..(step + 1) * b * h3];
            // The gradient of h[t-1] through the products: dh += Σ_g (dZ_g · R_gᵀ) ⊙ n_g,
            // over the column range `cols` of `dz` (one product without masks).
            let mut through_products = |dz: &[f32], cols: Range<usize>, dh: &mut [f32]| {
                if rec_drop {
                    for g in cols.start / h..cols.end / h {
                        sgemm(
                            Trans::No,
                            Trans::Yes,
                            b,
                            h,
                            h,
                            1.0,
                            &dz[g * h..],
                            h3,
                            &rk[g * h..],
                            h3,
                            0.0,
                            dh_part,
                            h,
                        );
                        add_masked(dh, dh_part, n(g));
                    }
                } else {
                    sgemm(
                        Trans::No,
                        Trans::Yes,
                        b,
                        h,
                        cols.len(),
                        1.0,
                        &dz[cols.start..],
                        h3,
                        &rk[cols.start..],
                        h3,
                        1.0,
                        dh,
                        h,
                    );
                }
            };
            if self.spec.reset_after {
                let p = &mut rec[step * b * h3..(step + 1) * b * h3];
                // Gates and P[t] become their gradients in place; dh becomes dh ⊙ z.
                gru::after_backward_step(
                    AfterBackward {
                        gates: z,
                        rec: p,
                        h_prev,
                        dh,
                    },
                    h,
                    ra,
                    act,
                );
                through_products(p, 0..h3, dh);
            } else {
                gru::before_candidate_backward_step(
                    BeforeCandidateBackward {
                        gates: z,
                        h_prev,
                        dh,
                    },
                    h,
                    ra,
                    act,
                );
                // dq = dĥ̃ · recurrent_kernel[:, h]ᵀ.
                sgemm(
                    Trans::No,
                    Trans::Yes,
                    b,
                    h,
                    h,
                    1.0,
                    &z[GATE_H * h..],
                    h3,
                    &rk[GATE_H * h..],
                    h3,
                    0.0,
                    dq,
                    h,
                );
                let (h_cand, mask) = if rec_drop {
                    (slab(hm, GATE_H, t, step, bh), n(GATE_H))
                } else {
                    (h_prev, &[][..])
                };
                gru::before_gates_backward_step(
                    BeforeGatesBackward {
                        gates: z,
                        dq,
                        h_cand,
                        mask,
                        dh,
                    },
                    h,
                    ra,
                    act,
                );
                through_products(z, GATE_Z * h..(GATE_R + 1) * h, dh);
            }
            if let Some(keep) = keep {
                step_mask::zero(keep, &mut gates[step * b * h3..(step + 1) * b * h3], h3);
                if self.spec.reset_after {
                    step_mask::zero(keep, &mut rec[step * b * h3..(step + 1) * b * h3], h3);
                }
                step_mask::restore(keep, held, dh, h);
            }
        }

        // Weight gradients: one GEMM each over all timesteps (one per gate where the gates
        // saw differently masked operands).
        let (grad_kernel, rest) = grads.split_at_mut(1);
        let (grad_recurrent_kernel, grad_bias) = rest.split_at_mut(1);
        let (grad_kernel, grad_recurrent_kernel) =
            (&mut grad_kernel[0], &mut grad_recurrent_kernel[0]);
        let in_masks = cache.in_mask.len() / bd.max(1);
        let x: &[f32] = if in_masks == 0 { x } else { &cache.xm };
        let (groups, w) = column_groups(in_masks, h);
        for g in 0..groups {
            // d kernel_g += X_gᵀ · dA_g
            sgemm(
                Trans::Yes,
                Trans::No,
                d,
                w,
                t * b,
                1.0,
                &x[g * t * bd..(g + 1) * t * bd],
                d,
                &cache.gates[g * w..],
                h3,
                1.0,
                &mut grad_kernel[g * w..],
                h3,
            );
        }
        // d recurrent_kernel: the left operand of each column block is what multiplied it
        // in forward (h[t-1] or its masked copy; q for the reset_before candidate).
        let h_prev_all = &cache.hs[..t * bh];
        let tbh = t * bh;
        let left = |g: usize| {
            if rec_drop {
                &cache.hm[g * tbh..(g + 1) * tbh]
            } else {
                h_prev_all
            }
        };
        let (dz_all, cols_h): (&[f32], usize) = if self.spec.reset_after {
            (&cache.rec, h3)
        } else {
            (&cache.gates, 2 * h)
        };
        let (groups, w) = if rec_drop {
            (cols_h / h, h)
        } else {
            (1, cols_h)
        };
        for g in 0..groups {
            sgemm(
                Trans::Yes,
                Trans::No,
                h,
                w,
                t * b,
                1.0,
                left(g),
                h,
                &dz_all[g * w..],
                h3,
                1.0,
                &mut grad_recurrent_kernel[g * w..],
                h3,
            );
        }
        if !self.spec.reset_after {
            sgemm(
                Trans::Yes,
                Trans::No,
                h,
                h,
                t * b,
                1.0,
                &cache.q,
                h,
                &cache.gates[GATE_H * h..],
                h3,
                1.0,
                &mut grad_recurrent_kernel[GATE_H * h..],
                h3,
            );
        }
        if let Some(grad_bias) = grad_bias.first_mut() {
            let (gx, gh) = grad_bias.split_at_mut(h3);
            for row in cache.gates.chunks_exact(h3) {
                for (g, v) in gx.iter_mut().zip(row) {
                    *g += v;
                }
            }
            if self.spec.reset_after {
                for row in cache.rec.chunks_exact(h3) {
                    for (g, v) in gh.iter_mut().zip(row) {
                        *g += v;
                    }
                }
            }
        }
        if let Some(dx) = dx {
            resize(dx, t * b * d);
            let (groups, w) = column_groups(in_masks, h);
            if groups == 3 {
                resize(&mut cache.dx_part, t * bd);
            }
            for g in 0..groups {
                // dX = Σ_g (dA_g · kernel_gᵀ) ⊙ m_g
                let out = if groups == 1 {
                    &mut dx[..]
                } else {
                    &mut cache.dx_part[..]
                };
                sgemm(
                    Trans::No,
                    Trans::Yes,
                    t * b,
                    d,
                    w,
                    1.0,
                    &cache.gates[g * w..],
                    h3,
                    &self.kernel[g * w..],
                    h3,
                    0.0,
                    out,
                    d,
                );
                if in_masks == 0 {
                    continue;
                }
                let m = &cache.in_mask[g * bd..(g + 1) * bd];
                if groups == 1 {
                    for dxt in dx.chunks_exact_mut(bd) {
                        for (v, m) in dxt.iter_mut().zip(m) {
                            *v *= m;
                        }
                    }
                } else {
                    for (dxt, pt) in dx.chunks_exact_mut(bd).zip(cache.dx_part.chunks_exact(bd)) {
                        add_masked(dxt, pt, m);
                    }
                }
            }
        }
    }

    /// Runs the layer on its own, Keras-style: `x` `[B, T, D]`, optional initial state
    /// `h0` `[B, H]`. Returns the output and the final state (what `return_state=True`
    /// gives in Keras).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for a wrong feature count, state shape or zero timesteps;
    /// [`Error::InvalidInput`] for a non-finite value.
    pub fn call(
        &self,
        x: ArrayView3<'_, f32>,
        initial_state: Option<ArrayView2<'_, f32>>,
    ) -> Result<GruOutput> {
        let (b, t, d) = x.dim();
        let h = self.spec.units;
        if d != self.input_width || t == 0 {
            return Err(Error::ShapeMismatch {
                layer: self.name.clone(),
                expected: format!("[batch, timesteps >= 1, {}]", self.input_width),
                got: shape_str(&[b, t, d]),
            });
        }
        crate::layers::check_finite(x, &self.name)?;
        let h0 = match initial_state {
            Some(s) => {
                if s.dim() != (b, h) {
                    return Err(Error::ShapeMismatch {
                        layer: format!("{} initial state h0", self.name),
                        expected: shape_str(&[b, h]),
                        got: shape_str(&[s.dim().0, s.dim().1]),
                    });
                }
                Some(s.iter().copied().collect::<Vec<f32>>())
            }
            None => None,
        };
        let xt = to_time_major(x);
        let mut cache = GruCache::default();
        let mut out = Vec::new();
        self.run(&xt, t, b, h0.as_deref(), &mut cache, &mut out);
        let output = if self.spec.return_sequences {
            to_batch_major(&out, t, b, h).into_dyn()
        } else {
            ArrayD::from_shape_vec(IxDyn(&[b, h]), out).map_err(|e| Error::input(e.to_string()))?
        };
        let hl = Array2::from_shape_vec((b, h), cache.h_last(h).to_vec())
            .map_err(|e| Error::input(e.to_string()))?;
        Ok(GruOutput { output, h: hl })
    }
}

impl Layer for GruLayer {
    layer_identity!("GRU");
    /// Keras order: kernel, recurrent_kernel, bias (if any).
    fn weights(&self) -> Vec<Weight<'_>> {
        let mut w = vec![
            Weight {
                name: "kernel",
                shape: &self.shapes.0,
                values: &self.kernel,
            },
            Weight {
                name: "recurrent_kernel",
                shape: &self.shapes.1,
                values: &self.recurrent_kernel,
            },
        ];
        if self.spec.use_bias {
            w.push(Weight {
                name: "bias",
                shape: &self.shapes.2,
                values: &self.bias,
            });
        }
        w
    }
    fn weights_mut(&mut self) -> Vec<&mut [f32]> {
        let mut w: Vec<&mut [f32]> = vec![&mut self.kernel, &mut self.recurrent_kernel];
        if self.spec.use_bias {
            w.push(&mut self.bias);
        }
        w
    }
    fn new_cache(&self) -> Box<dyn Cache> {
        Box::<GruCache>::default()
    }
    fn forward(
        &self,
        x: &[f32],
        t: usize,
        b: usize,
        state: Option<&State>,
        mask: Option<&[bool]>,
        cache: &mut dyn Cache,
    ) {
        let h0 = state.map(|s| s.tensors[0].as_slice());
        let c: &mut GruCache = cache_mut(cache);
        c.steps.clear();
        c.steps.extend_from_slice(mask.unwrap_or_default());
        self.forward_cached(x, t, b, h0, c);
    }
    fn output<'c>(&self, cache: &'c dyn Cache) -> &'c [f32] {
        let c: &GruCache = cache_ref(cache);
        if self.spec.return_sequences {
            c.outputs()
        } else {
            c.h_last(self.spec.units)
        }
    }
    fn backward(&self, pass: Backward<'_>) {
        let Some(grads) = pass.grads else {
            unreachable!("a GRU forms its weight gradients in backward (it never defers them)");
        };
        self.backward_into(pass.x, pass.dy, None, cache_mut(pass.cache), pass.dx, grads);
    }
    /// One set of masks per sequence (the same for every timestep), as Keras 3 draws them:
    /// input `[1, B, D]` with `dropout` alone; with `recurrent_dropout`, input `[3, B, D]`
    /// (when `dropout` is set) and recurrent `[3, B, H]`, one mask per gate z, r, h.
    fn draw_masks(&self, rng: &mut Rng, _: usize, b: usize, cache: &mut dyn Cache) {
        let c: &mut GruCache = cache_mut(cache);
        c.in_mask.clear();
        c.rec_mask.clear();
        let per_gate = self.spec.recurrent_dropout > 0.0;
        if self.spec.dropout > 0.0 {
            let groups = if per_gate { 3 } else { 1 };
            draw_mask(
                rng,
                self.spec.dropout,
                groups * b * self.input_width,
                &mut c.in_mask,
            );
        }
        if per_gate {
            draw_mask(
                rng,
                self.spec.recurrent_dropout,
                3 * b * self.spec.units,
                &mut c.rec_mask,
            );
        }
    }
    fn clear_masks(&self, cache: &mut dyn Cache) {
        let c: &mut GruCache = cache_mut(cache);
        c.in_mask.clear();
        c.rec_mask.clear();
    }
    fn copy_mask_rows(
        &self,
        full: &dyn Cache,
        rows: Range<usize>,
        _: usize,
        b: usize,
        part: &mut dyn Cache,
    ) {
        let src: &GruCache = cache_ref(full);
        let dst: &mut GruCache = cache_mut(part);
        dst.in_mask.clear();
        dst.rec_mask.clear();
        // A `[G, B, w]` mask is G blocks of B rows: copy the rows of each block.
        for (mask, w, out) in [
            (&src.in_mask, self.input_width, &mut dst.in_mask),
            (&src.rec_mask, self.spec.units, &mut dst.rec_mask),
        ] {
            if !mask.is_empty() {
                let groups = mask.len() / (b * w);
                copy_time_major_rows(mask, rows.clone(), groups, b, w, out);
            }
        }
    }
    fn stateful(&self) -> bool {
        self.spec.stateful
    }
    fn state_widths(&self) -> Vec<usize> {
        vec![self.spec.units]
    }
    fn final_state<'c>(&self, cache: &'c dyn Cache) -> Vec<&'c [f32]> {
        let c: &GruCache = cache_ref(cache);
        vec![c.h_last(self.spec.units)]
    }

    /// One ONNX `GRU` operator (opset 14 definition), through the shared
    /// `export_one_direction` (sequence-major layout, the step mask, stateful layers
    /// refused), with the weights of `GruLayer::onnx_direction`. ONNX's gate
    /// order z, r, h is Keras', so the kernels are only transposed, to `W [1, 3H, D]` and
    /// `R [1, 3H, H]`. `reset_after` is `linear_before_reset = 1`, whose candidate
    /// `g(x·W_hᵀ + Wb_h + r ⊙ (h_p·R_hᵀ + Rb_h))` is Keras'; the bias rows become
    /// `B = [Wb, Rb]`. Without `reset_after`, `linear_before_reset = 0` computes
    /// `g(x·W_hᵀ + (r ⊙ h_p)·R_hᵀ + Wb_h + Rb_h)`, Keras' reset-before form with its one
    /// bias in `Wb` and zeros in `Rb`. Without a bias, `B` is left out (ONNX's default is
    /// zero).
    fn export_onnx(&self, g: &mut dyn OnnxGraph, x: OnnxValue) -> Result<OnnxValue> {
        let spec = &self.spec;
        let what = format!("layer '{}' (GRU)", self.name);
        let layer = RecurrentExport {
            base: "gru",
            name: &self.name,
            kind: "GRU",
            stateful: spec.stateful,
            return_sequences: spec.return_sequences,
            units: spec.units,
            input_width: self.input_width,
            dirs: vec![self.onnx_direction(&what)?],
        };
        export_one_direction(g, x, layer)
    }
}

/// ONNX's `GRU` gate order z, r, h is Keras': the blocks stay where they are.
const KERAS_BLOCK_FOR_ONNX: [usize; 3] = [GATE_Z, GATE_R, GATE_H];

impl GruLayer {
    /// The layer as one direction of an ONNX `GRU` operator: the kernels transposed to
    /// `W [3H, D]` / `R [3H, H]` (ONNX's gate order z, r, h is Keras'); `B` holds the
    /// input bias row in `Wb` and the recurrent row in `Rb` with `reset_after` (the
    /// operator's `linear_before_reset = 1`), else the bias in `Wb` and zeros in `Rb`
    /// (`linear_before_reset = 0` adds `Rb_h` outside the reset, where zero changes
    /// nothing); activations f = σ, g = φ. `what` names the layer in errors.
    ///
    /// # Errors
    /// [`Error::UnsupportedFormat`] for an activation ONNX's `GRU` does not run.
    pub(crate) fn onnx_direction(&self, what: &str) -> Result<RecurrentDirection> {
        let spec = &self.spec;
        let f = recurrent_activation(what, "recurrent_activation", spec.recurrent_activation)?;
        let g = recurrent_activation(what, "activation", spec.activation)?;
        let (d, h) = (self.input_width, spec.units);
        let b = spec.use_bias.then(|| {
            let mut bb = vec![0.0f32; 6 * h];
            bb[..3 * h].copy_from_slice(self.bias_x());
            if spec.reset_after {
                bb[3 * h..].copy_from_slice(self.bias_h());
            }
            bb
        });
        Ok(RecurrentDirection {
            op: "GRU",
            attrs: vec![(
                "linear_before_reset",
                OnnxAttr::Int(i64::from(spec.reset_after)),
            )],
            w: reorder_transpose(&self.kernel, d, h, &KERAS_BLOCK_FOR_ONNX),
            r: reorder_transpose(&self.recurrent_kernel, h, h, &KERAS_BLOCK_FOR_ONNX),
            b,
            activations: vec![f, g],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::test_util::rand_vec;
    use ndarray::Array3;

    /// Central finite differences against an analytic gradient, as
    /// [`test_util::fd_check`](crate::layers::test_util::fd_check) (same step, same
    /// tolerance), with one retry at a 5x smaller step. `relu` and `hard_sigmoid` have
    /// kinks: when a pre-activation lies within the step of one, the central difference
    /// mixes the two slopes (seen here: -0.0730 analytic, 0.0064 with step 5e-3, -0.0730
    /// with 1e-3). The smaller step rarely contains the kink too, while a wrong derivative
    /// disagrees at both steps. At 1e-3 the f32 rounding noise of the quotient is ~1e-4 of
    /// the loss, still under the tolerance.
    fn fd_check(what: &str, analytic: &[f32], n: usize, mut loss: impl FnMut(usize, f32) -> f64) {
        assert_eq!(analytic.len(), n, "{what}: gradient has the wrong length");
        for (i, &a) in analytic.iter().enumerate() {
            let a = f64::from(a);
            let mut fds = Vec::new();
            for eps in [5e-3f32, 1e-3] {
                let fd = (loss(i, eps) - loss(i, -eps)) / (2.0 * f64::from(eps));
                if (a - fd).abs() <= 1e-3 + 1e-2 * fd.abs() {
                    break;
                }
                fds.push(fd);
            }
            assert!(
                fds.len() < 2,
                "{what}[{i}]: analytic {a} vs finite differences {fds:?} (steps 5e-3, 1e-3)"
            );
        }
    }

    /// Zero gradients, one buffer per weight.
    fn zero_grads(l: &GruLayer) -> Vec<Vec<f32>> {
        l.weights()
            .iter()
            .map(|w| vec![0.0; w.values.len()])
            .collect()
    }

    fn setup(spec: Gru, d: usize, seed: u64) -> GruLayer {
        let mut rng = Rng::new(seed);
        let mut l = GruLayer::build(spec, "gru".into(), d, &mut rng).unwrap();
        // Non-trivial weights (as the fixtures use): uniform in [-0.5, 0.5], biases included.
        for w in [&mut l.kernel, &mut l.recurrent_kernel, &mut l.bias] {
            for v in w.iter_mut() {
                *v = rng.uniform(-0.5, 0.5) as f32;
            }
        }
        l
    }

    fn dot(a: &[f32], w: &[f32]) -> f64 {
        a.iter()
            .zip(w)
            .map(|(a, w)| f64::from(*a) * f64::from(*w))
            .sum()
    }

    /// Dropout masks drawn by the layer itself for a batch of `b` (empty when it has none).
    fn masks_of(l: &GruLayer, b: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let mut c = GruCache::default();
        l.draw_masks(&mut Rng::new(seed), 0, b, &mut c);
        (c.in_mask, c.rec_mask)
    }

    /// Finite differences of the input, every weight and `h0` (with `with_state`) for the
    /// scalar `L = Σ wy ⊙ output + Σ wh ⊙ h_T` with fixed random weights, so every output
    /// element and the final state get a distinct gradient. With `dropout`, the layer's own
    /// masks are drawn once and held fixed.
    fn check_with(spec: Gru, with_state: bool, dropout: bool) {
        let (t, b, d) = (4, 3, 2);
        let h = spec.units;
        let seq = spec.return_sequences;
        let l = setup(spec, d, 11);
        let (in_mask, rec_mask) = if dropout {
            masks_of(&l, b, 13)
        } else {
            (Vec::new(), Vec::new())
        };
        if dropout {
            assert!(
                in_mask.contains(&0.0) || rec_mask.contains(&0.0),
                "the masks must drop something"
            );
        }
        let fresh = || GruCache {
            in_mask: in_mask.clone(),
            rec_mask: rec_mask.clone(),
            ..GruCache::default()
        };
        let mut rng = Rng::new(12);
        let x = rand_vec(&mut rng, t * b * d, 1.0);
        let h0 = rand_vec(&mut rng, b * h, 0.5);
        let wy = rand_vec(&mut rng, if seq { t * b * h } else { b * h }, 1.0);
        let wh = rand_vec(&mut rng, b * h, 1.0);
        let eval = |l: &GruLayer, x: &[f32], h0: &[f32]| {
            let mut cache = fresh();
            let mut out = Vec::new();
            l.run(x, t, b, with_state.then_some(h0), &mut cache, &mut out);
            dot(&out, &wy) + dot(cache.h_last(h), &wh)
        };
        // Analytic gradients.
        let mut cache = fresh();
        let mut out = Vec::new();
        l.run(
            &x,
            t,
            b,
            with_state.then_some(&h0[..]),
            &mut cache,
            &mut out,
        );
        let mut dx = Vec::new();
        let mut g = zero_grads(&l);
        l.backward_into(&x, &wy, Some(&wh), &mut cache, Some(&mut dx), &mut g);
        let dh0 = cache.dh.clone();

        let base = l.clone();
        fd_check("input", &dx, x.len(), |i, e| {
            let mut x2 = x.clone();
            x2[i] += e;
            eval(&base, &x2, &h0)
        });
        fd_check("kernel", &g[0], base.kernel.len(), |i, e| {
            let mut l2 = base.clone();
            l2.kernel[i] += e;
            eval(&l2, &x, &h0)
        });
        fd_check(
            "recurrent_kernel",
            &g[1],
            base.recurrent_kernel.len(),
            |i, e| {
                let mut l2 = base.clone();
                l2.recurrent_kernel[i] += e;
                eval(&l2, &x, &h0)
            },
        );
        if base.spec.use_bias {
            fd_check("bias", &g[2], base.bias.len(), |i, e| {
                let mut l2 = base.clone();
                l2.bias[i] += e;
                eval(&l2, &x, &h0)
            });
        }
        if with_state {
            fd_check("h0", &dh0, h0.len(), |i, e| {
                let mut h2 = h0.clone();
                h2[i] += e;
                eval(&base, &x, &h2)
            });
        }
        // A dropped input feature contributes nothing: its gradient is exactly zero.
        let bd = b * d;
        if !in_mask.is_empty() {
            for k in 0..bd {
                if in_mask.chunks_exact(bd).all(|m| m[k] == 0.0) {
                    for step in 0..t {
                        assert_eq!(dx[step * bd + k], 0.0);
                    }
                }
            }
        }
    }

    fn check(spec: Gru, with_state: bool) {
        check_with(spec, with_state, false);
    }

    #[test]
    fn gradients_last_output_both_modes() {
        check(Gru::new(5), false);
        check(Gru::new(5).reset_after(false), false);
    }

    #[test]
    fn gradients_return_sequences_with_initial_state_both_modes() {
        check(Gru::new(4).return_sequences(true), true);
        check(Gru::new(4).return_sequences(true).reset_after(false), true);
        check(Gru::new(3), true);
        check(Gru::new(3).reset_after(false), true);
    }

    #[test]
    fn gradients_without_bias_both_modes() {
        check(Gru::new(3).use_bias(false).return_sequences(true), true);
        check(
            Gru::new(3)
                .use_bias(false)
                .return_sequences(true)
                .reset_after(false),
            true,
        );
    }

    #[test]
    fn gradients_every_activation_pair_both_modes() {
        use Activation::*;
        for (act, rec) in [
            (Tanh, HardSigmoid),
            (Relu, Sigmoid),
            (Sigmoid, Sigmoid),
            (Linear, Tanh),
            (Tanh, Relu),
            (HardSigmoid, Linear),
        ] {
            for reset_after in [true, false] {
                check(
                    Gru::new(3)
                        .activation(act)
                        .recurrent_activation(rec)
                        .reset_after(reset_after)
                        .return_sequences(true),
                    true,
                );
            }
        }
    }

    #[test]
    fn gradients_with_dropout_masks_both_modes() {
        for reset_after in [true, false] {
            let spec = Gru::new(4).return_sequences(true).reset_after(reset_after);
            // Input masks alone (one shared mask), recurrent alone, both (per gate).
            check_with(spec.clone().dropout(0.4), true, true);
            check_with(spec.clone().recurrent_dropout(0.4), true, true);
            check_with(spec.dropout(0.3).recurrent_dropout(0.3), true, true);
        }
    }

    #[test]
    fn masks_are_drawn_per_gate_only_with_recurrent_dropout() {
        let (b, d, h) = (5, 3, 4);
        let masks = |spec: Gru| {
            let (i, r) = masks_of(&setup(spec, d, 1), b, 2);
            (i.len(), r.len())
        };
        assert_eq!(masks(Gru::new(h)), (0, 0));
        assert_eq!(masks(Gru::new(h).dropout(0.5)), (b * d, 0));
        assert_eq!(masks(Gru::new(h).recurrent_dropout(0.5)), (0, 3 * b * h));
        assert_eq!(
            masks(Gru::new(h).dropout(0.5).recurrent_dropout(0.5)),
            (3 * b * d, 3 * b * h)
        );
        // A batch part gets its rows of every gate's mask.
        let l = setup(Gru::new(h).dropout(0.5).recurrent_dropout(0.5), d, 1);
        let mut full = GruCache::default();
        l.draw_masks(&mut Rng::new(3), 0, b, &mut full);
        let mut part = GruCache::default();
        l.copy_mask_rows(&full, 1..4, 0, b, &mut part);
        assert_eq!(part.in_mask.len(), 3 * 3 * d);
        for g in 0..3 {
            assert_eq!(
                part.in_mask[g * 3 * d..(g + 1) * 3 * d],
                full.in_mask[(g * b + 1) * d..(g * b + 4) * d]
            );
            assert_eq!(
                part.rec_mask[g * 3 * h..(g + 1) * 3 * h],
                full.rec_mask[(g * b + 1) * h..(g * b + 4) * h]
            );
        }
    }

    #[test]
    fn recurrent_dropout_leaves_the_carried_state_unmasked() {
        // Keras drops units of the state each gate's product sees, not of the state the
        // update gate carries over: with every recurrent unit dropped, the layer is the
        // same layer with a zero recurrent kernel, and h0 still reaches the output.
        let (t, b, d, h) = (3, 2, 3, 4);
        for reset_after in [true, false] {
            let spec = Gru::new(h)
                .return_sequences(true)
                .reset_after(reset_after)
                .recurrent_dropout(0.5);
            let l = setup(spec, d, 31);
            let mut twin = l.clone();
            twin.recurrent_kernel.fill(0.0);
            let mut rng = Rng::new(32);
            let x = rand_vec(&mut rng, t * b * d, 1.0);
            let h0 = rand_vec(&mut rng, b * h, 1.0);
            let run = |l: &GruLayer, h0: &[f32], rec_mask: Vec<f32>| {
                let mut c = GruCache {
                    rec_mask,
                    ..GruCache::default()
                };
                let mut out = Vec::new();
                l.run(&x, t, b, Some(h0), &mut c, &mut out);
                out
            };
            let dropped = run(&l, &h0, vec![0.0; 3 * b * h]);
            let plain = run(&twin, &h0, Vec::new());
            for (a, z) in dropped.iter().zip(&plain) {
                assert!((a - z).abs() <= 1e-6, "{a} vs {z}");
            }
            let from_zero = run(&l, &vec![0.0; b * h], vec![0.0; 3 * b * h]);
            assert!(
                dropped
                    .iter()
                    .zip(&from_zero)
                    .any(|(a, z)| (a - z).abs() > 1e-3),
                "h0 must reach the output through z ⊙ h[t-1]"
            );
        }
    }

    #[test]
    fn step_by_step_with_carried_state_equals_full_sequence() {
        let (t, b, d, h) = (5, 2, 3, 4);
        for reset_after in [true, false] {
            let l = setup(
                Gru::new(h).return_sequences(true).reset_after(reset_after),
                d,
                21,
            );
            let mut rng = Rng::new(22);
            let x = rand_vec(&mut rng, t * b * d, 1.0);
            let dy = rand_vec(&mut rng, t * b * h, 1.0);
            // Full sequence.
            let mut cache = GruCache::default();
            let mut full = Vec::new();
            l.run(&x, t, b, None, &mut cache, &mut full);
            let mut dx_full = Vec::new();
            let mut grads_full = zero_grads(&l);
            l.backward_into(
                &x,
                &dy,
                None,
                &mut cache,
                Some(&mut dx_full),
                &mut grads_full,
            );
            // One step at a time, carrying h forward.
            let mut caches = vec![GruCache::default(); t];
            let mut hc = vec![0.0; b * h];
            let mut steps_out = Vec::new();
            for s in 0..t {
                let xs = &x[s * b * d..(s + 1) * b * d];
                let mut o = Vec::new();
                l.run(xs, 1, b, Some(&hc), &mut caches[s], &mut o);
                hc = caches[s].h_last(h).to_vec();
                steps_out.extend_from_slice(&o);
            }
            for (a, b_) in full.iter().zip(&steps_out) {
                assert!((a - b_).abs() <= 1e-6, "outputs differ: {a} vs {b_}");
            }
            // Backward through the steps in reverse, passing d h0 to the previous step.
            let mut g = zero_grads(&l);
            let mut dnext: Option<Vec<f32>> = None;
            let mut dx_steps = vec![0.0; t * b * d];
            for s in (0..t).rev() {
                let xs = &x[s * b * d..(s + 1) * b * d];
                let mut dxs = Vec::new();
                l.backward_into(
                    xs,
                    &dy[s * b * h..(s + 1) * b * h],
                    dnext.as_deref(),
                    &mut caches[s],
                    Some(&mut dxs),
                    &mut g,
                );
                dx_steps[s * b * d..(s + 1) * b * d].copy_from_slice(&dxs);
                dnext = Some(caches[s].dh.clone());
            }
            let close = |a: &[f32], b_: &[f32], what: &str| {
                for (x, y) in a.iter().zip(b_) {
                    assert!(
                        (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                        "{what}: {x} vs {y}"
                    );
                }
            };
            close(&dx_full, &dx_steps, "dx");
            close(&grads_full[0], &g[0], "d kernel");
            close(&grads_full[1], &g[1], "d recurrent_kernel");
            close(&grads_full[2], &g[2], "d bias");
        }
    }

    #[test]
    fn call_checks_shapes_and_returns_state() {
        let l = setup(Gru::new(3).return_state(true), 2, 5);
        let x = Array3::<f32>::ones((2, 4, 2));
        let out = l.call(x.view(), None).unwrap();
        assert_eq!(out.output.shape(), &[2, 3]);
        assert_eq!(out.h, out.output.clone().into_dimensionality().unwrap());
        // An initial state changes the result; a sequence output ends with the state.
        let h0 = Array2::<f32>::from_elem((2, 3), 0.5);
        let seq = setup(Gru::new(3).return_sequences(true), 2, 5);
        let s = seq.call(x.view(), Some(h0.view())).unwrap();
        assert_eq!(s.output.shape(), &[2, 4, 3]);
        assert_eq!(
            s.output.index_axis(ndarray::Axis(1), 3).to_owned(),
            s.h.clone().into_dyn()
        );
        assert_ne!(seq.call(x.view(), None).unwrap().h, s.h);
        let bad = Array3::<f32>::ones((2, 4, 3));
        let err = l.call(bad.view(), None).unwrap_err().to_string();
        assert!(
            err.contains("[batch, timesteps >= 1, 2]") && err.contains("[2, 4, 3]"),
            "{err}"
        );
        let h0 = Array2::<f32>::zeros((1, 3));
        let err = l.call(x.view(), Some(h0.view())).unwrap_err().to_string();
        assert!(err.contains("h0") && err.contains("[1, 3]"), "{err}");
        let mut nan = x.clone();
        nan[[1, 2, 0]] = f32::NAN;
        let err = l.call(nan.view(), None).unwrap_err().to_string();
        assert!(err.contains("[1, 2, 0]"), "{err}");
    }

    #[test]
    fn absurd_sizes_and_bad_options_are_errors_before_allocation() {
        let mut rng = Rng::new(0);
        let build = |spec: Gru, rng: &mut Rng| {
            GruLayer::build(spec, "gru".into(), 1, rng)
                .unwrap_err()
                .to_string()
        };
        let err = build(Gru::new(1_000_000_000_000), &mut rng);
        assert!(
            err.contains("'gru' (GRU)") && err.contains("too large"),
            "{err}"
        );
        let err = build(Gru::new(0), &mut rng);
        assert!(err.contains("units must be at least 1"), "{err}");
        let err = build(Gru::new(2).recurrent_dropout(1.0), &mut rng);
        assert!(err.contains("recurrent_dropout must be in [0, 1)"), "{err}");
        let err = build(Gru::new(2).activation(Activation::Softmax), &mut rng);
        assert!(err.contains("not elementwise"), "{err}");
    }

    #[test]
    fn weights_have_keras_names_shapes_and_initialisers() {
        let mut rng = Rng::new(1);
        for (reset_after, bias) in [(true, vec![2, 12]), (false, vec![12])] {
            let spec = Gru::new(4).reset_after(reset_after);
            let l = GruLayer::build(spec.clone(), "gru".into(), 3, &mut rng).unwrap();
            let w = l.weights();
            let got: Vec<(&str, Vec<usize>)> =
                w.iter().map(|w| (w.name, w.shape.to_vec())).collect();
            let want = vec![
                ("kernel", vec![3, 12]),
                ("recurrent_kernel", vec![4, 12]),
                ("bias", bias),
            ];
            assert_eq!(got, want);
            assert_eq!(spec.weight_shapes("gru", 3).unwrap(), want);
            assert_eq!(
                w.iter().map(|w| w.values.len()).sum::<usize>(),
                spec.param_count(3)
            );
            // Zero bias; orthonormal rows of the recurrent kernel ([H, 3H], H < 3H).
            assert!(w[2].values.iter().all(|v| *v == 0.0));
            let rk = w[1].values;
            for i in 0..4 {
                for j in 0..4 {
                    let dot: f32 = (0..12).map(|k| rk[i * 12 + k] * rk[j * 12 + k]).sum();
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!((dot - want).abs() < 1e-5, "rows {i}, {j}: {dot}");
                }
            }
            let limit = (6.0f32 / 15.0).sqrt();
            assert!(w[0].values.iter().all(|v| v.abs() <= limit));
        }
        let l = GruLayer::build(Gru::new(4).use_bias(false), "g".into(), 3, &mut rng).unwrap();
        assert_eq!(l.weights().len(), 2);
        assert_eq!(Gru::new(4).use_bias(false).param_count(3), 84);
    }

    #[test]
    fn in_a_model_counts_and_stacking_errors_read_like_keras() {
        use crate::layers::dense::Dense;
        use crate::model::Sequential;
        // Keras' summary: GRU(50) on 1 feature has 7,950 parameters (reset_after, bias
        // [2, 150]); GRU(50, reset_after=False) 7,800; then GRU(50) on 50: 15,300.
        let m = Sequential::new()
            .input_shape(30, 1)
            .add(Gru::new(50).return_sequences(true))
            .add(Gru::new(50).reset_after(false))
            .add(Dense::new(1))
            .build()
            .unwrap();
        assert_eq!(m.param_count(), 7_950 + (15_300 - 150) + 51);
        let s = m.summary();
        assert!(
            s.contains("gru (GRU)") && s.contains("gru_1 (GRU)") && s.contains("(None, 30, 50)"),
            "{s}"
        );
        assert!(s.contains("7,950") && s.contains("15,150"), "{s}");

        let err = Sequential::new()
            .input_shape(5, 2)
            .add(Gru::new(4))
            .add(Gru::new(3))
            .build()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'gru_1' (GRU)") && err.contains("'gru' (GRU)"),
            "{err}"
        );
        assert!(err.contains("return_sequences(true) on 'gru'"), "{err}");
        let err = Sequential::new()
            .input_shape(5, 2)
            .add(Gru::new(4).name("encoder"))
            .add(Dense::new(3))
            .add(Gru::new(3))
            .build()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'dense'") && err.contains("on 'encoder'"),
            "{err}"
        );
        let err = Sequential::new()
            .input_shape(3, 1)
            .add(Gru::new(2).return_state(true))
            .build()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("return_state") && err.contains("GruLayer::call"),
            "{err}"
        );
        let err = Sequential::new()
            .input_shape(3, 1)
            .add(Gru::new(0))
            .build()
            .unwrap_err()
            .to_string();
        assert!(err.contains("units must be at least 1"), "{err}");
    }

    #[test]
    fn stateful_model_carries_h_across_batches() {
        use crate::model::Sequential;
        for reset_after in [true, false] {
            let build = |stateful: bool| {
                Sequential::new()
                    .input_features(2)
                    .add(
                        Gru::new(3)
                            .return_sequences(true)
                            .reset_after(reset_after)
                            .stateful(stateful),
                    )
                    .seed(4)
                    .build()
                    .unwrap()
            };
            let (plain, mut stateful) = (build(false), build(true));
            let x =
                Array3::from_shape_fn((2, 6, 2), |(i, j, k)| ((i * 5 + j * 2 + k) as f32).sin());
            let whole = plain.predict(&x).unwrap();
            let a = stateful
                .predict_on_batch(x.slice(ndarray::s![.., ..4, ..]))
                .unwrap();
            let b = stateful
                .predict_on_batch(x.slice(ndarray::s![.., 4.., ..]))
                .unwrap();
            let joined = ndarray::concatenate(ndarray::Axis(1), &[a.view(), b.view()]).unwrap();
            for (p, q) in whole.iter().zip(&joined) {
                assert!((p - q).abs() <= 1e-6, "{p} vs {q}");
            }
        }
    }
}
