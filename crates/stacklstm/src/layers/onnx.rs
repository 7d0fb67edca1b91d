//! Exporting a built layer to ONNX: the graph interface a layer's
//! [`Layer::export_onnx`](super::Layer::export_onnx) hook writes its nodes into.
//!
//! The exporter (in `io::onnx`) owns the graph, the protobuf encoding and the size limits;
//! a layer only says which initializers and nodes it becomes, given the value flowing in.
//! Values between layers keep the model's shapes, `[batch, T, width]` or `[batch, width]`,
//! except that a run of recurrent layers may stay sequence-major (`[T, batch, width]`, what
//! the ONNX `LSTM` and `GRU` operators read and write) until a layer needs batch-major again.
//!
//! The recurrent layers share `export_recurrent`: the checks, the layout change, the
//! operator's common attributes and the squeeze of its direction axis; each layer adds only
//! its weights (reordered into the operator's gate order) and its own attributes.

use crate::error::{Error, Result};
use crate::kernels::activation::Activation;

/// How a graph value's axes are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnnxLayout {
    /// `[batch, T, width]`, the model's input and sequence output layout.
    BatchMajor,
    /// `[T, batch, width]`, what the ONNX `LSTM` and `GRU` operators consume and produce.
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

/// The step mask of a masked model in the graph (see "Masks" in [`crate::layers`]), made by
/// the export of the layer that makes the mask and read by the recurrent layers above it.
///
/// ONNX's recurrent operators know one kind of padding: `sequence_lens`, a count of leading
/// steps per row. A Keras mask may also pad on the left or leave holes, so a masked recurrent
/// layer is exported exactly for every pattern by moving each row's kept steps to its front
/// (`order`), running the operator with `sequence_lens` = the number of kept steps (`lens`),
/// and putting each output back where Keras has it (`last_kept`, `seen`, `keep`). All
/// tensors are sequence-major, as the operators read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxStepMask {
    /// int64 `[T, batch, 1]`: per row, the indices of its kept steps in order, then those of
    /// its masked steps (gathering along time with it moves the kept steps to the front).
    pub order: String,
    /// int32 `[batch]`: kept steps per row (the operators' `sequence_lens`).
    pub lens: String,
    /// int64 `[T, batch, 1]`: per step, the position among the row's kept steps of the last
    /// kept step at or before it (0 before the first).
    pub last_kept: String,
    /// float `[T, batch, 1]`: 1 from the row's first kept step on, 0 before it.
    pub seen: String,
    /// float `[T, batch, 1]`: 1 at kept steps, 0 at masked ones.
    pub keep: String,
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

    /// Adds an int64 initializer `name` of shape `dims` (`&[]`: a scalar).
    fn add_initializer_i64(&mut self, name: &str, dims: &[usize], values: &[i64]);

    /// The step mask the value flowing through the graph carries, if any.
    fn step_mask(&self) -> Option<OnnxStepMask>;

    /// Sets (or, with `None`, ends) the step mask of the value flowing through the graph.
    fn set_step_mask(&mut self, mask: Option<OnnxStepMask>);

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

/// The name of `a` among the activations of ONNX's recurrent operators (`LSTM`, `GRU`) and
/// its (alpha, beta) when it takes them: `linear` is `Affine` with alpha 1 and beta 0,
/// `hard_sigmoid` is [`HARD_SIGMOID`]. `what` names the layer and `field` its option in the
/// error.
///
/// # Errors
/// [`Error::UnsupportedFormat`] for an activation the operators do not have (`softmax`).
pub(crate) fn rnn_activation(
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

/// The `activation_alpha` / `activation_beta` lists of a recurrent operator whose activation
/// slots take `slots` (`None`: a function without parameters); `None` when no slot takes any.
///
/// The ONNX text can be read as one list entry per activation slot, while onnxruntime hands
/// the entries out in order to the slots that take parameters. The list returned means the
/// same under both readings (where they would need different values at one position, the
/// export is refused rather than guessed).
///
/// # Errors
/// [`Error::UnsupportedFormat`] naming `what` when no list satisfies both readings.
pub(crate) fn activation_params(
    what: &str,
    slots: &[Option<(f32, f32)>],
) -> Result<Option<Vec<(f32, f32)>>> {
    let in_order: Vec<(f32, f32)> = slots.iter().flatten().copied().collect();
    if in_order.is_empty() {
        return Ok(None);
    }
    let mut out: Vec<Option<(f32, f32)>> = Vec::with_capacity(slots.len());
    for (j, slot) in slots.iter().enumerate() {
        out.push(match (in_order.get(j), slot) {
            (Some(a), Some(b)) if a != b => {
                return Err(Error::UnsupportedFormat {
                    found: format!(
                        "ONNX export of {what}: activations whose parameters ONNX runtimes read differently"
                    ),
                    supported: "recurrent activations where at most one parameterised function (linear, hard_sigmoid) differs from the others".into(),
                })
            }
            (Some(p), _) | (None, Some(p)) => Some(*p),
            (None, None) => None,
        });
    }
    while out.last() == Some(&None) {
        out.pop();
    }
    // An inner slot neither reading uses: any value will do; repeat the one before.
    let mut last = in_order[0];
    Ok(Some(
        out.into_iter()
            .map(|p| {
                if let Some(p) = p {
                    last = p;
                }
                last
            })
            .collect(),
    ))
}

/// A recurrent layer as one ONNX recurrent operator, for [`export_recurrent`].
#[derive(Debug)]
pub(crate) struct RecurrentExport<'a> {
    /// The operator, which is also the layer's Keras class: `LSTM` or `GRU`.
    pub op: &'static str,
    /// The base of the layer's name prefix (`lstm`, `gru`).
    pub base: &'static str,
    /// The layer's name.
    pub name: &'a str,
    /// Whether the layer carries its state between batches (refused: the graph starts every
    /// sequence from zero state).
    pub stateful: bool,
    /// Output every step (`Y`) rather than the last (`Y_h`).
    pub return_sequences: bool,
    /// Units `H`, the operator's `hidden_size`.
    pub units: usize,
    /// The operator's activation slots in its order, each as the Keras option it comes from
    /// and that option's value (`LSTM`: f, g, h; `GRU`: f, g).
    pub activations: &'a [(&'static str, Activation)],
    /// Attributes of this operator only (the `GRU`'s `linear_before_reset`).
    pub attrs: Vec<(&'static str, OnnxAttr)>,
}

