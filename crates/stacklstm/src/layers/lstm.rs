//! The LSTM layer: spec, built layer, cache, forward and hand-derived backward.
//!
//! Legend: `B` = batch, `T` = timesteps, `D` = input width, `H` = units. Internal buffers
//! are time-major (`[T, B, ..]`), so one timestep is one contiguous `[B, ..]` block.
//!
//! Forward, for t = 0..T (gate order i, f, c, o; `σ` = recurrent activation, `φ` = activation):
//! ```text
//! Z       = X · kernel + bias                  one GEMM for all timesteps: [T·B, 4H]
//! Z[t]   += h[t-1] · recurrent_kernel           one GEMM per step:          [B, 4H]
//! i, f, g, o = σ(Z_i), σ(Z_f), φ(Z_c), σ(Z_o)   fused gate pass
//! c[t] = f ⊙ c[t-1] + i ⊙ g;   h[t] = o ⊙ φ(c[t])
//! ```
//! Backward, for t = T-1..0:
//! ```text
//! dh[t]  = dY[t] + dZ[t+1] · recurrent_kernelᵀ  (from the layer above and from step t+1)
//! dZ[t]  = gate backward (see kernels::gates), dc carried to t-1
//! then once:  d kernel += Xᵀ · dZ    d recurrent_kernel += H_prevᵀ · dZ
//!             d bias   += Σ_rows dZ  dX = dZ · kernelᵀ
//! ```
//! The derivation is in `docs/lstm-backward.md`. No heap allocation happens inside the
//! time loops: every buffer is sized once per call and reused across calls.

use std::ops::Range;

use ndarray::{Array2, ArrayD, ArrayView2, ArrayView3, IxDyn};
use serde::{Deserialize, Serialize};

use crate::error::{shape_str, Error, Result};
use crate::init::{glorot_uniform, orthogonal, Rng};
use crate::kernels::activation::Activation;
use crate::kernels::gates::{self, StepBackward, StepForward, GATE_F};
use crate::kernels::matmul::{sgemm, Trans};
use crate::layers::dropout::draw_mask;
use crate::layers::step_mask;
use crate::layers::keras::{FromKeras, KerasConfig, REGULARIZERS};
use crate::layers::onnx::{
    export_one_direction, recurrent_activation, reorder_transpose, OnnxGraph, OnnxValue,
    RecurrentDirection, RecurrentExport,
};
use crate::layers::{
    cache_mut, cache_ref, check_size, copy_time_major_rows, to_batch_major,
    to_time_major, Backward, Cache, Layer, LayerConfig, OutShape, StackInput, State,
    Weight,
};

/// Specification of an LSTM layer, with Keras' options and defaults.
///
/// # Shapes
/// Input `[batch, timesteps, features]`; output `[batch, units]`, or
/// `[batch, timesteps, units]` with `return_sequences(true)`.
///
/// # Example
/// ```
/// use stacklstm::{Activation, Lstm};
/// let spec = Lstm::new(50).return_sequences(true).recurrent_activation(Activation::HardSigmoid);
/// assert_eq!(spec.units, 50);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Lstm {
    /// Number of hidden units `H`.
    pub units: usize,
    /// Output the whole sequence of hidden states, not only the last one.
    pub return_sequences: bool,
    /// Also return the final `(h, c)` (only when calling the layer directly, see
    /// [`LstmLayer::call`]; a `Sequential` passes one tensor between layers).
    pub return_state: bool,
    /// Add a bias to the gate pre-activations.
    pub use_bias: bool,
    /// `φ`, applied to the cell candidate and to the cell state.
    pub activation: Activation,
    /// `σ`, applied to the input, forget and output gates.
    pub recurrent_activation: Activation,
    /// Initialise the forget-gate bias to 1 (only affects initialisation).
    pub unit_forget_bias: bool,
    /// Fraction of the input units to drop during training (one mask per sequence).
    pub dropout: f32,
    /// Fraction of the recurrent units to drop during training (one mask per sequence).
    pub recurrent_dropout: f32,
    /// Carry the final `(h, c)` of each batch into the next one (truncated BPTT over a long
    /// stream, Keras `stateful=True`); reset with `Model::reset_states`.
    pub stateful: bool,
    /// Layer name; Keras-style defaults (`lstm`, `lstm_1`, ...) when `None`.
    pub name: Option<String>,
    /// Whether training updates the weights (Keras `trainable`, default true).
    #[serde(skip_serializing_if = "crate::layers::is_true")]
    pub trainable: bool,
}

impl Default for Lstm {
    fn default() -> Self {
        Lstm {
            units: 1,
            return_sequences: false,
            return_state: false,
            use_bias: true,
            activation: Activation::Tanh,
            recurrent_activation: Activation::Sigmoid,
            unit_forget_bias: true,
            dropout: 0.0,
            recurrent_dropout: 0.0,
            stateful: false,
            name: None,
            trainable: true,
        }
    }
}

