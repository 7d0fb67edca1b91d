//! `Sequential`: shape inference, stacking checks, summary, forward and backward over layers.
//!
//! Between layers, activations live in time-major buffers (`[T, B, D]`, or `[B, D]` after
//! an LSTM without `return_sequences`); the conversion from and to the batch-major
//! `[batch, timesteps, features]` of the API happens once, at the model's boundary.

use std::fmt;

use ndarray::{Array3, ArrayD, ArrayView3, ArrayViewD, IxDyn};
use serde::{Deserialize, Serialize};

use crate::error::{shape_str, Error, Result};
use crate::init::Rng;
use crate::layers::dense::{Dense, DenseLayer};
use crate::layers::dropout::{draw_mask, Dropout, DropoutLayer};
use crate::layers::embedding::{Embedding, EmbeddingLayer};
use crate::layers::lstm::{Lstm, LstmCache, LstmLayer};
use crate::layers::{check_finite, to_batch_major, to_time_major};
use crate::loss::Loss;

mod split;

/// The most timesteps or features a model input may declare.
pub const MAX_DIM: usize = 1 << 24;

/// One layer's specification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum LayerSpec {
    /// An LSTM layer.
    Lstm(Lstm),
    /// A Dense layer.
    Dense(Dense),
    /// An Embedding layer (first layer only).
    Embedding(Embedding),
    /// A Dropout layer.
    Dropout(Dropout),
}

impl From<Embedding> for LayerSpec {
    fn from(e: Embedding) -> Self {
        LayerSpec::Embedding(e)
    }
}

impl From<Dropout> for LayerSpec {
    fn from(d: Dropout) -> Self {
        LayerSpec::Dropout(d)
    }
}

impl From<Lstm> for LayerSpec {
    fn from(l: Lstm) -> Self {
        LayerSpec::Lstm(l)
    }
}

impl From<Dense> for LayerSpec {
    fn from(d: Dense) -> Self {
        LayerSpec::Dense(d)
    }
}

impl LayerSpec {
    fn kind(&self) -> &'static str {
        match self {
            LayerSpec::Lstm(_) => "LSTM",
            LayerSpec::Dense(_) => "Dense",
            LayerSpec::Embedding(_) => "Embedding",
            LayerSpec::Dropout(_) => "Dropout",
        }
    }
    fn default_prefix(&self) -> &'static str {
        match self {
            LayerSpec::Lstm(_) => "lstm",
            LayerSpec::Dense(_) => "dense",
            LayerSpec::Embedding(_) => "embedding",
            LayerSpec::Dropout(_) => "dropout",
        }
    }
    fn explicit_name(&self) -> Option<&str> {
        match self {
            LayerSpec::Lstm(l) => l.name.as_deref(),
            LayerSpec::Dense(d) => d.name.as_deref(),
            LayerSpec::Embedding(e) => e.name.as_deref(),
            LayerSpec::Dropout(d) => d.name.as_deref(),
        }
    }
}

/// A model under construction: an input shape and a stack of layer specs.
///
/// # Example
/// ```
/// use stacklstm::{Dense, Lstm, Sequential};
/// let model = Sequential::new()
///     .input_shape(30, 1)                        // timesteps, features
///     .add(Lstm::new(50).return_sequences(true))
///     .add(Lstm::new(50))
///     .add(Dense::new(1))
///     .build()?;
/// assert_eq!(model.param_count(), 10_400 + 20_200 + 51);
/// # Ok::<(), stacklstm::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sequential {
    /// Model name (`sequential` by default).
    pub name: String,
    /// `(timesteps, features)`; `timesteps` is `None` for variable-length input.
    pub input_shape: Option<(Option<usize>, usize)>,
    /// The layers, input side first.
    pub layers: Vec<LayerSpec>,
    /// Seed of the weight initialisers.
    pub seed: u64,
}

impl Default for Sequential {
    fn default() -> Self {
        Sequential::new()
    }
}

impl Sequential {
    /// An empty model named `sequential`, seed 0.
    #[must_use]
    pub fn new() -> Self {
        Sequential {
            name: "sequential".into(),
            input_shape: None,
            layers: Vec::new(),
            seed: 0,
        }
    }
    /// Sets the input shape `(timesteps, features)` of one sample.
    #[must_use]
    pub fn input_shape(mut self, timesteps: usize, features: usize) -> Self {
        self.input_shape = Some((Some(timesteps), features));
        self
    }
    /// Declares a variable number of timesteps with `features` per step.
    #[must_use]
    pub fn input_features(mut self, features: usize) -> Self {
        self.input_shape = Some((None, features));
        self
    }
    /// Appends a layer.
    #[must_use]
    #[allow(clippy::should_implement_trait)] // Keras' `model.add(layer)`.
    pub fn add(mut self, layer: impl Into<LayerSpec>) -> Self {
        self.layers.push(layer.into());
        self
    }
    /// Sets the seed of the weight initialisers.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Sets the model name.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Checks the stack, infers every shape and initialises the weights from the seed.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`]: no input shape, no layers, a zero or absurd size, an LSTM
    /// stacked after a layer with 2-D output (the message names both layers and says to
    /// set `return_sequences(true)`), `return_state` inside a `Sequential`, duplicate names.
    pub fn build(&self) -> Result<Model> {
        self.build_impl(true)
    }