/// Exports a recurrent layer as one forward ONNX `LSTM` or `GRU` operator reading `x`.
///
/// onnxruntime only implements these operators' `layout = 0` (sequence-major
/// `[T, batch, D]`), so `x` is transposed to sequence-major when it is not already (a run of
/// recurrent layers stays sequence-major). `weights` adds the layer's initializers under the
/// prefix it is given and returns their names, the operator's inputs after `X` (`W`, `R` and
/// optionally `B`). The operator's `Y` `[T, 1, batch, H]` or `Y_h` `[1, batch, H]` is
/// squeezed to `[T, batch, H]` or `[batch, H]`.
///
/// # Errors
/// [`Error::UnsupportedFormat`] for a stateful layer or an activation ONNX does not have,
/// [`Error::InvalidConfig`] for an input without a time axis, and the errors of `weights`.
pub(crate) fn export_recurrent(
    g: &mut dyn OnnxGraph,
    x: OnnxValue,
    layer: RecurrentExport<'_>,
    weights: impl FnOnce(&mut dyn OnnxGraph, &str) -> Result<Vec<String>>,
) -> Result<OnnxValue> {
    let (op, name) = (layer.op, layer.name);
    if layer.stateful {
        return Err(Error::UnsupportedFormat {
            found: format!("ONNX export of stateful {op} '{name}'"),
            supported: format!("stateless {op}s (each sequence starts from zero state)"),
        });
    }
    let what = format!("layer '{name}' ({op})");
    if x.layout == OnnxLayout::Flat {
        return Err(Error::config(format!(
            "{what}: a recurrent layer needs a 3-D sequence input [batch, T, features], but the \
             previous layer outputs [batch, {}]; set return_sequences on the recurrent layer before it",
            x.width
        )));
    }
    let mut names = Vec::with_capacity(layer.activations.len());
    let mut params = Vec::with_capacity(layer.activations.len());
    for &(field, a) in layer.activations {
        let (n, p) = rnn_activation(&what, field, a)?;
        names.push(n.to_string());
        params.push(p);
    }
    let params = activation_params(&what, &params)?;

    let p = g.layer_prefix(layer.base);
    let x = g.to_layout(x, OnnxLayout::SeqMajor, &format!("{p}/to_seq_major"))?;
    let mask = g.step_mask();
    // Under a mask each row's kept steps go first; `sequence_lens` counts them.
    let x_name = match &mask {
        Some(m) => gather_steps(g, &format!("{p}/kept_first"), &x.name, &m.order),
        None => x.name,
    };
    let mut inputs = vec![x_name];
    inputs.extend(weights(g, &p)?);
    if let Some(m) = &mask {
        if inputs.len() == 3 {
            inputs.push(String::new()); // no `B`
        }
        inputs.push(m.lens.clone());
    }

    let h = layer.units;
    let mut attrs: Vec<(&'static str, OnnxAttr)> = vec![
        ("hidden_size", OnnxAttr::Int(h as i64)),
        ("direction", OnnxAttr::Str("forward".into())),
        ("activations", OnnxAttr::Strs(names)),
    ];
    if let Some(params) = params {
        attrs.push((
            "activation_alpha",
            OnnxAttr::Floats(params.iter().map(|x| x.0).collect()),
        ));
        attrs.push((
            "activation_beta",
            OnnxAttr::Floats(params.iter().map(|x| x.1).collect()),
        ));
    }
    attrs.extend(layer.attrs);

    let node = format!("{p}/{op}");
    let (outputs, squeeze_axis, layout) = if layer.return_sequences {
        (vec![format!("{node}:Y")], 1, OnnxLayout::SeqMajor)
    } else {
        (
            vec![String::new(), format!("{node}:Y_h")],
            0,
            OnnxLayout::Flat,
        )
    };
    let produced = outputs.last().cloned().unwrap_or_default();
    g.add_node(node, op, inputs, outputs, attrs);

    // Y [T, 1, B, H] -> [T, B, H]; Y_h [1, B, H] -> [B, H].
    let axes = g.axes(squeeze_axis);
    let sq = format!("{p}/squeeze");
    let out = format!("{sq}:0");
    g.add_node(
        sq,
        "Squeeze",
        vec![produced, axes],
        vec![out.clone()],
        vec![],
    );
    let out = match &mask {
        // Keras' output at step t: the output of the last kept step at or before t (zeros
        // before the first), i.e. the carried state.
        Some(m) if layer.return_sequences => {
            let back = gather_steps(g, &format!("{p}/in_place"), &out, &m.last_kept);
            let node = format!("{p}/held");
            let held = format!("{node}:0");
            g.add_node(
                node,
                "Mul",
                vec![back, m.seen.clone()],
                vec![held.clone()],
                vec![],
            );
            held
        }
        // The mask ends at a layer that drops the time axis; `Y_h` is already the state after
        // the row's last kept step (zero for a row without one).
        Some(_) => {
            g.set_step_mask(None);
            out
        }
        None => out,
    };
    Ok(OnnxValue {
        name: out,
        layout,
        width: h,
    })
}

