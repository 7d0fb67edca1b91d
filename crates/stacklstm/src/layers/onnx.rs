//! Exporting a built layer to ONNX: the graph interface a layer's
//! [`Layer::export_onnx`](super::Layer::export_onnx) hook writes its nodes into.
//!
//! The exporter (in `io::onnx`) owns the graph, the protobuf encoding and the size limits;
//! a layer only says which initializers and nodes it becomes, given the value flowing in.
//! Values between layers keep the model's shapes, `[batch, T, width]` or `[batch, width]`,
//! except that a run of recurrent layers may stay sequence-major (`[T, batch, width]`, what
//! the ONNX `LSTM` operator reads and writes) until a layer needs batch-major again.

use crate::error::Result;

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
    /// [`Error::UnsupportedFormat`](crate::Error::UnsupportedFormat) when the model would
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
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for a change to or from
    /// [`OnnxLayout::Flat`], which a transpose cannot make.
    fn to_layout(&mut self, value: OnnxValue, to: OnnxLayout, node: &str) -> Result<OnnxValue>;
}

/// Keras 3 `hard_sigmoid`, `clip(x/6 + 0.5, 0, 1)`, as the (alpha, beta) of ONNX
/// `HardSigmoid` (`max(0, min(1, alpha x + beta))`).
pub const HARD_SIGMOID: (f32, f32) = (1.0 / 6.0, 0.5);