impl Lstm {
    /// An LSTM with `units` hidden units and Keras' defaults for everything else.
    #[must_use]
    pub fn new(units: usize) -> Self {
        Lstm {
            units,
            ..Lstm::default()
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
    /// Sets `unit_forget_bias`.
    #[must_use]
    pub fn unit_forget_bias(mut self, on: bool) -> Self {
        self.unit_forget_bias = on;
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

    /// Number of weights for input width `d`: `4H(D + H) + 4H` (Keras' count).
    pub fn param_count(&self, d: usize) -> usize {
        let g = 4 * self.units;
        g * (d + self.units) + if self.use_bias { g } else { 0 }
    }

    /// Checks the options, and that the layer's size is sane, before anything is allocated.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the layer and the bad option.
    pub fn validate(&self, name: &str, input_width: usize) -> Result<()> {
        if self.units == 0 {
            return Err(Error::config(format!(
                "layer '{name}' (LSTM): units must be at least 1, got 0"
            )));
        }
        for (what, a) in [
            ("activation", self.activation),
            ("recurrent_activation", self.recurrent_activation),
        ] {
            if !a.is_elementwise() {
                return Err(Error::config(format!(
                    "layer '{name}' (LSTM): {what} '{a}' is not elementwise; use tanh, sigmoid, hard_sigmoid, relu or linear"
                )));
            }
        }
        for (what, r) in [
            ("dropout", self.dropout),
            ("recurrent_dropout", self.recurrent_dropout),
        ] {
            if !(0.0..1.0).contains(&r) {
                return Err(Error::config(format!(
                    "layer '{name}' (LSTM): {what} must be in [0, 1), got {r}"
                )));
            }
        }
        check_size(
            name,
            "LSTM",
            &[self.units, 4, input_width.max(self.units) + 1],
        )
    }
}

/// A built LSTM layer: the spec plus weights (Keras layout).
#[derive(Debug, Clone)]
pub struct LstmLayer {
    spec: Lstm,
    name: String,
    /// Input width `D`.
    input_width: usize,
    /// `[D, 4H]`, gate blocks i, f, c, o.
    kernel: Vec<f32>,
    /// `[H, 4H]`.
    recurrent_kernel: Vec<f32>,
    /// `[4H]`; empty when `use_bias` is false.
    bias: Vec<f32>,
    /// Keras shapes of `kernel`, `recurrent_kernel`, `bias`.
    shapes: ([usize; 2], [usize; 2], [usize; 1]),
}

impl LayerConfig for Lstm {
    config_identity!("LSTM", "lstm", trainable);
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
            "LSTM",
            "LstmLayer",
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
        let g = 4 * self.units;
        let mut w = vec![
            ("kernel", vec![input_width, g]),
            ("recurrent_kernel", vec![self.units, g]),
        ];
        if self.use_bias {
            w.push(("bias", vec![g]));
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
        Ok(Box::new(LstmLayer::build_with(
            self.clone(),
            name,
            input.width,
            rng,
            init,
        )?))
    }
}

/// The activations an LSTM runs (elementwise: not softmax).
const ACTIVATIONS: &[Activation] = &[
    Activation::Tanh,
    Activation::Sigmoid,
    Activation::HardSigmoid,
    Activation::Relu,
    Activation::Linear,
];

impl FromKeras for Lstm {
    const KERAS_SUPPORT: &'static str = "LSTM (activations tanh, sigmoid, hard_sigmoid, relu, \
        linear; no go_backwards, time_major, return_state, regularizers, constraints)";

    fn from_keras(cfg: &mut KerasConfig<'_>) -> Self {
        cfg.dtype();
        cfg.forbid_true("go_backwards");
        cfg.forbid_true("time_major");
        // A Sequential passes one tensor between layers: the final state has nowhere to go.
        cfg.forbid_true("return_state");
        cfg.forbid_set(REGULARIZERS);
        cfg.forbid_set(&["recurrent_regularizer", "recurrent_constraint"]);
        Lstm::new(cfg.dim("units"))
            .name(cfg.name())
            .return_sequences(cfg.bool("return_sequences", false))
            .activation(cfg.activation("activation", Activation::Tanh, ACTIVATIONS))
            .recurrent_activation(cfg.activation(
                "recurrent_activation",
                Activation::Sigmoid,
                ACTIVATIONS,
            ))
            .use_bias(cfg.bool("use_bias", true))
            .unit_forget_bias(cfg.bool("unit_forget_bias", true))
            .dropout(cfg.rate("dropout"))
            .recurrent_dropout(cfg.rate("recurrent_dropout"))
            .stateful(cfg.bool("stateful", false))
            .trainable(cfg.bool("trainable", true))
    }
}

/// What forward keeps for backward, and backward's scratch. Reused across calls.
#[derive(Debug, Default, Clone)]
pub struct LstmCache {
    /// Timesteps and batch of the last forward.
    pub(crate) t: usize,
    pub(crate) b: usize,
    /// `[T, B, 4H]`: post-activation gates i, f, g, o after forward; backward overwrites
    /// them with the gradient w.r.t. the pre-activations (`dgates`), step by step.
    gates: Vec<f32>,
    /// `[T+1, B, H]`: h[-1] = h0, then h[0..T].
    hs: Vec<f32>,
    /// `[T+1, B, H]`: c[-1] = c0, then c[0..T].
    cs: Vec<f32>,
    /// `[T, B, H]`: φ(c[t]).
    phi_c: Vec<f32>,
    /// `[B, H]`: gradient reaching h of the current step; after backward, d h0.
    pub(crate) dh: Vec<f32>,
    /// `[B, H]`: gradient reaching c of the current step; after backward, d c0.
    pub(crate) dc: Vec<f32>,
    /// `[B, D]`: input dropout mask (0 or 1/(1-rate)), the same for every timestep; empty
    /// when off.
    pub(crate) in_mask: Vec<f32>,
    /// `[B, H]`: recurrent dropout mask applied to h[t-1]; empty when off.
    pub(crate) rec_mask: Vec<f32>,
    /// `[T, B, D]`: the masked input (only with an input mask).
    xm: Vec<f32>,
    /// `[T, B, H]`: the masked h[t-1] of every step (only with a recurrent mask).
    hm: Vec<f32>,
    /// `[T, B]`: the step mask of the last forward (true keeps the step); empty without.
    pub(crate) steps: Vec<bool>,
    /// Backward scratch: the masked rows' `dh` and `dc` of the current step.
    held: (Vec<f32>, Vec<f32>),
}

impl LstmCache {
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
    /// Final cell state `[B, H]` of the last forward.
    pub(crate) fn c_last(&self, units: usize) -> &[f32] {
        let n = self.b * units;
        &self.cs[self.t * n..(self.t + 1) * n]
    }
}

/// Output of [`LstmLayer::call`].
#[derive(Debug, Clone)]
pub struct LstmOutput {
    /// `[B, H]`, or `[B, T, H]` with `return_sequences`.
    pub output: ArrayD<f32>,
    /// Final hidden state `[B, H]`.
    pub h: Array2<f32>,
    /// Final cell state `[B, H]`.
    pub c: Array2<f32>,
}

fn resize(v: &mut Vec<f32>, n: usize) {
    v.clear();
    v.resize(n, 0.0);
}

impl LstmLayer {
    /// Builds the layer with Keras' default initialisers: `glorot_uniform` kernel,
    /// `orthogonal` recurrent kernel, zero bias with the forget block at 1 when
    /// `unit_forget_bias`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] from [`Lstm::validate`].
    pub fn build(spec: Lstm, name: String, input_width: usize, rng: &mut Rng) -> Result<Self> {
        Self::build_with(spec, name, input_width, rng, true)
    }

    /// [`build`](Self::build); with `init` false the recurrent kernel is left at zero, for a
    /// layer whose weights are about to be set (the orthogonal initialiser costs O(H^3)).
    pub(crate) fn build_with(
        spec: Lstm,
        name: String,
        input_width: usize,
        rng: &mut Rng,
        init: bool,
    ) -> Result<Self> {
        spec.validate(&name, input_width)?;
        let h = spec.units;
        let kernel = glorot_uniform(rng, input_width, 4 * h);
        let recurrent_kernel = if init {
            orthogonal(rng, h, 4 * h)
        } else {
            vec![0.0; h * 4 * h]
        };
        let mut bias = if spec.use_bias {
            vec![0.0; 4 * h]
        } else {
            Vec::new()
        };
        if spec.use_bias && spec.unit_forget_bias {
            bias[GATE_F * h..(GATE_F + 1) * h].fill(1.0);
        }
        let shapes = ([input_width, 4 * h], [h, 4 * h], [4 * h]);
        Ok(LstmLayer {
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
    pub fn spec(&self) -> &Lstm {
        &self.spec
    }

    /// Input width `D`.
    pub fn input_width(&self) -> usize {
        self.input_width
    }

    /// Forward over a time-major input `x` `[T, B, D]` from the initial state
    /// (`h0`, `c0`: `[B, H]` each, zero when `None`). Writes the output (`[T, B, H]` or
    /// `[B, H]`) to `out` and keeps what backward needs in `cache`.
    fn run(
        &self,
        x: &[f32],
        t: usize,
        b: usize,
        state: Option<(&[f32], &[f32])>,
        cache: &mut LstmCache,
        out: &mut Vec<f32>,
    ) {
        self.forward_cached(x, t, b, state, cache);
        out.clear();
        if self.spec.return_sequences {
            out.extend_from_slice(cache.outputs());
        } else {
            out.extend_from_slice(cache.h_last(self.spec.units));
        }
    }

    /// [`run`](Self::run) leaving the output in the cache only (see
    /// [`LstmCache::outputs`] and [`LstmCache::h_last`]): a stack reads the next layer's
    /// input from there instead of a copy.
    fn forward_cached(
        &self,
        x: &[f32],
        t: usize,
        b: usize,
        state: Option<(&[f32], &[f32])>,
        cache: &mut LstmCache,
    ) {
        let (d, h) = (self.input_width, self.spec.units);
        let (h4, bh) = (4 * h, b * h);
        debug_assert_eq!(x.len(), t * b * d);
        cache.t = t;
        cache.b = b;
        // Every element below is written before it is read, so the buffers are only sized
        // (zero-filling them cost 5-9% of an inference call).
        cache.gates.resize(t * b * h4, 0.0);
        cache.hs.resize((t + 1) * bh, 0.0);
        cache.cs.resize((t + 1) * bh, 0.0);
        cache.phi_c.resize(t * bh, 0.0);
        if let Some((h0, c0)) = state {
            cache.hs[..bh].copy_from_slice(h0);
            cache.cs[..bh].copy_from_slice(c0);
        } else {
            cache.hs[..bh].fill(0.0);
            cache.cs[..bh].fill(0.0);
        }
        let bd = b * d;
        if !cache.in_mask.is_empty() {
            // Input dropout: one [B, D] mask for every timestep (Keras semantics).
            cache.xm.clear();
            for xt in x.chunks_exact(bd) {
                cache
                    .xm
                    .extend(xt.iter().zip(&cache.in_mask).map(|(v, m)| v * m));
            }
        }
        let x_used: &[f32] = if cache.in_mask.is_empty() {
            x
        } else {
            &cache.xm
        };
        let rec_drop = !cache.rec_mask.is_empty();
        if rec_drop {
            resize(&mut cache.hm, t * bh);
        }
        // Z = X · kernel: the input projection of every timestep in one GEMM (the bias is
        // added in the gate pass, after the recurrent product, as Keras orders the sum).
        sgemm(
            Trans::No,
            Trans::No,
            t * b,
            h4,
            d,
            1.0,
            x_used,
            d,
            &self.kernel,
            h4,
            0.0,
            &mut cache.gates,
            h4,
        );
        let zero_start = state.is_none();
        for step in 0..t {
            let z = &mut cache.gates[step * b * h4..(step + 1) * b * h4];
            let (h_prev, h_next) = cache.hs.split_at_mut((step + 1) * bh);
            let mut h_prev = &h_prev[step * bh..];
            if rec_drop {
                let hm = &mut cache.hm[step * bh..(step + 1) * bh];
                for ((o, v), m) in hm.iter_mut().zip(h_prev).zip(&cache.rec_mask) {
                    *o = v * m;
                }
                h_prev = hm;
            }
            // Z[t] += h[t-1] · recurrent_kernel (skipped when h[-1] is known to be zero).
            if !(zero_start && step == 0) {
                sgemm(
                    Trans::No,
                    Trans::No,
                    b,
                    h4,
                    h,
                    1.0,
                    h_prev,
                    h,
                    &self.recurrent_kernel,
                    h4,
                    1.0,
                    z,
                    h4,
                );
            }
            let (c_prev, c_next) = cache.cs.split_at_mut((step + 1) * bh);
            gates::forward_step(
                StepForward {
                    gates: z,
                    bias: if self.spec.use_bias { &self.bias } else { &[] },
                    c_prev: &c_prev[step * bh..],
                    c: &mut c_next[..bh],
                    phi_c: &mut cache.phi_c[step * bh..(step + 1) * bh],
                    h: &mut h_next[..bh],
                },
                h,
                self.spec.recurrent_activation,
                self.spec.activation,
            );
            // Masked rows keep h[t-1] and c[t-1] (the output there is the carried h).
            if let Some(keep) = cache.steps.get(step * b..(step + 1) * b) {
                if !step_mask::all_kept(keep) {
                    let (h_before, h_after) = cache.hs.split_at_mut((step + 1) * bh);
                    step_mask::hold(keep, &h_before[step * bh..], &mut h_after[..bh], h);
                    let (c_before, c_after) = cache.cs.split_at_mut((step + 1) * bh);
                    step_mask::hold(keep, &c_before[step * bh..], &mut c_after[..bh], h);
                }
            }
        }
    }

    /// Backward of the last forward. `dy` is the gradient of the output
    /// (`[T, B, H]` or `[B, H]`), `d_final` an optional gradient reaching the final
    /// `(h, c)` directly (returned state, or a stateful successor). Accumulates the weight
    /// gradients into `grads` (`[d kernel, d recurrent_kernel, d bias]`, the last only with
    /// a bias); writes `dx` `[T, B, D]` when asked; leaves `d h0`, `d c0` in `cache.dh`,
    /// `cache.dc`.
    ///
    /// Backward overwrites the cached gates with their gradients: one backward per
    /// forward.
    pub(crate) fn backward_into(
        &self,
        x: &[f32],
        dy: &[f32],
        d_final: Option<(&[f32], &[f32])>,
        cache: &mut LstmCache,
        dx: Option<&mut Vec<f32>>,
        grads: &mut [Vec<f32>],
    ) {
        let (grad_kernel, rest) = grads.split_at_mut(1);
        let (grad_recurrent_kernel, grad_bias) = rest.split_at_mut(1);
        let (grad_kernel, grad_recurrent_kernel) =
            (&mut grad_kernel[0], &mut grad_recurrent_kernel[0]);
        let (d, h) = (self.input_width, self.spec.units);
        let (t, b) = (cache.t, cache.b);
        let (h4, bh) = (4 * h, b * h);
        resize(&mut cache.dh, bh);
        resize(&mut cache.dc, bh);
        if let Some((dh_t, dc_t)) = d_final {
            cache.dh.copy_from_slice(dh_t);
            cache.dc.copy_from_slice(dc_t);
        }
        if !self.spec.return_sequences {
            for (a, g) in cache.dh.iter_mut().zip(dy) {
                *a += g;
            }
        }
        for step in (0..t).rev() {
            if self.spec.return_sequences {
                for (a, g) in cache.dh.iter_mut().zip(&dy[step * bh..(step + 1) * bh]) {
                    *a += g;
                }
            }
            // A row masked at this step passes dh and dc through to the previous step.
            let keep = cache
                .steps
                .get(step * b..(step + 1) * b)
                .filter(|k| !step_mask::all_kept(k));
            if let Some(keep) = keep {
                step_mask::save(keep, &cache.dh, h, &mut cache.held.0);
                step_mask::save(keep, &cache.dc, h, &mut cache.held.1);
            }
            // The gates of this step become dZ[t] in place.
            gates::backward_step(
                StepBackward {
                    gates: &mut cache.gates[step * b * h4..(step + 1) * b * h4],
                    c_prev: &cache.cs[step * bh..(step + 1) * bh],
                    phi_c: &cache.phi_c[step * bh..(step + 1) * bh],
                    dh: &cache.dh,
                    dc: &mut cache.dc,
                },
                h,
                self.spec.recurrent_activation,
                self.spec.activation,
            );
            // dh[t-1] = dZ[t] · recurrent_kernelᵀ (the layer above adds its part next step).
            let rec_drop = !cache.rec_mask.is_empty();
            sgemm(
                Trans::No,
                Trans::Yes,
                b,
                h,
                h4,
                1.0,
                &cache.gates[step * b * h4..(step + 1) * b * h4],
                h4,
                &self.recurrent_kernel,
                h4,
                0.0,
                &mut cache.dh,
                h,
            );
            if rec_drop {
                for (g, m) in cache.dh.iter_mut().zip(&cache.rec_mask) {
                    *g *= m;
                }
            }
            if let Some(keep) = keep {
                let dz = &mut cache.gates[step * b * h4..(step + 1) * b * h4];
                step_mask::zero(keep, dz, h4);
                step_mask::restore(keep, &cache.held.0, &mut cache.dh, h);
                step_mask::restore(keep, &cache.held.1, &mut cache.dc, h);
            }
        }
        let x: &[f32] = if cache.in_mask.is_empty() {
            x
        } else {
            &cache.xm
        };
        let h_prev: &[f32] = if cache.rec_mask.is_empty() {
            &cache.hs[..t * bh]
        } else {
            &cache.hm
        };
        // Weight gradients: one GEMM each over all timesteps.
        sgemm(
            Trans::Yes,
            Trans::No,
            d,
            h4,
            t * b,
            1.0,
            x,
            d,
            &cache.gates,
            h4,
            1.0,
            grad_kernel,
            h4,
        );
        sgemm(
            Trans::Yes,
            Trans::No,
            h,
            h4,
            t * b,
            1.0,
            h_prev,
            h,
            &cache.gates,
            h4,
            1.0,
            grad_recurrent_kernel,
            h4,
        );
        if let Some(grad_bias) = grad_bias.first_mut() {
            for row in cache.gates.chunks_exact(h4) {
                for (g, v) in grad_bias.iter_mut().zip(row) {
                    *g += v;
                }
            }
        }
        if let Some(dx) = dx {
            resize(dx, t * b * d);
            sgemm(
                Trans::No,
                Trans::Yes,
                t * b,
                d,
                h4,
                1.0,
                &cache.gates,
                h4,
                &self.kernel,
                h4,
                0.0,
                dx,
                d,
            );
            if !cache.in_mask.is_empty() {
                for dxt in dx.chunks_exact_mut(b * d) {
                    for (g, m) in dxt.iter_mut().zip(&cache.in_mask) {
                        *g *= m;
                    }
                }
            }
        }
    }

    /// Runs the layer on its own, Keras-style: `x` `[B, T, D]`, optional initial state
    /// `(h0, c0)` `[B, H]` each. Returns the output and the final state (what
    /// `return_state=True` gives in Keras).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for a wrong feature count, state shape or zero timesteps;
    /// [`Error::InvalidInput`] for a non-finite value.
    pub fn call(
        &self,
        x: ArrayView3<'_, f32>,
        initial_state: Option<(ArrayView2<'_, f32>, ArrayView2<'_, f32>)>,
    ) -> Result<LstmOutput> {
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
        let state = match initial_state {
            Some((h0, c0)) => {
                for (what, s) in [("h0", &h0), ("c0", &c0)] {
                    if s.dim() != (b, h) {
                        return Err(Error::ShapeMismatch {
                            layer: format!("{} initial state {what}", self.name),
                            expected: shape_str(&[b, h]),
                            got: shape_str(&[s.dim().0, s.dim().1]),
                        });
                    }
                }
                Some((
                    h0.iter().copied().collect::<Vec<f32>>(),
                    c0.iter().copied().collect::<Vec<f32>>(),
                ))
            }
            None => None,
        };
        let xt = to_time_major(x);
        let mut cache = LstmCache::default();
        let mut out = Vec::new();
        self.run(
            &xt,
            t,
            b,
            state
                .as_ref()
                .map(|(h0, c0)| (h0.as_slice(), c0.as_slice())),
            &mut cache,
            &mut out,
        );
        let output = if self.spec.return_sequences {
            to_batch_major(&out, t, b, h).into_dyn()
        } else {
            ArrayD::from_shape_vec(IxDyn(&[b, h]), out).map_err(|e| Error::input(e.to_string()))?
        };
        let hl = Array2::from_shape_vec((b, h), cache.h_last(h).to_vec())
            .map_err(|e| Error::input(e.to_string()))?;
        let cl = Array2::from_shape_vec((b, h), cache.c_last(h).to_vec())
            .map_err(|e| Error::input(e.to_string()))?;
        Ok(LstmOutput {
            output,
            h: hl,
            c: cl,
        })
    }
}

impl Layer for LstmLayer {
    layer_identity!("LSTM");
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
        Box::<LstmCache>::default()
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
        let st = state.map(|s| (s.tensors[0].as_slice(), s.tensors[1].as_slice()));
        let c: &mut LstmCache = cache_mut(cache);
        c.steps.clear();
        c.steps.extend_from_slice(mask.unwrap_or_default());
        self.forward_cached(x, t, b, st, c);
    }
    fn output<'c>(&self, cache: &'c dyn Cache) -> &'c [f32] {
        let c: &LstmCache = cache_ref(cache);
        if self.spec.return_sequences {
            c.outputs()
        } else {
            c.h_last(self.spec.units)
        }
    }
    fn backward(&self, pass: Backward<'_>) {
        let Some(grads) = pass.grads else {
            unreachable!("an LSTM forms its weight gradients in backward (it never defers them)");
        };
        self.backward_into(pass.x, pass.dy, None, cache_mut(pass.cache), pass.dx, grads);
    }
    /// One mask per sequence (the same for every timestep): input `[B, D]`, then
    /// recurrent `[B, H]`.
    fn draw_masks(&self, rng: &mut Rng, _: usize, b: usize, cache: &mut dyn Cache) {
        let c: &mut LstmCache = cache_mut(cache);
        c.in_mask.clear();
        c.rec_mask.clear();
        if self.spec.dropout > 0.0 {
            draw_mask(rng, self.spec.dropout, b * self.input_width, &mut c.in_mask);
        }
        if self.spec.recurrent_dropout > 0.0 {
            draw_mask(
                rng,
                self.spec.recurrent_dropout,
                b * self.spec.units,
                &mut c.rec_mask,
            );
        }
    }
    fn clear_masks(&self, cache: &mut dyn Cache) {
        let c: &mut LstmCache = cache_mut(cache);
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
        let src: &LstmCache = cache_ref(full);
        let dst: &mut LstmCache = cache_mut(part);
        dst.in_mask.clear();
        dst.rec_mask.clear();
        if !src.in_mask.is_empty() {
            copy_time_major_rows(
                &src.in_mask,
                rows.clone(),
                1,
                b,
                self.input_width,
                &mut dst.in_mask,
            );
        }
        if !src.rec_mask.is_empty() {
            copy_time_major_rows(
                &src.rec_mask,
                rows,
                1,
                b,
                self.spec.units,
                &mut dst.rec_mask,
            );
        }
    }
    fn stateful(&self) -> bool {
        self.spec.stateful
    }
    fn state_widths(&self) -> Vec<usize> {
        vec![self.spec.units; 2]
    }
    fn final_state<'c>(&self, cache: &'c dyn Cache) -> Vec<&'c [f32]> {
        let c: &LstmCache = cache_ref(cache);
        vec![c.h_last(self.spec.units), c.c_last(self.spec.units)]
    }
    /// One ONNX `LSTM` operator (opset 14 definition), through the shared
    /// `export_one_direction` (sequence-major layout, the step mask, stateful layers
    /// refused), with the weights of `LstmLayer::onnx_direction`.
    fn export_onnx(&self, g: &mut dyn OnnxGraph, x: OnnxValue) -> Result<OnnxValue> {
        let spec = &self.spec;
        let what = format!("layer '{}' (LSTM)", self.name);
        let layer = RecurrentExport {
            base: "lstm",
            name: &self.name,
            kind: "LSTM",
            stateful: spec.stateful,
            return_sequences: spec.return_sequences,
            units: spec.units,
            input_width: self.input_width,
            dirs: vec![self.onnx_direction(&what)?],
        };
        export_one_direction(g, x, layer)
    }
}

/// ONNX block `k` (gates i, o, f, c) is Keras block `KERAS_BLOCK_FOR_ONNX[k]` (i, f, c, o).
const KERAS_BLOCK_FOR_ONNX: [usize; 4] = [0, 3, 1, 2];

impl LstmLayer {
    /// The layer as one direction of an ONNX `LSTM` operator: the Keras gate blocks i, f,
    /// c, o reordered to ONNX's i, o, f, c, the kernels transposed to `W [4H, D]` /
    /// `R [4H, H]`, the Keras bias in `Wb` with zeros in `Rb`; activations f = σ,
    /// g = h = φ. `what` names the layer in errors.
    ///
    /// # Errors
    /// [`Error::UnsupportedFormat`] for an activation ONNX's `LSTM` does not run.
    pub(crate) fn onnx_direction(&self, what: &str) -> Result<RecurrentDirection> {
        let spec = &self.spec;
        let f = recurrent_activation(what, "recurrent_activation", spec.recurrent_activation)?;
        let g = recurrent_activation(what, "activation", spec.activation)?;
        let (d, h) = (self.input_width, spec.units);
        let h4 = 4 * h;
        let b = spec.use_bias.then(|| {
            // `B` is `[Wb, Rb]`: the Keras bias, then zeros.
            let mut bb = vec![0.0f32; 2 * h4];
            for (og, &kg) in KERAS_BLOCK_FOR_ONNX.iter().enumerate() {
                bb[og * h..(og + 1) * h].copy_from_slice(&self.bias[kg * h..(kg + 1) * h]);
            }
            bb
        });
        Ok(RecurrentDirection {
            op: "LSTM",
            attrs: Vec::new(),
            w: reorder_transpose(&self.kernel, d, h, &KERAS_BLOCK_FOR_ONNX),
            r: reorder_transpose(&self.recurrent_kernel, h, h, &KERAS_BLOCK_FOR_ONNX),
            b,
            activations: vec![f, g, g],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::test_util::{fd_check, rand_vec};
    use ndarray::Array3;

    /// Scalar loss `L = Σ w ⊙ output + Σ wh ⊙ h_T + Σ wc ⊙ c_T` with fixed random weights,
    /// so every output element and the final state get a distinct gradient.
    struct Probe {
        wy: Vec<f32>,
        wh: Vec<f32>,
        wc: Vec<f32>,
    }

    /// Zero gradients, one buffer per weight.
    fn zero_grads(l: &LstmLayer) -> Vec<Vec<f32>> {
        l.weights()
            .iter()
            .map(|w| vec![0.0; w.values.len()])
            .collect()
    }

    fn setup(spec: Lstm, d: usize, seed: u64) -> LstmLayer {
        let mut rng = Rng::new(seed);
        let mut l = LstmLayer::build(spec, "lstm".into(), d, &mut rng).unwrap();
        // Non-trivial weights (as the fixtures use): uniform in [-0.5, 0.5], bias included.
        for w in [&mut l.kernel, &mut l.recurrent_kernel, &mut l.bias] {
            for v in w.iter_mut() {
                *v = rng.uniform(-0.5, 0.5) as f32;
            }
        }
        l
    }

    fn loss(
        l: &LstmLayer,
        x: &[f32],
        t: usize,
        b: usize,
        st: Option<(&[f32], &[f32])>,
        p: &Probe,
    ) -> f64 {
        let mut cache = LstmCache::default();
        let mut out = Vec::new();
        l.run(x, t, b, st, &mut cache, &mut out);
        let h = l.units();
        let dot = |a: &[f32], w: &[f32]| {
            a.iter()
                .zip(w)
                .map(|(a, w)| f64::from(*a) * f64::from(*w))
                .sum::<f64>()
        };
        dot(&out, &p.wy) + dot(cache.h_last(h), &p.wh) + dot(cache.c_last(h), &p.wc)
    }

    fn check(spec: Lstm, with_state: bool) {
        let (t, b, d) = (4, 3, 2);
        let h = spec.units;
        let seq = spec.return_sequences;
        let l = setup(spec, d, 11);
        let mut rng = Rng::new(12);
        let x = rand_vec(&mut rng, t * b * d, 1.0);
        let h0 = rand_vec(&mut rng, b * h, 0.5);
        let c0 = rand_vec(&mut rng, b * h, 0.5);
        let p = Probe {
            wy: rand_vec(&mut rng, if seq { t * b * h } else { b * h }, 1.0),
            wh: rand_vec(&mut rng, b * h, 1.0),
            wc: rand_vec(&mut rng, b * h, 1.0),
        };
        let st = |h0: &Vec<f32>, c0: &Vec<f32>| -> Option<(Vec<f32>, Vec<f32>)> {
            with_state.then(|| (h0.clone(), c0.clone()))
        };
        // Analytic gradients.
        let mut cache = LstmCache::default();
        let mut out = Vec::new();
        let s0 = st(&h0, &c0);
        l.run(
            &x,
            t,
            b,
            s0.as_ref().map(|(a, c)| (a.as_slice(), c.as_slice())),
            &mut cache,
            &mut out,
        );
        let mut dx = Vec::new();
        let mut g = zero_grads(&l);
        l.backward_into(
            &x,
            &p.wy,
            Some((&p.wh, &p.wc)),
            &mut cache,
            Some(&mut dx),
            &mut g,
        );
        let (dh0, dc0) = (cache.dh.clone(), cache.dc.clone());

        let base = l.clone();
        let eval = |l: &LstmLayer, x: &[f32], h0: &Vec<f32>, c0: &Vec<f32>| {
            let s = st(h0, c0);
            loss(
                l,
                x,
                t,
                b,
                s.as_ref().map(|(a, c)| (a.as_slice(), c.as_slice())),
                &p,
            )
        };
        fd_check("input", &dx, x.len(), |i, e| {
            let mut x2 = x.clone();
            x2[i] += e;
            eval(&base, &x2, &h0, &c0)
        });
        fd_check("kernel", &g[0], base.kernel.len(), |i, e| {
            let mut l2 = base.clone();
            l2.kernel[i] += e;
            eval(&l2, &x, &h0, &c0)
        });
        fd_check(
            "recurrent_kernel",
            &g[1],
            base.recurrent_kernel.len(),
            |i, e| {
                let mut l2 = base.clone();
                l2.recurrent_kernel[i] += e;
                eval(&l2, &x, &h0, &c0)
            },
        );
        if base.spec.use_bias {
            fd_check("bias", &g[2], base.bias.len(), |i, e| {
                let mut l2 = base.clone();
                l2.bias[i] += e;
                eval(&l2, &x, &h0, &c0)
            });
        }
        if with_state {
            fd_check("h0", &dh0, h0.len(), |i, e| {
                let mut h2 = h0.clone();
                h2[i] += e;
                eval(&base, &x, &h2, &c0)
            });
            fd_check("c0", &dc0, c0.len(), |i, e| {
                let mut c2 = c0.clone();
                c2[i] += e;
                eval(&base, &x, &h0, &c2)
            });
        }
    }

    #[test]
    fn gradients_default_activations_last_output() {
        check(Lstm::new(5), false);
    }

    #[test]
    fn gradients_return_sequences_with_initial_state() {
        check(Lstm::new(4).return_sequences(true), true);
    }

    #[test]
    fn gradients_without_bias() {
        check(Lstm::new(3).use_bias(false).return_sequences(true), true);
    }

    #[test]
    fn gradients_every_activation_pair() {
        use Activation::*;
        for (act, rec) in [
            (Tanh, HardSigmoid),
            (Relu, Sigmoid),
            (Sigmoid, Sigmoid),
            (Linear, Tanh),
            (Tanh, Relu),
            (HardSigmoid, Linear),
        ] {
            check(
                Lstm::new(3)
                    .activation(act)
                    .recurrent_activation(rec)
                    .return_sequences(true),
                true,
            );
        }
    }

    #[test]
    fn gradients_with_input_and_recurrent_dropout_masks() {
        let (t, b, d, h) = (4, 2, 3, 3);
        let l = setup(
            Lstm::new(h)
                .return_sequences(true)
                .dropout(0.3)
                .recurrent_dropout(0.3),
            d,
            41,
        );
        let mut rng = Rng::new(42);
        let x = rand_vec(&mut rng, t * b * d, 1.0);
        let w = rand_vec(&mut rng, t * b * h, 1.0);
        let mut in_mask = Vec::new();
        let mut rec_mask = Vec::new();
        crate::layers::dropout::draw_mask(&mut rng, 0.3, b * d, &mut in_mask);
        crate::layers::dropout::draw_mask(&mut rng, 0.3, b * h, &mut rec_mask);
        assert!(
            in_mask.contains(&0.0) && rec_mask.contains(&0.0),
            "masks must drop something"
        );
        let fresh = || LstmCache {
            in_mask: in_mask.clone(),
            rec_mask: rec_mask.clone(),
            ..LstmCache::default()
        };
        let eval = |l: &LstmLayer, x: &[f32]| {
            let mut c = fresh();
            let mut out = Vec::new();
            l.run(x, t, b, None, &mut c, &mut out);
            out.iter()
                .zip(&w)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum::<f64>()
        };
        let mut cache = fresh();
        let mut out = Vec::new();
        l.run(&x, t, b, None, &mut cache, &mut out);
        let mut dx = Vec::new();
        let mut g = zero_grads(&l);
        l.backward_into(&x, &w, None, &mut cache, Some(&mut dx), &mut g);
        let base = l.clone();
        fd_check("input", &dx, x.len(), |i, e| {
            let mut x2 = x.clone();
            x2[i] += e;
            eval(&base, &x2)
        });
        fd_check("kernel", &g[0], base.kernel.len(), |i, e| {
            let mut l2 = base.clone();
            l2.kernel[i] += e;
            eval(&l2, &x)
        });
        fd_check(
            "recurrent_kernel",
            &g[1],
            base.recurrent_kernel.len(),
            |i, e| {
                let mut l2 = base.clone();
                l2.recurrent_kernel[i] += e;
                eval(&l2, &x)
            },
        );
        // A dropped input feature contributes nothing: its gradient is exactly zero.
        for (k, m) in in_mask.iter().enumerate() {
            if *m == 0.0 {
                for step in 0..t {
                    assert_eq!(dx[step * b * d + k], 0.0);
                }
            }
        }
    }

    #[test]
    fn step_by_step_with_carried_state_equals_full_sequence() {
        let (t, b, d, h) = (5, 2, 3, 4);
        let l = setup(Lstm::new(h).return_sequences(true), d, 21);
        let mut rng = Rng::new(22);
        let x = rand_vec(&mut rng, t * b * d, 1.0);
        let dy = rand_vec(&mut rng, t * b * h, 1.0);
        // Full sequence.
        let mut cache = LstmCache::default();
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
        // One step at a time, carrying (h, c) forward.
        let mut caches = vec![LstmCache::default(); t];
        let (mut hc, mut cc) = (vec![0.0; b * h], vec![0.0; b * h]);
        let mut steps_out = Vec::new();
        for s in 0..t {
            let xs = &x[s * b * d..(s + 1) * b * d];
            let mut o = Vec::new();
            l.run(xs, 1, b, Some((&hc, &cc)), &mut caches[s], &mut o);
            hc = caches[s].h_last(h).to_vec();
            cc = caches[s].c_last(h).to_vec();
            steps_out.extend_from_slice(&o);
        }
        for (a, b_) in full.iter().zip(&steps_out) {
            assert!((a - b_).abs() <= 1e-6, "outputs differ: {a} vs {b_}");
        }
        // Backward through the steps in reverse, passing (dh0, dc0) to the previous step.
        let mut g = zero_grads(&l);
        let mut dnext: Option<(Vec<f32>, Vec<f32>)> = None;
        let mut dx_steps = vec![0.0; t * b * d];
        for s in (0..t).rev() {
            let xs = &x[s * b * d..(s + 1) * b * d];
            let mut dxs = Vec::new();
            let dfin = dnext.as_ref().map(|(a, c)| (a.as_slice(), c.as_slice()));
            l.backward_into(
                xs,
                &dy[s * b * h..(s + 1) * b * h],
                dfin,
                &mut caches[s],
                Some(&mut dxs),
                &mut g,
            );
            dx_steps[s * b * d..(s + 1) * b * d].copy_from_slice(&dxs);
            dnext = Some((caches[s].dh.clone(), caches[s].dc.clone()));
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

    #[test]
    fn call_checks_shapes_and_returns_state() {
        let l = setup(Lstm::new(3).return_state(true), 2, 5);
        let x = Array3::<f32>::ones((2, 4, 2));
        let out = l.call(x.view(), None).unwrap();
        assert_eq!(out.output.shape(), &[2, 3]);
        assert_eq!(out.h, out.output.clone().into_dimensionality().unwrap());
        let bad = Array3::<f32>::ones((2, 4, 3));
        let err = l.call(bad.view(), None).unwrap_err().to_string();
        assert!(
            err.contains("[batch, timesteps >= 1, 2]") && err.contains("[2, 4, 3]"),
            "{err}"
        );
        let h0 = Array2::<f32>::zeros((1, 3));
        let err = l
            .call(x.view(), Some((h0.view(), h0.view())))
            .unwrap_err()
            .to_string();
        assert!(err.contains("h0"), "{err}");
        let mut nan = x.clone();
        nan[[1, 2, 0]] = f32::NAN;
        let err = l.call(nan.view(), None).unwrap_err().to_string();
        assert!(err.contains("[1, 2, 0]"), "{err}");
    }

    #[test]
    fn absurd_sizes_are_errors_before_allocation() {
        let mut rng = Rng::new(0);
        let err = LstmLayer::build(Lstm::new(1_000_000_000_000), "lstm".into(), 1, &mut rng)
            .unwrap_err()
            .to_string();
        assert!(err.contains("lstm") && err.contains("too large"), "{err}");
        let err = LstmLayer::build(Lstm::new(0), "lstm".into(), 1, &mut rng)
            .unwrap_err()
            .to_string();
        assert!(err.contains("units must be at least 1"), "{err}");
    }

    #[test]
    fn keras_config_sets_every_option_and_refuses_the_rest() {
        let json = r#"{"name": "lstm_1", "units": 5, "return_sequences": true,
            "activation": "relu", "recurrent_activation": "hard_sigmoid", "use_bias": false,
            "unit_forget_bias": false, "dropout": 0.25, "recurrent_dropout": 0.5,
            "stateful": true, "dtype": "float32", "go_backwards": false,
            "kernel_initializer": {"class_name": "GlorotUniform"}}"#;
        let cfg: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json).unwrap();
        let mut k = KerasConfig::new("LSTM", &cfg);
        let spec = Lstm::from_keras(&mut k);
        assert!(k.problems().is_empty(), "{:?}", k.problems());
        let want = Lstm::new(5)
            .name("lstm_1")
            .return_sequences(true)
            .activation(Activation::Relu)
            .recurrent_activation(Activation::HardSigmoid)
            .use_bias(false)
            .unit_forget_bias(false)
            .dropout(0.25)
            .recurrent_dropout(0.5)
            .stateful(true);
        assert_eq!(spec, want);

        let json = r#"{"name": "l", "units": 2, "go_backwards": true, "time_major": true,
            "return_state": true, "recurrent_constraint": {"class_name": "NonNeg"},
            "activation": "softmax", "dtype": "bfloat16"}"#;
        let cfg: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json).unwrap();
        let mut k = KerasConfig::new("LSTM", &cfg);
        let _ = Lstm::from_keras(&mut k);
        let p = k.into_problems();
        assert!(p.malformed.is_empty(), "{p:?}");
        let all = p.unsupported.join("; ");
        for needle in [
            "go_backwards=true",
            "time_major=true",
            "return_state=true",
            "recurrent_constraint",
            "activation 'softmax'",
            "dtype 'bfloat16'",
        ] {
            assert!(all.contains(needle), "{needle} not in {all}");
        }
    }

    #[test]
    fn onnx_gate_reorder_and_transpose() {
        // D 2, H 1: Keras kernel [2, 4], columns i f c o.
        let k = [1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0];
        let w = reorder_transpose(&k, 2, 1, &KERAS_BLOCK_FOR_ONNX);
        // ONNX W [4, 2], rows i o f c.
        assert_eq!(w, vec![1.0, 10.0, 4.0, 40.0, 2.0, 20.0, 3.0, 30.0]);
    }
}
