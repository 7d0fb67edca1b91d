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

/// A recurrent layer as one ONNX `LSTM` or `GRU` operator, for [`export_recurrent`].
#[derive(Debug)]
pub(crate) struct RecurrentExport<'a> {
    /// The base of the layer's name prefix (`lstm`, `gru`, `bidirectional`).
    pub base: &'static str,
    /// The layer's name and Keras class, for errors.
    pub name: &'a str,
    pub kind: &'static str,
    /// Whether the layer carries its state between batches (refused: the graph starts every
    /// sequence from zero state).
    pub stateful: bool,
    /// Output every step (`Y`) rather than the last (`Y_h`).
    pub return_sequences: bool,
    /// Units `H`, the operator's `hidden_size`.
    pub units: usize,
    /// Input width `D`.
    pub input_width: usize,
    /// One direction (`direction = "forward"`) or two (`"bidirectional"`: forward, then
    /// backward), each with its weights and activations in ONNX's layout.
    pub dirs: Vec<RecurrentDirection>,
}

/// What [`export_recurrent`] added: the layer's name prefix, the operator's output and the
/// step mask the operator ran under.
#[derive(Debug)]
pub(crate) struct RecurrentOutput {
    /// The layer's name prefix.
    pub prefix: String,
    /// `Y` `[T, dirs, batch, H]` with `return_sequences`, else `Y_h` `[dirs, batch, H]`.
    pub y: String,
    /// The step mask, when the input carries one.
    pub mask: Option<OnnxStepMask>,
}

/// Adds one ONNX `LSTM` or `GRU` operator reading `x`, with the weights of every direction
/// stacked along the operator's `num_directions` axis; the caller reduces that axis (a
/// `Squeeze`, or a Bidirectional's merge) and then calls [`finish_recurrent`].
///
/// onnxruntime only implements these operators' `layout = 0` (sequence-major
/// `[T, batch, D]`), so `x` is transposed to sequence-major when it is not already (a run of
/// recurrent layers stays sequence-major). Under a step mask each row's kept steps are
/// gathered to its front and `sequence_lens` counts them (see [`OnnxStepMask`]).
///
/// # Errors
/// [`Error::UnsupportedFormat`] for a stateful layer, [`Error::InvalidConfig`] for an input
/// without a time axis, and size-limit errors of the initializers.
pub(crate) fn export_recurrent(
    g: &mut dyn OnnxGraph,
    x: OnnxValue,
    layer: RecurrentExport<'_>,
) -> Result<RecurrentOutput> {
    let (kind, name) = (layer.kind, layer.name);
    if layer.stateful {
        return Err(Error::UnsupportedFormat {
            found: format!("ONNX export of stateful layer '{name}' ({kind})"),
            supported: format!("stateless {kind} layers (each sequence starts from zero state)"),
        });
    }
    if x.layout == OnnxLayout::Flat {
        return Err(Error::config(format!(
            "layer '{name}' ({kind}): a recurrent layer needs a 3-D sequence input [batch, T, \
             features], but the previous layer outputs [batch, {}]; set return_sequences on \
             the recurrent layer before it",
            x.width
        )));
    }
    debug_assert_eq!(x.width, layer.input_width, "layer '{name}': input width");
    let (d, h, n) = (layer.input_width, layer.units, layer.dirs.len());
    let op = layer.dirs[0].op;
    let gh = layer.dirs[0].r.len() / h.max(1);

    let p = g.layer_prefix(layer.base);
    let x = g.to_layout(x, OnnxLayout::SeqMajor, &format!("{p}/to_seq_major"))?;
    let mask = g.step_mask();
    let x_name = match &mask {
        Some(m) => gather_steps(g, &format!("{p}/kept_first"), &x.name, &m.order),
        None => x.name,
    };
    let stack = |f: fn(&RecurrentDirection) -> &[f32]| -> Vec<f32> {
        layer.dirs.iter().flat_map(|dir| f(dir).to_vec()).collect()
    };
    let (w_name, r_name) = (format!("{p}/W"), format!("{p}/R"));
    g.add_initializer(&w_name, &[n, gh, d], &stack(|dir| &dir.w))?;
    g.add_initializer(&r_name, &[n, gh, h], &stack(|dir| &dir.r))?;
    let mut inputs = vec![x_name, w_name, r_name];
    if layer.dirs.iter().all(|dir| dir.b.is_some()) {
        let b_name = format!("{p}/B");
        let bias: Vec<f32> = layer
            .dirs
            .iter()
            .flat_map(|dir| dir.b.clone().unwrap_or_default())
            .collect();
        g.add_initializer(&b_name, &[n, 2 * gh], &bias)?;
        inputs.push(b_name);
    }
    if let Some(m) = &mask {
        if inputs.len() == 3 {
            inputs.push(String::new()); // no `B`
        }
        inputs.push(m.lens.clone());
    }
    let direction = if n == 2 { "bidirectional" } else { "forward" };
    let mut attrs: Vec<(&'static str, OnnxAttr)> = vec![
        ("hidden_size", OnnxAttr::Int(h as i64)),
        ("direction", OnnxAttr::Str(direction.into())),
    ];
    let acts: Vec<_> = layer
        .dirs
        .iter()
        .flat_map(|dir| dir.activations.clone())
        .collect();
    attrs.extend(recurrent_activation_attrs(&acts));
    attrs.extend(layer.dirs[0].attrs.clone());

    let node = format!("{p}/{op}");
    let outputs = if layer.return_sequences {
        vec![format!("{node}:Y")]
    } else {
        vec![String::new(), format!("{node}:Y_h")]
    };
    let y = outputs.last().cloned().unwrap_or_default();
    g.add_node(node, op, inputs, outputs, attrs);
    Ok(RecurrentOutput { prefix: p, y, mask })
}