    /// [`build`](Self::build); `init` false skips the initialisers that cost more than
    /// O(weights), for a model whose weights are set right after.
    fn build_impl(&self, init: bool) -> Result<Model> {
        let (timesteps, features) = self.input_shape.ok_or_else(|| {
            Error::config(
                "the model has no input shape: call .input_shape(timesteps, features) before .build()",
            )
        })?;
        if features == 0 || features > MAX_DIM {
            return Err(Error::config(format!(
                "input features must be in 1..={MAX_DIM}, got {features}"
            )));
        }
        if matches!(timesteps, Some(t) if t == 0 || t > MAX_DIM) {
            return Err(Error::config(format!(
                "input timesteps must be in 1..={MAX_DIM}, got {}",
                timesteps.unwrap_or(0)
            )));
        }
        if self.layers.is_empty() {
            return Err(Error::config(
                "the model has no layers: add at least one with .add(...)",
            ));
        }
        let names = assign_names(&self.layers)?;
        // The whole model must fit the same budget as one layer (2^31 weights, 8 GiB of f32):
        // a config asking for more is an error here, not an out-of-memory kill later.
        let total: u128 = self
            .weight_shapes()?
            .iter()
            .map(|(_, s)| s.iter().fold(1u128, |a, &d| a.saturating_mul(d as u128)))
            .sum();
        if total > crate::layers::MAX_LAYER_PARAMS {
            return Err(Error::config(format!(
                "the model would have {total} weights, more than the limit of {}; check the units and input width of its layers",
                crate::layers::MAX_LAYER_PARAMS
            )));
        }
        let mut rng = Rng::new(self.seed);
        let mut shape = OutShape {
            seq: true,
            width: features,
        };
        // The layer that produced the current (2-D) output, for the stacking message.
        let mut flat_origin: Option<(String, &'static str, Option<String>)> = None;
        let mut layers = Vec::with_capacity(self.layers.len());
        let mut shapes = Vec::with_capacity(self.layers.len());
        for (idx, (spec, name)) in self.layers.iter().zip(&names).enumerate() {
            match spec {
                LayerSpec::Embedding(e) => {
                    if idx != 0 || features != 1 {
                        return Err(Error::config(format!(
                            "layer '{name}' (Embedding) must be the first layer, on an input of token ids with one feature (input_shape(timesteps, 1)); here it is layer {} on {} features",
                            idx + 1,
                            shape.width
                        )));
                    }
                    let built = EmbeddingLayer::build(e.clone(), name.clone(), &mut rng)?;
                    shape = OutShape {
                        seq: true,
                        width: e.output_dim,
                    };
                    layers.push(Layer::Embedding(built));
                }
                LayerSpec::Dropout(d) => {
                    d.validate(name)?;
                    layers.push(Layer::Dropout(DropoutLayer {
                        spec: d.clone(),
                        name: name.clone(),
                    }));
                }
                LayerSpec::Lstm(l) => {
                    if !shape.seq {
                        let (prev, kind, lstm) = flat_origin.clone().unwrap_or_default();
                        let fix = match lstm {
                            Some(src) => format!("set return_sequences(true) on '{src}'"),
                            None => "an LSTM needs a sequence; move it before the layers that remove the time axis".into(),
                        };
                        return Err(Error::config(format!(
                            "layer '{name}' (LSTM) needs a 3-D sequence input [batch, timesteps, features], but layer '{prev}' ({kind}) outputs 2-D [batch, {}]: {fix}",
                            shape.width
                        )));
                    }
                    if l.return_state {
                        return Err(Error::config(format!(
                            "layer '{name}' (LSTM): return_state is not available inside a Sequential model, which passes one tensor between layers; call the layer directly (LstmLayer::call) to get the final state"
                        )));
                    }
                    let built = LstmLayer::build_with(
                        l.clone(),
                        name.clone(),
                        shape.width,
                        &mut rng,
                        init,
                    )?;
                    shape = OutShape {
                        seq: l.return_sequences,
                        width: l.units,
                    };
                    if !l.return_sequences {
                        flat_origin = Some((name.clone(), "LSTM", Some(name.clone())));
                    }
                    layers.push(Layer::Lstm(built));
                }
                LayerSpec::Dense(d) => {
                    let built = DenseLayer::build(d.clone(), name.clone(), shape.width, &mut rng)?;
                    shape = OutShape {
                        seq: shape.seq,
                        width: d.units,
                    };
                    if !shape.seq {
                        let src = flat_origin.and_then(|f| f.2);
                        flat_origin = Some((name.clone(), "Dense", src));
                    }
                    layers.push(Layer::Dense(built));
                }
            }
            shapes.push(shape);
        }
        let n = layers.len();
        Ok(Model {
            spec: self.clone(),
            timesteps,
            features,
            layers,
            shapes,
            ws: Workspace::default(),
            predict_ws: PredictBuffers::default(),
            compiled: None,
            rng: Rng::new(self.seed ^ 0x5EED_D20F_0A1E_0001),
            states: vec![None; n],
        })
    }
}

impl Sequential {
    /// The layer names `build` will use: explicit names, else Keras-style defaults (`lstm`,
    /// `lstm_1`, ..., `dense`, ...).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an empty or duplicate name.
    pub fn layer_names(&self) -> Result<Vec<String>> {
        assign_names(&self.layers)
    }

    /// The weight tensors a model built from this spec has, as `("layer/weight", shape)` in
    /// Keras `get_weights()` order, computed without building (nothing is allocated), so a
    /// loader can check a file's tensors against its config first.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`]: no input shape, an absurd size (`units = 10^12`), a bad
    /// option or name. Stacking errors are left to [`build`](Self::build).
    pub fn weight_shapes(&self) -> Result<Vec<(String, Vec<usize>)>> {
        let (timesteps, features) = self
            .input_shape
            .ok_or_else(|| Error::config("the model has no input shape"))?;
        if features == 0
            || features > MAX_DIM
            || matches!(timesteps, Some(t) if t == 0 || t > MAX_DIM)
        {
            return Err(Error::config(format!(
                "input shape ({timesteps:?}, {features}) is out of range 1..={MAX_DIM}"
            )));
        }
        let names = assign_names(&self.layers)?;
        let mut width = features;
        let mut out = Vec::new();
        for (spec, name) in self.layers.iter().zip(&names) {
            match spec {
                LayerSpec::Lstm(l) => {
                    l.validate(name, width)?;
                    let g = 4 * l.units;
                    out.push((format!("{name}/kernel"), vec![width, g]));
                    out.push((format!("{name}/recurrent_kernel"), vec![l.units, g]));
                    if l.use_bias {
                        out.push((format!("{name}/bias"), vec![g]));
                    }
                    width = l.units;
                }
                LayerSpec::Dense(d) => {
                    d.validate(name, width)?;
                    out.push((format!("{name}/kernel"), vec![width, d.units]));
                    if d.use_bias {
                        out.push((format!("{name}/bias"), vec![d.units]));
                    }
                    width = d.units;
                }
                LayerSpec::Embedding(e) => {
                    e.validate(name)?;
                    out.push((
                        format!("{name}/embeddings"),
                        vec![e.input_dim, e.output_dim],
                    ));
                    width = e.output_dim;
                }
                LayerSpec::Dropout(d) => d.validate(name)?,
            }
        }
        Ok(out)
    }

    /// Builds the model and sets its weights (Keras `get_weights()` order): how a model is
    /// restored from a file.
    ///
    /// # Errors
    /// As [`build`](Self::build) and [`Model::set_weights`].
    pub fn build_with_weights(&self, weights: &[ArrayD<f32>]) -> Result<Model> {
        let mut model = self.build_impl(false)?;
        model.set_weights(weights)?;
        Ok(model)
    }
}

fn assign_names(specs: &[LayerSpec]) -> Result<Vec<String>> {
    let mut names: Vec<String> = Vec::with_capacity(specs.len());
    let mut counts = std::collections::HashMap::new();
    for s in specs {
        let name = match s.explicit_name() {
            Some(n) => n.to_string(),
            None => loop {
                let k = counts.entry(s.default_prefix()).or_insert(0usize);
                let candidate = if *k == 0 {
                    s.default_prefix().to_string()
                } else {
                    format!("{}_{}", s.default_prefix(), k)
                };
                *k += 1;
                if !specs
                    .iter()
                    .any(|o| o.explicit_name() == Some(candidate.as_str()))
                {
                    break candidate;
                }
            },
        };
        if name.is_empty() {
            return Err(Error::config(format!(
                "a {} layer has an empty name",
                s.kind()
            )));
        }
        if names.contains(&name) {
            return Err(Error::config(format!(
                "two layers are named '{name}'; layer names must be unique"
            )));
        }
        names.push(name);
    }
    Ok(names)
}

/// Output of one layer, per sample: a sequence `[T, width]` or a vector `[width]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutShape {
    /// Whether the output keeps the time axis.
    pub seq: bool,
    /// Last-axis width.
    pub width: usize,
}

/// A built layer.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Layer {
    /// A built LSTM.
    Lstm(LstmLayer),
    /// A built Dense.
    Dense(DenseLayer),
    /// A built Embedding.
    Embedding(EmbeddingLayer),
    /// A Dropout layer.
    Dropout(DropoutLayer),
}

