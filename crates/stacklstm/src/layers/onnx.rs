//! Exporting a built layer to ONNX: the graph interface a layer's
//! [`Layer::export_onnx`](super::Layer::export_onnx) hook writes its nodes into.
//!
//! The exporter (in `io::onnx`) owns the graph, the protobuf encoding and the size limits;
//! a layer only says which initializers and nodes it becomes, given the value flowing in.
//! Values between layers keep the model's shapes, `[batch, T, width]` or `[batch, width]`,
//! except that a run of recurrent layers may stay sequence-major (`[T, batch, width]`, what
//! the ONNX `LSTM` operator reads and writes) until a layer needs batch-major again.

use crate::error::{Error, Result};
use crate::kernels::activation::Activation;

/// How a graph value's axes are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnnxLayout {
    /// `[batch, T, width]`, the model's input and sequence output layout.
    BatchMajor,
    /// `[T, batch, width]`, what the ONNX `LSTM` operator consumes and produces.
    SeqMajor,
    /// `[batch, width]`: no time axis.
    Flat,
}

/// A float32 value of the graph: the output of the layers exported so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxValue {
    /// The value's name in the graph.
    pub name: String,
    /// Its axis layout.
    pub layout: OnnxLayout,
    /// Its last-axis width.
    pub width: usize,
}

/// A node attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum OnnxAttr {
    /// `INT`.
    Int(i64),
    /// `FLOAT`.
    Float(f32),
    /// `STRING`.
    Str(String),
    /// `INTS`.
    Ints(Vec<i64>),
    /// `FLOATS`.
    Floats(Vec<f32>),
    /// `STRINGS`.
    Strs(Vec<String>),
}

/// The ONNX graph being built, as a layer's export hook sees it.
///
/// Names of nodes and initializers must be unique in the graph: a layer puts its own under
/// the prefix from [`layer_prefix`](Self::layer_prefix) (`lstm0/W`, `dense1/MatMul`, ...);
/// a node's outputs are conventionally named `<node>:<output>`.
pub trait OnnxGraph {
    /// A fresh prefix for one layer's names: `base` followed by the number of layers that
    /// asked for a prefix before (`lstm0`, `dense1`, ...). A layer that adds nothing (an
    /// identity) does not ask, so it does not shift the names of the others.
    fn layer_prefix(&mut self, base: &str) -> String;

    /// Adds a float32 initializer `name` of shape `dims`, values row-major.
    ///
    /// # Errors
    /// [`Error::UnsupportedFormat`] when the model would
    /// exceed protobuf's 2 GiB limit.
    fn add_initializer(&mut self, name: &str, dims: &[usize], values: &[f32]) -> Result<()>;

    /// The name of the one-element int64 initializer `[axis]` (the `axes` input of
    /// `Squeeze` and similar operators), added on first use and then shared.
    fn axes(&mut self, axis: i64) -> String;