/// The layer's output value from `out`, the operator's output with its direction axis
/// reduced (`[T, batch, width]` or `[batch, width]`). Under a step mask, a sequence goes
/// back to Keras' positions: at each step the output of the last kept step at or before it
/// (the carried state; zeros before the first), or, with `zero_masked` (inside a
/// Bidirectional, as Keras does), zeros at every masked step. Without `return_sequences`
/// the mask ends here: `Y_h` is already the state after the row's last kept step.
pub(crate) fn finish_recurrent(
    g: &mut dyn OnnxGraph,
    rec: &RecurrentOutput,
    out: String,
    return_sequences: bool,
    zero_masked: bool,
    width: usize,
) -> OnnxValue {
    let p = &rec.prefix;
    let name = match &rec.mask {
        Some(m) if return_sequences => {
            let back = gather_steps(g, &format!("{p}/in_place"), &out, &m.last_kept);
            let node = format!("{p}/held");
            let held = format!("{node}:0");
            let factor = if zero_masked { &m.keep } else { &m.seen };
            g.add_node(
                node,
                "Mul",
                vec![back, factor.clone()],
                vec![held.clone()],
                vec![],
            );
            held
        }
        Some(_) => {
            g.set_step_mask(None);
            out
        }
        None => out,
    };
    OnnxValue {
        name,
        layout: if return_sequences {
            OnnxLayout::SeqMajor
        } else {
            OnnxLayout::Flat
        },
        width,
    }
}

/// A one-direction recurrent layer's export: the operator, its direction axis squeezed.
///
/// # Errors
/// As [`export_recurrent`].
pub(crate) fn export_one_direction(
    g: &mut dyn OnnxGraph,
    x: OnnxValue,
    layer: RecurrentExport<'_>,
) -> Result<OnnxValue> {
    let (rs, h) = (layer.return_sequences, layer.units);
    let rec = export_recurrent(g, x, layer)?;
    // Y [T, 1, B, H] -> [T, B, H]; Y_h [1, B, H] -> [B, H].
    let axes = g.axes(if rs { 1 } else { 0 });
    let sq = format!("{}/squeeze", rec.prefix);
    let out = format!("{sq}:0");
    g.add_node(
        sq,
        "Squeeze",
        vec![rec.y.clone(), axes],
        vec![out.clone()],
        vec![],
    );
    Ok(finish_recurrent(g, &rec, out, rs, false, h))
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
        let (f, g) = (
            ("Affine", Some((0.5, 0.25))),
            ("HardSigmoid", Some(HARD_SIGMOID)),
        );
        let t = ("Tanh", None);
        // None take parameters: no lists.
        assert_eq!(recurrent_activation_params(&[t, t, t]), None);
        // One parameterised function, repeated for every slot.
        assert_eq!(
            recurrent_activation_params(&[f, t, t]),
            Some(vec![f.1.unwrap(); 3])
        );
        assert_eq!(
            recurrent_activation_params(&[t, g, g]),
            Some(vec![g.1.unwrap(); 3])
        );
        // Two: one entry per slot, in order.
        assert_eq!(
            recurrent_activation_params(&[f, g, g]),
            Some(vec![f.1.unwrap(), g.1.unwrap(), g.1.unwrap()])
        );
    }

    #[test]
    fn softmax_has_no_recurrent_onnx_activation() {
        let e =
            recurrent_activation("layer 'x' (GRU)", "activation", Activation::Softmax).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("softmax") && msg.contains("'x'"), "{msg}");
        assert_eq!(
            recurrent_activation("l", "activation", Activation::Linear).unwrap(),
            ("Affine", Some((1.0, 0.0)))
        );
    }
}