impl Layer {
    /// The layer's name.
    pub fn name(&self) -> &str {
        match self {
            Layer::Lstm(l) => &l.name,
            Layer::Dense(d) => &d.name,
            Layer::Embedding(e) => &e.name,
            Layer::Dropout(d) => &d.name,
        }
    }
    /// Keras class name.
    pub fn kind(&self) -> &'static str {
        match self {
            Layer::Lstm(_) => "LSTM",
            Layer::Dense(_) => "Dense",
            Layer::Embedding(_) => "Embedding",
            Layer::Dropout(_) => "Dropout",
        }
    }
    /// Weights in Keras order with their names and shapes.
    pub fn weights(&self) -> Vec<(&'static str, Vec<usize>, &[f32])> {
        match self {
            Layer::Lstm(l) => l.weights(),
            Layer::Dense(d) => d.weights(),
            Layer::Embedding(e) => vec![(
                "embeddings",
                vec![e.spec.input_dim, e.spec.output_dim],
                e.embeddings.as_slice(),
            )],
            Layer::Dropout(_) => Vec::new(),
        }
    }
    /// Gradients, in the order of [`weights`](Self::weights).
    pub fn gradients(&self) -> Vec<&[f32]> {
        match self {
            Layer::Lstm(x) => {
                let mut g = vec![x.grad_kernel.as_slice(), x.grad_recurrent_kernel.as_slice()];
                if x.spec.use_bias {
                    g.push(x.grad_bias.as_slice());
                }
                g
            }
            Layer::Dense(x) => {
                let mut g = vec![x.grad_kernel.as_slice()];
                if x.spec.use_bias {
                    g.push(x.grad_bias.as_slice());
                }
                g
            }
            Layer::Embedding(e) => vec![e.grad_embeddings.as_slice()],
            Layer::Dropout(_) => Vec::new(),
        }
    }
    fn params_mut(&mut self) -> Vec<(&'static str, &mut Vec<f32>, &mut Vec<f32>)> {
        match self {
            Layer::Lstm(l) => {
                let mut v = vec![
                    ("kernel", &mut l.kernel, &mut l.grad_kernel),
                    (
                        "recurrent_kernel",
                        &mut l.recurrent_kernel,
                        &mut l.grad_recurrent_kernel,
                    ),
                ];
                if l.spec.use_bias {
                    v.push(("bias", &mut l.bias, &mut l.grad_bias));
                }
                v
            }
            Layer::Dense(d) => {
                let mut v = vec![("kernel", &mut d.kernel, &mut d.grad_kernel)];
                if d.spec.use_bias {
                    v.push(("bias", &mut d.bias, &mut d.grad_bias));
                }
                v
            }
            Layer::Embedding(e) => vec![("embeddings", &mut e.embeddings, &mut e.grad_embeddings)],
            Layer::Dropout(_) => Vec::new(),
        }
    }
    /// Moves the gradients out of the layer (it keeps empty vectors until
    /// [`put_grads`](Self::put_grads)).
    fn take_grads(&mut self) -> LayerGrads {
        use std::mem::take;
        match self {
            Layer::Lstm(l) => LayerGrads::Lstm([
                take(&mut l.grad_kernel),
                take(&mut l.grad_recurrent_kernel),
                take(&mut l.grad_bias),
            ]),
            Layer::Dense(d) => {
                LayerGrads::Dense([take(&mut d.grad_kernel), take(&mut d.grad_bias)])
            }
            Layer::Embedding(e) => LayerGrads::Embedding(take(&mut e.grad_embeddings)),
            Layer::Dropout(_) => LayerGrads::None,
        }
    }
    /// Gives back what [`take_grads`](Self::take_grads) took.
    fn put_grads(&mut self, g: LayerGrads) {
        match (self, g) {
            (Layer::Lstm(l), LayerGrads::Lstm([k, r, b])) => {
                (l.grad_kernel, l.grad_recurrent_kernel, l.grad_bias) = (k, r, b);
            }
            (Layer::Dense(d), LayerGrads::Dense([k, b])) => (d.grad_kernel, d.grad_bias) = (k, b),
            (Layer::Embedding(e), LayerGrads::Embedding(t)) => e.grad_embeddings = t,
            _ => {}
        }
    }
    fn zero_grad(&mut self) {
        match self {
            Layer::Lstm(l) => l.zero_grad(),
            Layer::Dense(d) => d.zero_grad(),
            Layer::Embedding(e) => e.zero_grad(),
            Layer::Dropout(_) => {}
        }
    }
    fn param_count(&self) -> usize {
        self.weights().iter().map(|w| w.2.len()).sum()
    }
}

/// The output of layer `i` in the last forward (time-major): an LSTM returning sequences
/// leaves it in its cache (`h` of every step, no copy), every other layer in `outs[i]`.
fn layer_output<'a>(
    layers: &[Layer],
    outs: &'a [Vec<f32>],
    lstm: &'a [LstmCache],
    i: usize,
) -> &'a [f32] {
    match &layers[i] {
        Layer::Lstm(l) if l.spec.return_sequences => lstm[i].outputs(),
        _ => &outs[i],
    }
}

/// One layer's weight gradients, moved out of the layer while backward accumulates into
/// them (so that batch halves can run backward at once on the shared weights).
#[derive(Debug, Clone, Default)]
pub(crate) enum LayerGrads {
    /// d kernel, d recurrent_kernel, d bias.
    Lstm([Vec<f32>; 3]),
    /// d kernel, d bias.
    Dense([Vec<f32>; 2]),
    /// d embeddings.
    Embedding(Vec<f32>),
    /// No weights.
    #[default]
    None,
}

impl LayerGrads {
    /// Every buffer, in a fixed order.
    fn buffers_mut(&mut self) -> Vec<&mut Vec<f32>> {
        match self {
            LayerGrads::Lstm(g) => g.iter_mut().collect(),
            LayerGrads::Dense(g) => g.iter_mut().collect(),
            LayerGrads::Embedding(g) => vec![g],
            LayerGrads::None => Vec::new(),
        }
    }
}

/// One trainable tensor with its gradient, for optimizers.
#[derive(Debug)]
pub struct ParamMut<'a> {
    /// `layer/weight`, e.g. `lstm_1/recurrent_kernel`.
    pub name: String,
    /// The weights (flat, row-major).
    pub value: &'a mut [f32],
    /// The accumulated gradient, same layout.
    pub grad: &'a mut [f32],
}

/// Per-layer buffers reused across calls.
#[derive(Debug, Default, Clone)]
pub struct Workspace {
    t: usize,
    b: usize,
    x: Vec<f32>,
    outs: Vec<Vec<f32>>,
    lstm: Vec<LstmCache>,
    /// d loss / d output of the last layer (time-major).
    dy: Vec<f32>,
    grad_a: Vec<f32>,
    grad_b: Vec<f32>,
    scratch: Vec<f32>,
    /// Per layer: the Dropout layer's mask (empty when not training).
    masks: Vec<Vec<f32>>,
    /// The target of the last loss, time-major (what the output rows are compared with).
    pub(crate) target: Vec<f32>,
    /// Buffers of the two batch halves when a call is split over threads.
    halves: Vec<Workspace>,
    /// Whether the last call ran in `halves` (its outputs and states are there).
    split: bool,
    /// Whether the caches hold a forward that backward has not consumed yet (backward
    /// overwrites the LSTM gates with their gradients).
    fresh: bool,
    /// The second half's weight gradients when a training step is split.
    half_grads: Vec<LayerGrads>,
}

/// The buffers [`Model::predict`] keeps between calls (behind a lock, since `predict`
/// takes `&self`; a clone of the model starts with none).
#[derive(Debug, Default)]
struct PredictBuffers(std::sync::Mutex<Workspace>);

impl Clone for PredictBuffers {
    fn clone(&self) -> Self {
        PredictBuffers::default()
    }
}

/// Batches of up to this many `timesteps x samples` rows keep their buffers for the next
/// `predict` (a one-off huge batch does not pin its memory to the model).
const PREDICT_KEEP_ROWS: usize = 1 << 16;