    /// Adds a node running `op` (an `ai.onnx` operator). An empty output name skips that
    /// output.
    fn add_node(
        &mut self,
        name: String,
        op: &'static str,
        inputs: Vec<String>,
        outputs: Vec<String>,
        attrs: Vec<(&'static str, OnnxAttr)>,
    );

    /// `value` in layout `to`, through a `Transpose` node named `node` between batch-major
    /// and sequence-major (no node when it already is in `to`).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a change to or from
    /// [`OnnxLayout::Flat`], which a transpose cannot make.
    fn to_layout(&mut self, value: OnnxValue, to: OnnxLayout, node: &str) -> Result<OnnxValue>;
}

/// Keras 3 `hard_sigmoid`, `clip(x/6 + 0.5, 0, 1)`, as the (alpha, beta) of ONNX
/// `HardSigmoid` (`max(0, min(1, alpha x + beta))`).
pub const HARD_SIGMOID: (f32, f32) = (1.0 / 6.0, 0.5);

/// One direction of an ONNX `LSTM` or `GRU` operator, in ONNX's layout: what a recurrent
/// layer's weights become, for its own export or for a Bidirectional's (which stacks two
/// of them along the operator's `num_directions` axis).
#[derive(Debug, Clone)]
pub(crate) struct RecurrentDirection {
    /// The operator: `LSTM` or `GRU`.
    pub op: &'static str,
    /// The operator's own attributes besides `hidden_size`, `direction` and the
    /// activations (a GRU's `linear_before_reset`).
    pub attrs: Vec<(&'static str, OnnxAttr)>,
    /// `W` `[G·H, D]`: the input kernel transposed, gate blocks in ONNX's order (`G` = 4
    /// for an LSTM, 3 for a GRU).
    pub w: Vec<f32>,
    /// `R` `[G·H, H]`: the recurrent kernel transposed, the same gate order.
    pub r: Vec<f32>,
    /// `B` `[2·G·H]`: the input biases `Wb`, then the recurrent biases `Rb`; `None`
    /// without bias.
    pub b: Option<Vec<f32>>,
    /// The operator's activations in ONNX order (LSTM: f, g, h; GRU: f, g), each as its
    /// ONNX name and its (alpha, beta) when it takes any.
    pub activations: Vec<(&'static str, Option<(f32, f32)>)>,
}

/// Transposes a Keras `[rows, G·h]` matrix into ONNX's `[G·h, rows]` with the gate blocks
/// reordered: output block `og` is Keras block `order[og]` (`G = order.len()`).
pub(crate) fn reorder_transpose(m: &[f32], rows: usize, h: usize, order: &[usize]) -> Vec<f32> {
    let cols = order.len() * h;
    let mut out = vec![0.0f32; cols * rows];
    for (og, &kg) in order.iter().enumerate() {
        for u in 0..h {
            let dst_row = og * h + u;
            let src_col = kg * h + u;
            for j in 0..rows {
                out[dst_row * rows + j] = m[j * cols + src_col];
            }
        }
    }
    out
}

/// The ONNX recurrent-operator activation name of `a` and its (alpha, beta), if it takes
/// any; `what` and `field` name the layer and option in the error.
///
/// # Errors
/// [`Error::UnsupportedFormat`] for `softmax`, which is
/// not elementwise.
pub(crate) fn recurrent_activation(
    what: &str,
    field: &str,
    a: Activation,
) -> Result<(&'static str, Option<(f32, f32)>)> {
    Ok(match a {
        Activation::Tanh => ("Tanh", None),
        Activation::Sigmoid => ("Sigmoid", None),
        Activation::Relu => ("Relu", None),
        Activation::Linear => ("Affine", Some((1.0, 0.0))),
        Activation::HardSigmoid => ("HardSigmoid", Some(HARD_SIGMOID)),
        Activation::Softmax => {
            return Err(Error::UnsupportedFormat {
                found: format!("{field} 'softmax' in {what} for ONNX export"),
                supported: "tanh, sigmoid, relu, linear, hard_sigmoid".into(),
            })
        }
    })
}

/// The `activation_alpha` / `activation_beta` lists of a recurrent operator whose
/// `activations` attribute lists `acts`; `None` when no activation takes parameters.
///
/// onnxruntime hands the list out in order to the activations that take parameters; the
/// ONNX text can also be read as one entry per activation. The lists returned mean the same
/// under both readings: one value repeated for every entry when all the activations that
/// take parameters share it; otherwise the parameters in order, which is one entry per
/// activation, since a recurrent operator repeats at most two distinct functions and both
/// then take parameters.
pub(crate) fn recurrent_activation_params(
    acts: &[(&'static str, Option<(f32, f32)>)],
) -> Option<Vec<(f32, f32)>> {
    let mut taking = acts.iter().filter_map(|a| a.1);
    let first = taking.next()?;
    if taking.all(|p| p == first) {
        Some(vec![first; acts.len()])
    } else {
        Some(acts.iter().filter_map(|a| a.1).collect())
    }
}

/// The `activations`, `activation_alpha` and `activation_beta` attributes of a recurrent
/// operator running `acts` (every direction's, in order).
pub(crate) fn recurrent_activation_attrs(
    acts: &[(&'static str, Option<(f32, f32)>)],
) -> Vec<(&'static str, OnnxAttr)> {
    let mut attrs = vec![(
        "activations",
        OnnxAttr::Strs(acts.iter().map(|a| a.0.to_string()).collect()),
    )];
    if let Some(p) = recurrent_activation_params(acts) {
        attrs.push((
            "activation_alpha",
            OnnxAttr::Floats(p.iter().map(|x| x.0).collect()),
        ));
        attrs.push((
            "activation_beta",
            OnnxAttr::Floats(p.iter().map(|x| x.1).collect()),
        ));
    }
    attrs
}