/// `GatherElements` along time (axis 0) of the sequence-major `x` `[T, batch, w]` with the
/// `[T, batch, 1]` step indices `index`, broadcast over the last axis; returns the output.
pub(crate) fn gather_steps(g: &mut dyn OnnxGraph, node: &str, x: &str, index: &str) -> String {
    let shape = format!("{node}/shape:0");
    g.add_node(
        format!("{node}/shape"),
        "Shape",
        vec![x.to_string()],
        vec![shape.clone()],
        vec![],
    );
    let wide = format!("{node}/expand:0");
    g.add_node(
        format!("{node}/expand"),
        "Expand",
        vec![index.to_string(), shape],
        vec![wide.clone()],
        vec![],
    );
    let out = format!("{node}:0");
    g.add_node(
        node.to_string(),
        "GatherElements",
        vec![x.to_string(), wide],
        vec![out.clone()],
        vec![("axis", OnnxAttr::Int(0))],
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_params_mean_the_same_under_both_readings() {
        let (f, g) = ((0.5, 0.25), HARD_SIGMOID);
        // None take parameters: no lists.
        assert_eq!(activation_params("l", &[None, None, None]).unwrap(), None);
        // LSTM f, g, h with g = h.
        assert_eq!(
            activation_params("l", &[Some(f), None, None]).unwrap(),
            Some(vec![f])
        );
        assert_eq!(
            activation_params("l", &[None, Some(g), Some(g)]).unwrap(),
            Some(vec![g, g, g])
        );
        assert_eq!(
            activation_params("l", &[Some(f), Some(g), Some(g)]).unwrap(),
            Some(vec![f, g, g])
        );
        // GRU f, g.
        assert_eq!(
            activation_params("l", &[None, Some(g)]).unwrap(),
            Some(vec![g, g])
        );
        assert_eq!(
            activation_params("l", &[Some(f), None]).unwrap(),
            Some(vec![f])
        );
        assert_eq!(
            activation_params("l", &[Some(f), Some(g)]).unwrap(),
            Some(vec![f, g])
        );
        // Slot 1 would get f in onnxruntime but g in the per-slot reading.
        let e = activation_params("layer 'x' (LSTM)", &[None, Some(f), Some(g)]).unwrap_err();
        assert!(
            matches!(e, Error::UnsupportedFormat { .. }) && e.to_string().contains("'x'"),
            "{e}"
        );
    }

    #[test]
    fn softmax_has_no_recurrent_onnx_activation() {
        let e = rnn_activation("layer 'x' (GRU)", "activation", Activation::Softmax).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("softmax") && msg.contains("'x'"), "{msg}");
        assert_eq!(
            rnn_activation("l", "activation", Activation::Linear).unwrap(),
            ("Affine", Some((1.0, 0.0)))
        );
    }
}