/// A built model: layers with weights, ready for predict and training.
#[derive(Debug, Clone)]
pub struct Model {
    spec: Sequential,
    timesteps: Option<usize>,
    features: usize,
    layers: Vec<Layer>,
    shapes: Vec<OutShape>,
    pub(crate) ws: Workspace,
    /// Buffers `predict` reuses from call to call.
    predict_ws: PredictBuffers,
    /// Loss and optimizer, once compiled.
    pub(crate) compiled: Option<crate::train::Compiled>,
    /// Training randomness (dropout masks).
    pub(crate) rng: Rng,
    /// Per layer: the carried `(h, c)` of a stateful LSTM.
    pub(crate) states: Vec<Option<(Vec<f32>, Vec<f32>)>>,
}

impl Model {
    /// The spec this model was built from.
    pub fn spec(&self) -> &Sequential {
        &self.spec
    }
    /// The built layers, input side first.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }
    /// Mutable access to the built layers (to set weights by hand).
    pub fn layers_mut(&mut self) -> &mut [Layer] {
        &mut self.layers
    }
    /// `(timesteps, features)` of one input sample.
    pub fn input_shape(&self) -> (Option<usize>, usize) {
        (self.timesteps, self.features)
    }
    /// Output shape of one sample of the model's last layer.
    pub fn output_shape(&self) -> OutShape {
        self.shapes[self.shapes.len() - 1]
    }
    /// Total number of weights.
    pub fn param_count(&self) -> usize {
        self.layers.iter().map(Layer::param_count).sum()
    }

    /// Every weight tensor, in Keras `model.get_weights()` order.
    pub fn get_weights(&self) -> Vec<ArrayD<f32>> {
        let mut out = Vec::new();
        for l in &self.layers {
            for (_, shape, data) in l.weights() {
                // Shapes come from the built layer, so they always match the data.
                if let Ok(a) = ArrayD::from_shape_vec(IxDyn(&shape), data.to_vec()) {
                    out.push(a);
                }
            }
        }
        out
    }

    /// Replaces every weight, in Keras `model.set_weights()` order.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] naming the layer and weight whose shape differs, or a count
    /// mismatch; nothing is changed unless every shape fits.
    pub fn set_weights(&mut self, weights: &[ArrayD<f32>]) -> Result<()> {
        let expected: Vec<(String, Vec<usize>)> = self
            .layers
            .iter()
            .flat_map(|l| {
                l.weights()
                    .into_iter()
                    .map(|(n, s, _)| (format!("{}/{}", l.name(), n), s))
                    .collect::<Vec<_>>()
            })
            .collect();
        if weights.len() != expected.len() {
            return Err(Error::input(format!(
                "set_weights: the model has {} weight tensors, got {}",
                expected.len(),
                weights.len()
            )));
        }
        for ((name, shape), w) in expected.iter().zip(weights) {
            if w.shape() != shape.as_slice() {
                return Err(Error::ShapeMismatch {
                    layer: name.clone(),
                    expected: shape_str(shape),
                    got: shape_str(w.shape()),
                });
            }
            if let Some(v) = w.iter().find(|v| !v.is_finite()) {
                return Err(Error::input(format!(
                    "set_weights: {name} holds a non-finite value {v}"
                )));
            }
        }
        let mut it = weights.iter();
        for l in &mut self.layers {
            for (_, value, _) in l.params_mut() {
                if let Some(w) = it.next() {
                    value.clear();
                    value.extend(w.iter().copied());
                }
            }
        }
        Ok(())
    }

    /// Every trainable tensor with its gradient.
    pub fn params_mut(&mut self) -> Vec<ParamMut<'_>> {
        let mut out = Vec::new();
        for l in &mut self.layers {
            let lname = l.name().to_string();
            for (n, v, g) in l.params_mut() {
                out.push(ParamMut {
                    name: format!("{lname}/{n}"),
                    value: v.as_mut_slice(),
                    grad: g.as_mut_slice(),
                });
            }
        }
        out
    }

    /// Every gradient, in the order of [`get_weights`](Self::get_weights).
    pub fn get_gradients(&self) -> Vec<ArrayD<f32>> {
        let mut out = Vec::new();
        for l in &self.layers {
            for ((_, shape, _), g) in l.weights().into_iter().zip(l.gradients()) {
                if let Ok(a) = ArrayD::from_shape_vec(IxDyn(&shape), g.to_vec()) {
                    out.push(a);
                }
            }
        }
        out
    }

    /// Sets every gradient to zero.
    pub fn zero_grad(&mut self) {
        for l in &mut self.layers {
            l.zero_grad();
        }
    }

    /// Checks an input batch against the model's input shape (and token ids against the
    /// vocabulary, and the batch size against carried stateful state).
    pub(crate) fn check_input(&self, x: ArrayView3<'_, f32>) -> Result<()> {
        let (b, t, f) = x.dim();
        let bad_t = t == 0 || self.timesteps.is_some_and(|want| want != t);
        if f != self.features || bad_t {
            let ts = self
                .timesteps
                .map_or_else(|| "timesteps >= 1".to_string(), |t| t.to_string());
            return Err(Error::ShapeMismatch {
                layer: format!("model '{}' input", self.spec.name),
                expected: format!("[batch, {ts}, {}]", self.features),
                got: shape_str(&[b, t, f]),
            });
        }
        check_finite(x, &format!("model '{}'", self.spec.name))?;
        if let Some(Layer::Embedding(e)) = self.layers.first() {
            e.check_ids(x.iter().copied())?;
        }
        for (l, st) in self.layers.iter().zip(&self.states) {
            if let (Layer::Lstm(l), Some((h, _))) = (l, st) {
                if h.len() != b * l.units() {
                    return Err(Error::ShapeMismatch {
                        layer: format!("stateful layer '{}'", l.name),
                        expected: format!("batch {} (the batch its state was carried from; call reset_states() to start over)", h.len() / l.units()),
                        got: format!("batch {b}"),
                    });
                }
            }
        }
        Ok(())
    }

    /// Draws the dropout masks of one training batch (one mask per sequence for LSTM
    /// `dropout`/`recurrent_dropout`, one per element for Dropout layers), or clears them.
    pub(crate) fn prepare_masks(&mut self, training: bool) {
        let (t, b) = (self.ws.t, self.ws.b);
        let ws = &mut self.ws;
        ws.lstm.resize_with(self.layers.len(), LstmCache::default);
        ws.masks.resize_with(self.layers.len(), Vec::new);
        let mut seq = true;
        let mut width = self.features;
        for (i, layer) in self.layers.iter().enumerate() {
            match layer {
                Layer::Lstm(l) => {
                    let c = &mut ws.lstm[i];
                    c.in_mask.clear();
                    c.rec_mask.clear();
                    if training && l.spec.dropout > 0.0 {
                        draw_mask(
                            &mut self.rng,
                            l.spec.dropout,
                            b * l.input_width,
                            &mut c.in_mask,
                        );
                    }
                    if training && l.spec.recurrent_dropout > 0.0 {
                        draw_mask(
                            &mut self.rng,
                            l.spec.recurrent_dropout,
                            b * l.units(),
                            &mut c.rec_mask,
                        );
                    }
                    seq = l.spec.return_sequences;
                }
                Layer::Dropout(d) => {
                    ws.masks[i].clear();
                    if training && d.spec.rate > 0.0 {
                        let rows = if seq { t * b } else { b };
                        draw_mask(&mut self.rng, d.spec.rate, rows * width, &mut ws.masks[i]);
                    }
                }
                Layer::Dense(_) | Layer::Embedding(_) => {}
            }
            width = self.shapes[i].width;
        }
    }

    /// Runs every layer over the time-major input in `ws.x`, starting stateful LSTMs from
    /// `states`. Masks prepared in `ws` are applied (none at inference).
    fn forward_ws(&self, ws: &mut Workspace, states: &[Option<(Vec<f32>, Vec<f32>)>]) {
        let (t, b) = (ws.t, ws.b);
        ws.fresh = true;
        ws.outs.resize_with(self.layers.len(), Vec::new);
        ws.lstm.resize_with(self.layers.len(), LstmCache::default);
        ws.masks.resize_with(self.layers.len(), Vec::new);
        let mut seq = true;
        for (i, layer) in self.layers.iter().enumerate() {
            let (before, rest) = ws.outs.split_at_mut(i);
            let (caches_before, caches_rest) = ws.lstm.split_at_mut(i);
            let input: &[f32] = if i == 0 {
                &ws.x
            } else {
                layer_output(&self.layers, before, caches_before, i - 1)
            };
            let out = &mut rest[0];
            match layer {
                Layer::Lstm(l) => {
                    let st = states
                        .get(i)
                        .and_then(|s| s.as_ref())
                        .map(|(h, c)| (h.as_slice(), c.as_slice()));
                    if l.spec.return_sequences {
                        // The output stays in the cache (`layer_output`).
                        l.forward_cached(input, t, b, st, &mut caches_rest[0]);
                        if out.capacity() > 0 {
                            *out = Vec::new();
                        }
                    } else {
                        l.forward(input, t, b, st, &mut caches_rest[0], out);
                    }
                    seq = l.spec.return_sequences;
                }
                Layer::Dense(d) => {
                    let rows = if seq { t * b } else { b };
                    d.forward(input, rows, out);
                }
                Layer::Embedding(e) => e.forward(input, out),
                Layer::Dropout(_) => {
                    out.clear();
                    let m = &ws.masks[i];
                    if m.is_empty() {
                        out.extend_from_slice(input);
                    } else {
                        out.extend(input.iter().zip(m).map(|(v, k)| v * k));
                    }
                }
            }
        }
    }

    /// Stores the final `(h, c)` of every stateful LSTM after a forward.
    pub(crate) fn carry_states(&mut self) {
        let parts: &[Workspace] = if self.ws.split {
            &self.ws.halves
        } else {
            std::slice::from_ref(&self.ws)
        };
        for (i, l) in self.layers.iter().enumerate() {
            if let Layer::Lstm(l) = l {
                if l.spec.stateful {
                    let mut h = Vec::new();
                    let mut c = Vec::new();
                    for ws in parts {
                        h.extend_from_slice(ws.lstm[i].h_last(l.units()));
                        c.extend_from_slice(ws.lstm[i].c_last(l.units()));
                    }
                    self.states[i] = Some((h, c));
                }
            }
        }
    }

    /// Forgets the carried state of every stateful LSTM (the next batch starts from zero).
    pub fn reset_states(&mut self) {
        self.states.iter_mut().for_each(|s| *s = None);
    }

    /// Output buffer of the last forward to an array `[B, U]` or `[B, T, U]`.
    fn output_array(&self, ws: &Workspace) -> ArrayD<f32> {
        let (t, b) = (ws.t, ws.b);
        let s = self.output_shape();
        let out = layer_output(&self.layers, &ws.outs, &ws.lstm, self.layers.len() - 1);
        if s.seq {
            to_batch_major(out, t, b, s.width).into_dyn()
        } else {
            ArrayD::from_shape_fn(IxDyn(&[b, s.width]), |ix| out[ix[0] * s.width + ix[1]])
        }
    }

    fn load_input(&self, x: ArrayView3<'_, f32>, ws: &mut Workspace) -> Result<()> {
        self.check_input(x)?;
        let (b, t, _) = x.dim();
        ws.t = t;
        ws.b = b;
        ws.x = to_time_major(x);
        Ok(())
    }

    /// Runs the model on `x` `[batch, timesteps, features]` (inference: dropout off).
    /// Stateful LSTMs start from their carried state, which is left unchanged (see
    /// [`predict_on_batch`](Self::predict_on_batch) to carry it on).
    ///
    /// # Shapes
    /// Output `[batch, units]`, or `[batch, timesteps, units]` when the last LSTM returns
    /// sequences.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for a wrong feature count or timesteps, and
    /// [`Error::InvalidInput`] for a NaN or infinite value (with its position) or a token id
    /// outside the vocabulary.
    pub fn predict(&self, x: &Array3<f32>) -> Result<ArrayD<f32>> {
        let (b, t, _) = x.dim();
        // Reuse the buffers of the last call unless another thread is predicting with them.
        if b * t <= PREDICT_KEEP_ROWS {
            if let Ok(mut ws) = self.predict_ws.0.try_lock() {
                return self.predict_with(x.view(), &mut ws);
            }
        }
        self.predict_with(x.view(), &mut Workspace::default())
    }

    /// [`predict`](Self::predict) reusing the buffers of `ws` (no allocation once warm).
    ///
    /// # Errors
    /// As [`predict`](Self::predict).
    pub fn predict_with(&self, x: ArrayView3<'_, f32>, ws: &mut Workspace) -> Result<ArrayD<f32>> {
        if self.split_batch(x.dim().0, x.dim().1) {
            return self.predict_halves(x, ws);
        }
        self.load_input(x, ws)?;
        ws.split = false;
        ws.masks.iter_mut().for_each(Vec::clear);
        for c in &mut ws.lstm {
            c.in_mask.clear();
            c.rec_mask.clear();
        }
        self.forward_ws(ws, &self.states);
        Ok(self.output_array(ws))
    }

    /// Inference on one batch that carries the state of stateful LSTMs on to the next call
    /// (Keras `predict_on_batch` on a stateful model), e.g. to generate step by step.
    ///
    /// # Errors
    /// As [`predict`](Self::predict).
    pub fn predict_on_batch(&mut self, x: ArrayView3<'_, f32>) -> Result<ArrayD<f32>> {
        let mut ws = std::mem::take(&mut self.ws);
        let r = self.predict_with(x, &mut ws);
        self.ws = ws;
        if r.is_ok() {
            self.carry_states();
        }
        r
    }

    /// Forward pass (dropout off) that keeps what [`backward`](Self::backward) needs.
    ///
    /// # Errors
    /// As [`predict`](Self::predict).
    pub fn forward_train(&mut self, x: ArrayView3<'_, f32>) -> Result<ArrayD<f32>> {
        let mut ws = std::mem::take(&mut self.ws);
        ws.split = false;
        let r = self.load_input(x, &mut ws);
        self.ws = ws;
        r?;
        self.prepare_masks(false);
        let mut ws = std::mem::take(&mut self.ws);
        self.forward_ws(&mut ws, &self.states);
        let out = self.output_array(&ws);
        self.ws = ws;
        Ok(out)
    }

    /// Backward of the last [`forward_train`](Self::forward_train): `dy` is the gradient of
    /// the output (same shape). Accumulates into the weight gradients and returns the
    /// gradient of the input `[batch, timesteps, features]` (zero for token ids).
    ///
    /// # Errors
    /// [`Error::State`] without a preceding forward (each forward allows one backward: it
    /// overwrites the cached gates), [`Error::ShapeMismatch`] if `dy` does
    /// not have the output's shape.
    pub fn backward(&mut self, dy: ArrayViewD<'_, f32>) -> Result<Array3<f32>> {
        let s = self.output_shape();
        let (t, b) = (self.ws.t, self.ws.b);
        if self.ws.outs.len() != self.layers.len() || !self.ws.fresh || self.ws.split {
            return Err(Error::State(
                "backward needs a forward_train just before it (one backward per forward)".into(),
            ));
        }
        let want: Vec<usize> = if s.seq {
            vec![b, t, s.width]
        } else {
            vec![b, s.width]
        };
        if dy.shape() != want.as_slice() {
            return Err(Error::ShapeMismatch {
                layer: "backward: output gradient".into(),
                expected: shape_str(&want),
                got: shape_str(dy.shape()),
            });
        }
        let mut ws = std::mem::take(&mut self.ws);
        ws.dy.clear();
        if s.seq {
            for step in 0..t {
                for i in 0..b {
                    for k in 0..s.width {
                        ws.dy.push(dy[[i, step, k]]);
                    }
                }
            }
        } else {
            ws.dy.extend(dy.iter().copied());
        }
        self.backward_ws(&mut ws, true);
        let dx = to_batch_major(&ws.grad_a, t, b, self.features);
        self.ws = ws;
        Ok(dx)
    }

    /// Backward over the layers; `ws.dy` holds d output in, `ws.grad_a` d input out when
    /// `input_grad` (otherwise the first layer skips its `dX` GEMM).
    fn backward_ws(&mut self, ws: &mut Workspace, input_grad: bool) {
        let mut grads: Vec<LayerGrads> = self.layers.iter_mut().map(Layer::take_grads).collect();
        self.backward_layers(ws, input_grad, &mut grads, 0, true);
        for (l, g) in self.layers.iter_mut().zip(grads) {
            l.put_grads(g);
        }
    }

    /// [`backward_ws`](Self::backward_ws) over layers `down_to..`, accumulating the weight
    /// gradients into `grads` (one entry per layer, sized like the weights). With
    /// `down_to > 0`, `ws.grad_a` is left holding d output of layer `down_to - 1`. Without
    /// `head_weights`, a Dense output layer computes only its `dz` and `dx`, and its weight
    /// gradients are left to the caller (`DenseLayer::backward_weights`).
    fn backward_layers(
        &self,
        ws: &mut Workspace,
        input_grad: bool,
        grads: &mut [LayerGrads],
        down_to: usize,
        head_weights: bool,
    ) {
        debug_assert!(ws.fresh, "backward without a forward");
        ws.fresh = false;
        let last = self.layers.len() - 1;
        for i in (down_to..self.layers.len()).rev() {
            let (caches_before, caches_rest) = ws.lstm.split_at_mut(i);
            let input: &[f32] = if i == 0 {
                &ws.x
            } else {
                layer_output(&self.layers, &ws.outs, caches_before, i - 1)
            };
            let want_dx = i > 0 || input_grad;
            let dx = want_dx.then_some(&mut ws.grad_b);
            // The loss gradient has its own buffer, so the ping-pong buffers stay the size
            // of the layers below (a 10,000-wide softmax head does not grow them).
            let dy: &[f32] = if i == last { &ws.dy } else { &ws.grad_a };
            match (&self.layers[i], &mut grads[i]) {
                (Layer::Lstm(l), LayerGrads::Lstm(g)) => {
                    l.backward_into(input, dy, None, &mut caches_rest[0], dx, g);
                }
                (Layer::Dense(d), _) if i == last && !head_weights => {
                    d.backward_data(&ws.outs[i], dy, &mut ws.scratch, dx);
                }
                (Layer::Dense(d), LayerGrads::Dense(g)) => {
                    d.backward_into(input, &ws.outs[i], dy, &mut ws.scratch, dx, g);
                }
                (Layer::Embedding(e), LayerGrads::Embedding(g)) => {
                    e.backward_into(input, dy, g);
                    if let Some(dx) = dx {
                        // Token ids are not differentiable: their gradient is zero.
                        dx.clear();
                        dx.resize(input.len(), 0.0);
                    }
                }
                (Layer::Dropout(_), _) => {
                    if let Some(dx) = dx {
                        dx.clear();
                        let m = &ws.masks[i];
                        if m.is_empty() {
                            dx.extend_from_slice(dy);
                        } else {
                            dx.extend(dy.iter().zip(m).map(|(g, k)| g * k));
                        }
                    }
                }
                _ => debug_assert!(false, "gradient buffers do not match layer {i}"),
            }
            std::mem::swap(&mut ws.grad_a, &mut ws.grad_b);
        }
    }

    /// Zeroes the gradients, runs forward (dropout off), the loss and backward on one batch.
    /// Returns the loss value and the gradient of the input; weight gradients are left in
    /// the layers (see [`get_gradients`](Self::get_gradients)).
    ///
    /// `target` has the output's shape, or for sparse losses the output's shape without
    /// its last axis (class ids).
    ///
    /// # Errors
    /// Shape errors for `x` or `target`, invalid targets (see [`Loss::compute`]).
    pub fn loss_and_gradients(
        &mut self,
        x: ArrayView3<'_, f32>,
        target: ArrayViewD<'_, f32>,
        loss: Loss,
    ) -> Result<(f64, Array3<f32>)> {
        let value = self.loss_step(x, target, loss, false, true)?;
        let dx = to_batch_major(&self.ws.grad_a, self.ws.t, self.ws.b, self.features);
        Ok((value, dx))
    }

    /// One forward + loss + backward over a batch: zeroes the gradients, draws dropout
    /// masks when `training`, leaves the weight gradients in the layers (and d input in
    /// `ws.grad_a` when `input_grad`). Does not touch carried state.
    pub(crate) fn loss_step(
        &mut self,
        x: ArrayView3<'_, f32>,
        target: ArrayViewD<'_, f32>,
        loss: Loss,
        training: bool,
        input_grad: bool,
    ) -> Result<f64> {
        let (b, t, _) = x.dim();
        if !input_grad && self.split_batch(b, t) {
            return self.checked_loss_halves(x, target, loss, training, true);
        }
        self.zero_grad();
        let mut ws = std::mem::take(&mut self.ws);
        ws.split = false;
        let r = self
            .load_input(x, &mut ws)
            .and_then(|()| self.check_target(&ws, &target, loss));
        self.ws = ws;
        r?;
        self.prepare_masks(training);
        let mut ws = std::mem::take(&mut self.ws);
        self.forward_ws(&mut ws, &self.states);
        let r = self.loss_of_output(&mut ws, target, loss);
        if r.is_ok() {
            self.backward_ws(&mut ws, input_grad);
        }
        self.ws = ws;
        r
    }

    fn check_target(&self, ws: &Workspace, target: &ArrayViewD<'_, f32>, loss: Loss) -> Result<()> {
        self.check_target_of(ws.b, ws.t, target, loss)
    }

    /// Checks `target` against the output of a `[b, t, ..]` batch.
    fn check_target_of(
        &self,
        b: usize,
        t: usize,
        target: &ArrayViewD<'_, f32>,
        loss: Loss,
    ) -> Result<()> {
        let s = self.output_shape();
        let mut want: Vec<usize> = if s.seq {
            vec![b, t, s.width]
        } else {
            vec![b, s.width]
        };
        if loss.sparse_targets() {
            want.pop();
        }
        if target.shape() != want.as_slice() {
            return Err(Error::ShapeMismatch {
                layer: format!("loss {} target", loss.name()),
                expected: shape_str(&want),
                got: shape_str(target.shape()),
            });
        }
        Ok(())
    }

    /// The loss of the output in `ws`; leaves d loss / d output (time-major) in `ws.dy`.
    pub(crate) fn loss_of_output(
        &self,
        ws: &mut Workspace,
        target: ArrayViewD<'_, f32>,
        loss: Loss,
    ) -> Result<f64> {
        let s = self.output_shape();
        let rows = if s.seq { ws.t * ws.b } else { ws.b };
        let sum = self.loss_sum_of_output(ws, target, loss, rows)?;
        Ok(sum / loss.denominator(rows, s.width))
    }

    /// The un-normalised loss of the output in `ws`, part of a batch with `total_rows`
    /// output rows (see [`Loss::compute_sum`]); leaves d loss / d output (time-major) in
    /// `ws.dy`.
    fn loss_sum_of_output(
        &self,
        ws: &mut Workspace,
        target: ArrayViewD<'_, f32>,
        loss: Loss,
        total_rows: usize,
    ) -> Result<f64> {
        let s = self.output_shape();
        let (b, t) = (ws.b, ws.t);
        // The target in the output's (time-major) row order.
        let per_row = if loss.sparse_targets() { 1 } else { s.width };
        let mut tgt = std::mem::take(&mut ws.target);
        tgt.clear();
        if s.seq {
            for step in 0..t {
                for i in 0..b {
                    let row = target.index_axis(ndarray::Axis(0), i);
                    let row = row.index_axis(ndarray::Axis(0), step);
                    tgt.extend(row.iter().copied());
                }
            }
            debug_assert_eq!(tgt.len(), t * b * per_row);
        } else {
            tgt.extend(target.iter().copied());
        }
        let out = layer_output(&self.layers, &ws.outs, &ws.lstm, self.layers.len() - 1);
        let value = loss.compute_sum(out, &tgt, s.width, &mut ws.dy, total_rows);
        ws.target = tgt;
        value
    }

    /// The output (time-major, `[rows, width]`) and target of the last loss step: one
    /// pair, or one per batch half when the step was split.
    pub(crate) fn last_output_and_target<'a>(&'a self) -> Vec<(&'a [f32], &'a [f32])> {
        let part = |ws: &'a Workspace| -> (&'a [f32], &'a [f32]) {
            let n = self.layers.len();
            let out = if ws.outs.len() == n && ws.lstm.len() == n {
                layer_output(&self.layers, &ws.outs, &ws.lstm, n - 1)
            } else {
                &[][..]
            };
            (out, ws.target.as_slice())
        };
        if self.ws.split {
            self.ws.halves.iter().map(part).collect()
        } else {
            vec![part(&self.ws)]
        }
    }

    /// Forward (dropout off, carried state used but not updated) and loss, no backward.
    pub(crate) fn eval_loss(
        &mut self,
        x: ArrayView3<'_, f32>,
        target: ArrayViewD<'_, f32>,
        loss: Loss,
    ) -> Result<f64> {
        let (b, t, _) = x.dim();
        if self.split_batch(b, t) {
            return self.checked_loss_halves(x, target, loss, false, false);
        }
        let mut ws = std::mem::take(&mut self.ws);
        ws.split = false;
        let r = self
            .load_input(x, &mut ws)
            .and_then(|()| self.check_target(&ws, &target, loss));
        let r = r.and_then(|()| {
            ws.masks.iter_mut().for_each(Vec::clear);
            for c in &mut ws.lstm {
                c.in_mask.clear();
                c.rec_mask.clear();
            }
            self.forward_ws(&mut ws, &self.states);
            self.loss_of_output(&mut ws, target, loss)
        });
        self.ws = ws;
        r
    }

    /// The Keras-style summary table (layer, output shape, params, totals).
    pub fn summary(&self) -> String {
        self.to_string()
    }
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn bytes(n: usize) -> String {
    let b = (n * 4) as f64;
    if b < 1024.0 {
        format!("{b:.2} B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.2} KB", b / 1024.0)
    } else if b < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} MB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.2} GB", b / (1024.0 * 1024.0 * 1024.0))
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (w1, w2, w3) = (33usize, 24usize, 15usize);
        let ts = self.timesteps.map_or("None".to_string(), |t| t.to_string());
        writeln!(f, "Model: \"{}\"", self.spec.name)?;
        let line = |l: &str, m: &str, r: &str, fill: &str| {
            format!(
                "{l}{}{m}{}{m}{}{r}",
                fill.repeat(w1),
                fill.repeat(w2),
                fill.repeat(w3)
            )
        };
        writeln!(f, "{}", line("┏", "┳", "┓", "━"))?;
        writeln!(
            f,
            "┃ {:<a$}┃ {:<b$}┃ {:>c$} ┃",
            "Layer (type)",
            "Output Shape",
            "Param #",
            a = w1 - 1,
            b = w2 - 1,
            c = w3 - 2
        )?;
        writeln!(f, "{}", line("┡", "╇", "┩", "━"))?;
        for (l, s) in self.layers.iter().zip(&self.shapes) {
            let shape = if s.seq {
                format!("(None, {ts}, {})", s.width)
            } else {
                format!("(None, {})", s.width)
            };
            writeln!(
                f,
                "│ {:<a$}│ {:<b$}│ {:>c$} │",
                format!("{} ({})", l.name(), l.kind()),
                shape,
                thousands(l.param_count()),
                a = w1 - 1,
                b = w2 - 1,
                c = w3 - 2
            )?;
        }
        writeln!(f, "{}", line("└", "┴", "┘", "─"))?;
        let n = self.param_count();
        writeln!(f, " Total params: {} ({})", thousands(n), bytes(n))?;
        writeln!(f, " Trainable params: {} ({})", thousands(n), bytes(n))?;
        write!(f, " Non-trainable params: 0 (0.00 B)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::test_util::fd_check;

    #[test]
    fn param_counts_equal_keras() {
        let m = Sequential::new()
            .input_shape(3, 1)
            .add(Lstm::new(1))
            .build()
            .unwrap();
        assert_eq!(m.param_count(), 12);
        let m = Sequential::new()
            .input_shape(3, 1)
            .add(Lstm::new(50))
            .build()
            .unwrap();
        assert_eq!(m.param_count(), 10_400);
        let m = Sequential::new()
            .input_shape(30, 1)
            .add(Lstm::new(50).return_sequences(true))
            .add(Lstm::new(50))
            .add(Dense::new(1))
            .build()
            .unwrap();
        assert_eq!(m.param_count(), 10_400 + 20_200 + 51);
        let s = m.summary();
        assert!(
            s.contains("lstm (LSTM)") && s.contains("lstm_1 (LSTM)") && s.contains("dense (Dense)"),
            "{s}"
        );
        assert!(
            s.contains("(None, 30, 50)") && s.contains("(None, 50)") && s.contains("(None, 1)"),
            "{s}"
        );
        assert!(s.contains("Total params: 30,651"), "{s}");
    }

    #[test]
    fn stacking_after_a_flat_output_names_both_layers() {
        let err = Sequential::new()
            .input_shape(5, 2)
            .add(Lstm::new(4))
            .add(Lstm::new(3))
            .build()
            .unwrap_err()
            .to_string();
        assert!(err.contains("'lstm_1'") && err.contains("'lstm'"), "{err}");
        assert!(err.contains("return_sequences(true) on 'lstm'"), "{err}");
        // Through a Dense in between, the fix still points at the LSTM.
        let err = Sequential::new()
            .input_shape(5, 2)
            .add(Lstm::new(4).name("encoder"))
            .add(Dense::new(3))
            .add(Lstm::new(3))
            .build()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'dense'") && err.contains("on 'encoder'"),
            "{err}"
        );
    }

    #[test]
    fn configuration_errors_are_clear() {
        let e = |s: Sequential| s.build().unwrap_err().to_string();
        assert!(e(Sequential::new().add(Lstm::new(2))).contains("input_shape"));
        assert!(e(Sequential::new().input_shape(3, 1)).contains("no layers"));
        assert!(e(Sequential::new().input_shape(0, 1).add(Lstm::new(2))).contains("timesteps"));
        assert!(e(Sequential::new().input_shape(3, 0).add(Lstm::new(2))).contains("features"));
        assert!(e(Sequential::new().input_shape(3, 1).add(Lstm::new(0)))
            .contains("units must be at least 1"));
        assert!(e(Sequential::new()
            .input_shape(3, 1)
            .add(Lstm::new(1_000_000_000_000)))
        .contains("too large"));
        assert!(e(Sequential::new()
            .input_shape(3, 1)
            .add(Lstm::new(2).return_state(true)))
        .contains("return_state"));
        assert!(e(Sequential::new()
            .input_shape(3, 1)
            .add(Lstm::new(2).name("a"))
            .add(Dense::new(1).name("a")))
        .contains("unique"));
    }

    #[test]
    fn predict_validates_input() {
        let m = Sequential::new()
            .input_shape(3, 2)
            .add(Lstm::new(2))
            .build()
            .unwrap();
        let err = m
            .predict(&Array3::zeros((1, 3, 1)))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[batch, 3, 2]") && err.contains("[1, 3, 1]"),
            "{err}"
        );
        let err = m
            .predict(&Array3::zeros((1, 4, 2)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("[1, 4, 2]"), "{err}");
        let mut x = Array3::zeros((2, 3, 2));
        x[[1, 0, 1]] = f32::INFINITY;
        let err = m.predict(&x).unwrap_err().to_string();
        assert!(err.contains("[1, 0, 1]"), "{err}");
        // Variable-length models accept any timesteps >= 1, but not 0.
        let v = Sequential::new()
            .input_features(2)
            .add(Lstm::new(2))
            .build()
            .unwrap();
        assert_eq!(
            v.predict(&Array3::zeros((1, 7, 2))).unwrap().shape(),
            &[1, 2]
        );
        assert!(v.predict(&Array3::zeros((1, 0, 2))).is_err());
    }

    #[test]
    fn model_gradients_match_finite_differences() {
        let mut m = Sequential::new()
            .input_shape(4, 2)
            .add(Lstm::new(3).return_sequences(true))
            .add(Lstm::new(3).return_sequences(true))
            .add(Dense::new(2).activation(crate::Activation::Tanh))
            .seed(3)
            .build()
            .unwrap();
        let mut rng = Rng::new(8);
        let x = Array3::from_shape_fn((2, 4, 2), |_| rng.uniform(-1.0, 1.0) as f32);
        let y = ArrayD::from_shape_fn(IxDyn(&[2, 4, 2]), |_| rng.uniform(-1.0, 1.0) as f32);
        let (_, dx) = m.loss_and_gradients(x.view(), y.view(), Loss::Mse).unwrap();
        let grads = m.get_gradients();
        let weights = m.get_weights();
        let base = m.clone();
        let eval =
            |m: &mut Model, x: &Array3<f32>| m.eval_loss(x.view(), y.view(), Loss::Mse).unwrap();
        let dxs: Vec<f32> = dx.iter().copied().collect();
        fd_check("input", &dxs, x.len(), |i, e| {
            let mut x2 = x.clone();
            x2.as_slice_mut().unwrap()[i] += e;
            eval(&mut base.clone(), &x2)
        });
        for (k, (g, w)) in grads.iter().zip(&weights).enumerate() {
            let g: Vec<f32> = g.iter().copied().collect();
            fd_check(&format!("weight {k}"), &g, w.len(), |i, e| {
                let mut ws2 = weights.clone();
                ws2[k].as_slice_mut().unwrap()[i] += e;
                let mut m2 = base.clone();
                m2.set_weights(&ws2).unwrap();
                eval(&mut m2, &x)
            });
        }
    }

    #[test]
    fn predict_reuses_its_buffers_without_changing_results() {
        let m = Sequential::new()
            .input_features(3)
            .add(Lstm::new(40).return_sequences(true))
            .add(Lstm::new(40))
            .add(Dense::new(2))
            .seed(4)
            .build()
            .unwrap();
        let mut rng = Rng::new(1);
        let mut x = |b, t| Array3::from_shape_fn((b, t, 3), |_| rng.uniform(-1.0, 1.0) as f32);
        let (big, small, long) = (x(40, 30), x(1, 5), x(3, 50));
        let fresh: Vec<_> = [&big, &small, &long]
            .iter()
            .map(|x| m.predict_with(x.view(), &mut Workspace::default()).unwrap())
            .collect();
        // Any order of calls through the kept buffers gives the fresh results, bit for bit.
        for order in [[0, 1, 2], [2, 0, 1], [1, 2, 0], [0, 0, 1]] {
            for k in order {
                let x = [&big, &small, &long][k];
                assert_eq!(m.predict(x).unwrap(), fresh[k], "input {k}");
            }
        }
    }

    #[test]
    fn forward_train_then_backward_once_and_only_once() {
        let mut m = Sequential::new()
            .input_shape(5, 2)
            .add(Lstm::new(4).return_sequences(true))
            .add(Dense::new(1))
            .seed(2)
            .build()
            .unwrap();
        let x = Array3::from_shape_fn((3, 5, 2), |(i, t, f)| (i + t + f) as f32 * 0.1);
        let dy = ArrayD::from_elem(IxDyn(&[3, 5, 1]), 0.5f32);
        assert!(matches!(m.backward(dy.view()), Err(Error::State(_))));
        m.zero_grad();
        m.forward_train(x.view()).unwrap();
        m.backward(dy.view()).unwrap();
        let g = m.get_gradients();
        // The gates were consumed: a second backward is refused, not computed from garbage.
        let e = m.backward(dy.view()).unwrap_err();
        assert!(matches!(e, Error::State(_)), "{e}");
        assert!(e.to_string().contains("forward_train"), "{e}");
        // A new forward allows it again, with the same result.
        m.zero_grad();
        m.forward_train(x.view()).unwrap();
        m.backward(dy.view()).unwrap();
        assert_eq!(m.get_gradients(), g);
    }

    #[test]
    fn batch_split_inference_matches_one_thread_and_is_deterministic() {
        let m = Sequential::new()
            .input_shape(30, 3)
            .add(Lstm::new(40).return_sequences(true))
            .add(Lstm::new(40))
            .add(Dense::new(2))
            .seed(4)
            .build()
            .unwrap();
        let mut rng = Rng::new(6);
        let x = Array3::from_shape_fn((33, 30, 3), |_| rng.uniform(-1.0, 1.0) as f32);
        assert!(crate::kernels::threads() < 2 || m.split_batch(33, 30));
        let mut ws = Workspace::default();
        let split = m.predict_with(x.view(), &mut ws).unwrap();
        assert_eq!(m.predict_with(x.view(), &mut ws).unwrap(), split);
        // Row by row (never split) gives the same values.
        for i in [0, 16, 17, 32] {
            let one = m
                .predict(&x.slice(ndarray::s![i..=i, .., ..]).to_owned())
                .unwrap();
            for (a, b) in one.iter().zip(split.slice(ndarray::s![i, ..]).iter()) {
                assert!((a - b).abs() <= 1e-6, "row {i}: {a} vs {b}");
            }
        }
    }
}
