//! Export a stacked LSTM model to ONNX.
//!
//! The exported graph reproduces Keras semantics and runs in onnxruntime:
//!
//! * input `x`: float32 `[batch, T, F]` (`batch` symbolic; `T` symbolic as `timesteps` when the
//!   model has no fixed length), output `y`;
//! * each LSTM layer becomes one ONNX `LSTM` operator (opset 14 definition, exported under
//!   opset [`OPSET`]). onnxruntime only implements `layout = 0` (sequence-major,
//!   `[T, batch, in]`), so the graph transposes to sequence-major before the first LSTM of a
//!   run and back to batch-major only where a batch-major tensor is needed;
//! * Keras' gate blocks `i, f, c, o` are reordered to ONNX's `i, o, f, c`, the kernels are
//!   transposed to `W [1, 4H, in]` / `R [1, 4H, H]`, and the Keras bias goes into `Wb` with
//!   zeros in `Rb`;
//! * a Dense layer is `MatMul` (+ `Add`) (+ activation) on the last axis, so it applies per
//!   timestep on a 3-D input.
//!
//! Activations: `tanh`, `sigmoid`, `relu`, `linear` (ONNX `Affine` with alpha 1, beta 0) and
//! `hard_sigmoid` (Keras 3: `clip(x/6 + 0.5, 0, 1)`, ONNX `HardSigmoid` alpha 1/6, beta 0.5)
//! inside an LSTM; the same plus `softmax` (last axis) for Dense. Anything else is an
//! [`Error::UnsupportedFormat`] naming the activation, never a file onnxruntime cannot run.

mod proto;

use crate::error::{Error, Result};
use crate::layers::dense::DenseLayer;
use crate::layers::dropout::DropoutLayer;
use crate::layers::lstm::LstmLayer;
use crate::model::Model;
use proto::{Attr, Dim, Msg};

/// The ONNX IR version written (IR 8 goes with opsets up to 18).
pub const IR_VERSION: i64 = 8;
/// The `ai.onnx` opset imported.
pub const OPSET: i64 = 17;

/// Name of the graph input.
pub const INPUT_NAME: &str = "x";
/// Name of the graph output.
pub const OUTPUT_NAME: &str = "y";
/// Symbolic name of the batch dimension.
pub const BATCH_DIM: &str = "batch";
/// Symbolic name of the time dimension when the model has no fixed number of timesteps.
pub const TIME_DIM: &str = "timesteps";

/// Protobuf messages (the whole model included) must stay under 2 GiB; stay well clear.
const MAX_MODEL_BYTES: usize = (i32::MAX as usize) - (16 << 20);

/// One layer of the model to export, in Keras layout.
#[derive(Debug, Clone, PartialEq)]
pub enum OnnxLayer {
    /// A Keras `LSTM` layer.
    Lstm {
        /// Width of the layer's input (features of each timestep).
        input_size: usize,
        /// Number of units `H`.
        units: usize,
        /// `[input_size, 4*units]` row-major, gate blocks `i, f, c, o`.
        kernel: Vec<f32>,
        /// `[units, 4*units]` row-major, gate blocks `i, f, c, o`.
        recurrent_kernel: Vec<f32>,
        /// `[4*units]`, or `None` for `use_bias=False`.
        bias: Option<Vec<f32>>,
        /// Output every `h_t` (`[B, T, H]`) instead of only the last (`[B, H]`).
        return_sequences: bool,
        /// Keras `activation` (φ): cell candidate and output squashing.
        activation: String,
        /// Keras `recurrent_activation` (σ): the gates.
        recurrent_activation: String,
    },
    /// A Keras `Dense` layer, acting on the last axis.
    Dense {
        /// Input width.
        input_size: usize,
        /// Output width.
        units: usize,
        /// `[input_size, units]` row-major.
        kernel: Vec<f32>,
        /// `[units]`, or `None` for no bias.
        bias: Option<Vec<f32>>,
        /// `linear`, `tanh`, `sigmoid`, `relu`, `hard_sigmoid` or `softmax`.
        activation: String,
    },
}

/// Serializes `layers` as an ONNX model (`ModelProto` bytes).
///
/// `timesteps` fixes the time dimension of the input (`None`: symbolic), `features` is the
/// input width, `model_name` names the graph (an empty name becomes `stacklstm`).
pub fn export_onnx(
    layers: &[OnnxLayer],
    timesteps: Option<usize>,
    features: usize,
    model_name: &str,
) -> Result<Vec<u8>> {
    if layers.is_empty() {
        return Err(Error::config("ONNX export: the model has no layers"));
    }
    if features == 0 {
        return Err(Error::config(
            "ONNX export: the input must have at least one feature",
        ));
    }
    if timesteps == Some(0) {
        return Err(Error::config(
            "ONNX export: timesteps must be at least 1 (or None for a variable length)",
        ));
    }
    check_total_size(layers)?;

    let mut g = GraphBuilder::default();
    let mut cur = Cur {
        name: INPUT_NAME.to_string(),
        layout: Layout::BatchMajor,
        width: features,
    };
    for (k, layer) in layers.iter().enumerate() {
        cur = match layer {
            OnnxLayer::Lstm { .. } => g.lstm(k, layer, cur)?,
            OnnxLayer::Dense { .. } => g.dense(k, layer, cur)?,
        };
    }
    if cur.layout == Layout::SeqMajor {
        cur = g.transpose(
            "output/to_batch_major",
            &cur.name,
            cur.width,
            Layout::BatchMajor,
        );
    }
    g.rename_value(&cur.name, OUTPUT_NAME);

    let time = match timesteps {
        Some(t) => Dim::Value(t),
        None => Dim::Param(TIME_DIM.to_string()),
    };
    let batch = Dim::Param(BATCH_DIM.to_string());
    let in_dims = [batch.clone(), time.clone(), Dim::Value(features)];
    let out_dims: Vec<Dim> = match cur.layout {
        Layout::Flat => vec![batch, Dim::Value(cur.width)],
        _ => vec![batch, time, Dim::Value(cur.width)],
    };

    let graph_name = if model_name.is_empty() {
        "stacklstm"
    } else {
        model_name
    };
    let mut graph = Msg::new();
    for n in &g.nodes {
        let inputs: Vec<&str> = n.inputs.iter().map(String::as_str).collect();
        let outputs: Vec<&str> = n.outputs.iter().map(String::as_str).collect();
        graph.msg(1, &proto::node(&n.name, n.op, &inputs, &outputs, &n.attrs));
    }
    graph.string(2, graph_name);
    for init in &g.initializers {
        graph.msg(5, init);
    }
    graph.msg(11, &proto::value_info_f32(INPUT_NAME, &in_dims));
    graph.msg(12, &proto::value_info_f32(OUTPUT_NAME, &out_dims));
    if graph.len() > MAX_MODEL_BYTES {
        return Err(too_big(graph.len()));
    }

    let mut model = Msg::new();
    model
        .int(1, IR_VERSION)
        .string(2, "stacklstm")
        .string(3, env!("CARGO_PKG_VERSION"))
        .msg(7, &graph)
        .msg(8, &proto::opset(OPSET));
    Ok(model.into_bytes())
}

fn too_big(bytes: usize) -> Error {
    Error::UnsupportedFormat {
        found: format!("an ONNX model of about {bytes} bytes (protobuf's limit is 2 GiB)"),
        supported: "models whose weights total under 2 GiB (external data is not written)"
            .to_string(),
    }
}

/// Rejects models whose weights alone would exceed the protobuf size limit, before copying.
fn check_total_size(layers: &[OnnxLayer]) -> Result<()> {
    let mut floats: usize = 0;
    for layer in layers {
        let n = match layer {
            OnnxLayer::Lstm {
                kernel,
                recurrent_kernel,
                bias,
                ..
            } => kernel
                .len()
                .saturating_add(recurrent_kernel.len())
                .saturating_add(bias.as_ref().map_or(0, |b| 2 * b.len())),
            OnnxLayer::Dense { kernel, bias, .. } => kernel
                .len()
                .saturating_add(bias.as_ref().map_or(0, Vec::len)),
        };
        floats = floats.saturating_add(n);
    }
    let bytes = floats.saturating_mul(4);
    if bytes > MAX_MODEL_BYTES {
        return Err(too_big(bytes));
    }
    Ok(())
}

/// How the current value's axes are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `[batch, T, width]`.
    BatchMajor,
    /// `[T, batch, width]` (what ONNX `LSTM` consumes and produces).
    SeqMajor,
    /// `[batch, width]`.
    Flat,
}

/// The value flowing between layers.
#[derive(Debug, Clone)]
struct Cur {
    name: String,
    layout: Layout,
    width: usize,
}

#[derive(Debug)]
struct NodeSpec {
    name: String,
    op: &'static str,
    inputs: Vec<String>,
    outputs: Vec<String>,
    attrs: Vec<(&'static str, Attr)>,
}

#[derive(Debug, Default)]
struct GraphBuilder {
    nodes: Vec<NodeSpec>,
    initializers: Vec<Msg>,
    /// Names of the int64 `axes` initializers already added, by axis.
    axes: Vec<i64>,
}

impl GraphBuilder {
    fn push(
        &mut self,
        name: String,
        op: &'static str,
        inputs: Vec<String>,
        outputs: Vec<String>,
        attrs: Vec<(&'static str, Attr)>,
    ) {
        self.nodes.push(NodeSpec {
            name,
            op,
            inputs,
            outputs,
            attrs,
        });
    }

    /// Renames a value everywhere it appears (used to give the final value the name `y`).
    fn rename_value(&mut self, from: &str, to: &str) {
        for n in &mut self.nodes {
            for v in n.inputs.iter_mut().chain(n.outputs.iter_mut()) {
                if v == from {
                    *v = to.to_string();
                }
            }
        }
    }

    /// The name of a one-element int64 initializer holding `axis` (for `Squeeze`).
    fn axes_init(&mut self, axis: i64) -> String {
        let name = format!("const/axes_{axis}");
        if !self.axes.contains(&axis) {
            self.axes.push(axis);
            self.initializers
                .push(proto::tensor_i64(&name, &[1], &[axis]));
        }
        name
    }

    /// Swaps the first two axes (`[A, B, C] -> [B, A, C]`).
    fn transpose(&mut self, node: &str, input: &str, width: usize, to: Layout) -> Cur {
        let out = format!("{node}:0");
        self.push(
            node.to_string(),
            "Transpose",
            vec![input.to_string()],
            vec![out.clone()],
            vec![("perm", Attr::Ints(vec![1, 0, 2]))],
        );
        Cur {
            name: out,
            layout: to,
            width,
        }
    }

    fn lstm(&mut self, k: usize, layer: &OnnxLayer, cur: Cur) -> Result<Cur> {
        let OnnxLayer::Lstm {
            input_size,
            units,
            kernel,
            recurrent_kernel,
            bias,
            return_sequences,
            activation,
            recurrent_activation,
        } = layer
        else {
            return Err(Error::config(format!("layer {k}: not an LSTM layer")));
        };
        let (input_size, h) = (*input_size, *units);
        let what = format!("layer {k} (lstm)");
        if h == 0 {
            return Err(Error::config(format!("{what}: units must be at least 1")));
        }
        if input_size != cur.width {
            return Err(Error::ShapeMismatch {
                layer: what,
                expected: format!("input_size {}", cur.width),
                got: format!("input_size {input_size}"),
            });
        }
        if cur.layout == Layout::Flat {
            return Err(Error::config(format!(
                "{what}: an LSTM needs a 3-D sequence input [batch, T, features], but the \
                 previous layer outputs [batch, {}]; set return_sequences on the LSTM before it",
                cur.width
            )));
        }
        let h4 = h
            .checked_mul(4)
            .ok_or_else(|| Error::config(format!("{what}: units {h} too large")))?;
        check_len(&what, "kernel", kernel.len(), &[input_size, h4])?;
        check_len(&what, "recurrent_kernel", recurrent_kernel.len(), &[h, h4])?;
        if let Some(b) = bias {
            check_len(&what, "bias", b.len(), &[h4])?;
        }
        let (f_name, f_par) = lstm_activation(&what, "recurrent_activation", recurrent_activation)?;
        let (g_name, g_par) = lstm_activation(&what, "activation", activation)?;

        let cur = if cur.layout == Layout::BatchMajor {
            self.transpose(
                &format!("lstm{k}/to_seq_major"),
                &cur.name,
                cur.width,
                Layout::SeqMajor,
            )
        } else {
            cur
        };

        // Keras blocks i, f, c, o -> ONNX blocks i, o, f, c.
        const KERAS_BLOCK_FOR_ONNX: [usize; 4] = [0, 3, 1, 2];
        let w = reorder_transpose(kernel, input_size, h, &KERAS_BLOCK_FOR_ONNX);
        let r = reorder_transpose(recurrent_kernel, h, h, &KERAS_BLOCK_FOR_ONNX);
        let w_name = format!("lstm{k}/W");
        let r_name = format!("lstm{k}/R");
        self.initializers
            .push(proto::tensor_f32(&w_name, &[1, h4, input_size], &w));
        self.initializers
            .push(proto::tensor_f32(&r_name, &[1, h4, h], &r));
        let mut inputs = vec![cur.name.clone(), w_name, r_name];
        if let Some(b) = bias {
            let mut bb = vec![0.0f32; 2 * h4];
            for (og, &kg) in KERAS_BLOCK_FOR_ONNX.iter().enumerate() {
                bb[og * h..(og + 1) * h].copy_from_slice(&b[kg * h..(kg + 1) * h]);
            }
            let b_name = format!("lstm{k}/B");
            self.initializers
                .push(proto::tensor_f32(&b_name, &[1, 2 * h4], &bb));
            inputs.push(b_name);
        }

        let mut attrs: Vec<(&'static str, Attr)> = vec![
            ("hidden_size", Attr::Int(h as i64)),
            ("direction", Attr::Str("forward".into())),
            (
                "activations",
                Attr::Strs(vec![f_name.into(), g_name.into(), g_name.into()]),
            ),
        ];
        // onnxruntime hands activation_alpha/beta out in order to the activations that take
        // parameters; the ONNX text can also be read as one entry per activation. Since g and
        // h are the same function, the lists below mean the same under both readings.
        let params: Option<Vec<(f32, f32)>> = match (f_par, g_par) {
            (Some(f), Some(g)) => Some(vec![f, g, g]),
            (None, Some(g)) => Some(vec![g, g, g]),
            (Some(f), None) => Some(vec![f]),
            (None, None) => None,
        };
        if let Some(p) = params {
            attrs.push((
                "activation_alpha",
                Attr::Floats(p.iter().map(|x| x.0).collect()),
            ));
            attrs.push((
                "activation_beta",
                Attr::Floats(p.iter().map(|x| x.1).collect()),
            ));
        }

        let node = format!("lstm{k}/LSTM");
        let (outputs, squeeze_axis, layout) = if *return_sequences {
            (vec![format!("{node}:Y")], 1, Layout::SeqMajor)
        } else {
            (vec![String::new(), format!("{node}:Y_h")], 0, Layout::Flat)
        };
        let produced = outputs.last().cloned().unwrap_or_default();
        self.push(node, "LSTM", inputs, outputs, attrs);

        // Y [T, 1, B, H] -> [T, B, H]; Y_h [1, B, H] -> [B, H].
        let axes = self.axes_init(squeeze_axis);
        let sq = format!("lstm{k}/squeeze");
        let out = format!("{sq}:0");
        self.push(
            sq,
            "Squeeze",
            vec![produced, axes],
            vec![out.clone()],
            vec![],
        );
        Ok(Cur {
            name: out,
            layout,
            width: h,
        })
    }

    fn dense(&mut self, k: usize, layer: &OnnxLayer, cur: Cur) -> Result<Cur> {
        let OnnxLayer::Dense {
            input_size,
            units,
            kernel,
            bias,
            activation,
        } = layer
        else {
            return Err(Error::config(format!("layer {k}: not a Dense layer")));
        };
        let (input_size, n) = (*input_size, *units);
        let what = format!("layer {k} (dense)");
        if n == 0 {
            return Err(Error::config(format!("{what}: units must be at least 1")));
        }
        if input_size != cur.width {
            return Err(Error::ShapeMismatch {
                layer: what,
                expected: format!("input_size {}", cur.width),
                got: format!("input_size {input_size}"),
            });
        }
        check_len(&what, "kernel", kernel.len(), &[input_size, n])?;
        if let Some(b) = bias {
            check_len(&what, "bias", b.len(), &[n])?;
        }
        let act = dense_activation(&what, activation)?;

        let k_name = format!("dense{k}/kernel");
        self.initializers
            .push(proto::tensor_f32(&k_name, &[input_size, n], kernel));
        let mm = format!("dense{k}/MatMul");
        let mut out = format!("{mm}:0");
        self.push(
            mm,
            "MatMul",
            vec![cur.name.clone(), k_name],
            vec![out.clone()],
            vec![],
        );
        if let Some(b) = bias {
            let b_name = format!("dense{k}/bias");
            self.initializers.push(proto::tensor_f32(&b_name, &[n], b));
            let add = format!("dense{k}/Add");
            let o = format!("{add}:0");
            self.push(add, "Add", vec![out, b_name], vec![o.clone()], vec![]);
            out = o;
        }
        if let Some((op, attrs)) = act {
            let node = format!("dense{k}/{op}");
            let o = format!("{node}:0");
            self.push(node, op, vec![out], vec![o.clone()], attrs);
            out = o;
        }
        Ok(Cur {
            name: out,
            layout: cur.layout,
            width: n,
        })
    }
}

/// Checks that a weight vector holds exactly the product of `dims` values.
fn check_len(what: &str, field: &str, len: usize, dims: &[usize]) -> Result<()> {
    let want = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let shape = crate::error::shape_str(dims);
    match want {
        Some(w) if w == len => Ok(()),
        _ => Err(Error::ShapeMismatch {
            layer: what.to_string(),
            expected: format!(
                "{field} {shape} ({} values)",
                want.map_or("too many".into(), |w| w.to_string())
            ),
            got: format!("{len} values"),
        }),
    }
}

/// Transposes a Keras `[rows, 4h]` matrix into ONNX's `[4h, rows]` with the gate blocks
/// reordered: output block `og` is Keras block `order[og]`.
fn reorder_transpose(m: &[f32], rows: usize, h: usize, order: &[usize; 4]) -> Vec<f32> {
    let cols = 4 * h;
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

const LSTM_ACTIVATIONS: &str = "tanh, sigmoid, relu, linear, hard_sigmoid";
const DENSE_ACTIVATIONS: &str = "linear, tanh, sigmoid, relu, hard_sigmoid, softmax";

/// Keras 3 `hard_sigmoid`: `clip(x/6 + 0.5, 0, 1)`.
const HARD_SIGMOID: (f32, f32) = (1.0 / 6.0, 0.5);

/// Maps a Keras activation to the ONNX `LSTM` activation name and its (alpha, beta).
fn lstm_activation(
    what: &str,
    field: &str,
    name: &str,
) -> Result<(&'static str, Option<(f32, f32)>)> {
    Ok(match name {
        "tanh" => ("Tanh", None),
        "sigmoid" => ("Sigmoid", None),
        "relu" => ("Relu", None),
        "linear" => ("Affine", Some((1.0, 0.0))),
        "hard_sigmoid" => ("HardSigmoid", Some(HARD_SIGMOID)),
        other => {
            return Err(Error::UnsupportedFormat {
                found: format!("{field} '{other}' in {what} for ONNX export"),
                supported: LSTM_ACTIVATIONS.to_string(),
            })
        }
    })
}

/// Maps a Keras Dense activation to an ONNX node (op, attributes); `None` for linear.
#[allow(clippy::type_complexity)]
fn dense_activation(
    what: &str,
    name: &str,
) -> Result<Option<(&'static str, Vec<(&'static str, Attr)>)>> {
    Ok(match name {
        "linear" => None,
        "tanh" => Some(("Tanh", vec![])),
        "sigmoid" => Some(("Sigmoid", vec![])),
        "relu" => Some(("Relu", vec![])),
        "softmax" => Some(("Softmax", vec![("axis", Attr::Int(-1))])),
        "hard_sigmoid" => Some((
            "HardSigmoid",
            vec![
                ("alpha", Attr::Float(HARD_SIGMOID.0)),
                ("beta", Attr::Float(HARD_SIGMOID.1)),
            ],
        )),
        other => {
            return Err(Error::UnsupportedFormat {
                found: format!("activation '{other}' in {what} for ONNX export"),
                supported: DENSE_ACTIVATIONS.to_string(),
            })
        }
    })
}

/// The layers of a built model, ready for [`export_onnx`]: an LSTM or Dense layer maps to
/// an [`OnnxLayer`], an inference-time identity (Dropout) to nothing, anything else to an
/// error naming it.
fn layers_of(model: &Model) -> Result<Vec<OnnxLayer>> {
    let mut out = Vec::new();
    for layer in model.layers() {
        let any = layer.as_any();
        let values = |k: usize| layer.weights().get(k).map(|w| w.values.to_vec());
        if let Some(l) = any.downcast_ref::<LstmLayer>() {
            let spec = l.spec();
            if spec.stateful {
                return Err(Error::UnsupportedFormat {
                    found: format!("ONNX export of stateful LSTM '{}'", layer.name()),
                    supported: "stateless LSTMs (each sequence starts from zero state)".into(),
                });
            }
            out.push(OnnxLayer::Lstm {
                input_size: l.input_width(),
                units: spec.units,
                kernel: values(0).unwrap_or_default(),
                recurrent_kernel: values(1).unwrap_or_default(),
                bias: if spec.use_bias { values(2) } else { None },
                return_sequences: spec.return_sequences,
                activation: spec.activation.name().to_string(),
                recurrent_activation: spec.recurrent_activation.name().to_string(),
            });
        } else if let Some(d) = any.downcast_ref::<DenseLayer>() {
            let spec = d.spec();
            let w = layer.weights();
            out.push(OnnxLayer::Dense {
                input_size: w[0].shape[0],
                units: spec.units,
                kernel: values(0).unwrap_or_default(),
                bias: if spec.use_bias { values(1) } else { None },
                activation: spec.activation.name().to_string(),
            });
        } else if !any.is::<DropoutLayer>() {
            // Dropout is the identity at inference.
            return Err(Error::UnsupportedFormat {
                found: format!("ONNX export of layer '{}' ({})", layer.name(), layer.kind()),
                supported: "ONNX export of LSTM, Dense and Dropout (identity) layers".into(),
            });
        }
    }
    Ok(out)
}

/// Exports a built model as ONNX bytes (input `x` `[batch, T, F]`, output `y`).
///
/// # Errors
/// [`Error::UnsupportedFormat`] for a layer or activation ONNX cannot express here, or a
/// model over protobuf's 2 GiB limit.
pub fn export_model(model: &Model) -> Result<Vec<u8>> {
    let layers = layers_of(model)?;
    let (t, f) = model.input_shape();
    export_onnx(&layers, t, f, &model.spec().name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lstm(input_size: usize, units: usize, rs: bool, act: &str, ract: &str) -> OnnxLayer {
        OnnxLayer::Lstm {
            input_size,
            units,
            kernel: vec![0.1; input_size * 4 * units],
            recurrent_kernel: vec![0.2; units * 4 * units],
            bias: Some(vec![0.0; 4 * units]),
            return_sequences: rs,
            activation: act.into(),
            recurrent_activation: ract.into(),
        }
    }

    fn dense(input_size: usize, units: usize, act: &str) -> OnnxLayer {
        OnnxLayer::Dense {
            input_size,
            units,
            kernel: vec![0.5; input_size * units],
            bias: None,
            activation: act.into(),
        }
    }

    #[test]
    fn gate_reorder_and_transpose() {
        // input_size 2, h 1: Keras kernel [2, 4] columns i f c o.
        let k = [1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0];
        let w = reorder_transpose(&k, 2, 1, &[0, 3, 1, 2]);
        // ONNX W [4, 2], rows i o f c.
        assert_eq!(w, vec![1.0, 10.0, 4.0, 40.0, 2.0, 20.0, 3.0, 30.0]);
    }

    #[test]
    fn rejects_bad_models() {
        let unsupported = |r: Result<Vec<u8>>| matches!(r, Err(Error::UnsupportedFormat { .. }));
        assert!(unsupported(export_onnx(
            &[lstm(2, 3, false, "softmax", "sigmoid")],
            None,
            2,
            "m"
        )));
        assert!(unsupported(export_onnx(
            &[lstm(2, 3, false, "tanh", "elu")],
            None,
            2,
            "m"
        )));
        assert!(unsupported(export_onnx(
            &[dense(2, 3, "gelu")],
            None,
            2,
            "m"
        )));
        let err = export_onnx(&[lstm(2, 3, false, "tanh", "swish")], None, 2, "m").unwrap_err();
        assert!(err.to_string().contains("swish"), "{err}");

        assert!(export_onnx(&[], None, 2, "m").is_err());
        assert!(export_onnx(&[lstm(2, 3, false, "tanh", "sigmoid")], Some(0), 2, "m").is_err());
        assert!(export_onnx(&[lstm(2, 3, false, "tanh", "sigmoid")], None, 0, "m").is_err());
        // width mismatch
        assert!(matches!(
            export_onnx(&[lstm(3, 3, false, "tanh", "sigmoid")], None, 2, "m"),
            Err(Error::ShapeMismatch { .. })
        ));
        // LSTM after an LSTM that returns only its last state
        assert!(matches!(
            export_onnx(
                &[
                    lstm(2, 3, false, "tanh", "sigmoid"),
                    lstm(3, 3, false, "tanh", "sigmoid")
                ],
                None,
                2,
                "m"
            ),
            Err(Error::InvalidConfig(_))
        ));
        // wrong weight lengths
        let mut l = lstm(2, 3, false, "tanh", "sigmoid");
        if let OnnxLayer::Lstm { bias, .. } = &mut l {
            *bias = Some(vec![0.0; 5]);
        }
        assert!(matches!(
            export_onnx(&[l], None, 2, "m"),
            Err(Error::ShapeMismatch { .. })
        ));
        let mut l = lstm(2, 3, false, "tanh", "sigmoid");
        if let OnnxLayer::Lstm { kernel, .. } = &mut l {
            kernel.pop();
        }
        assert!(export_onnx(&[l], None, 2, "m").is_err());
        // sizes whose product overflows
        let huge = OnnxLayer::Lstm {
            input_size: usize::MAX,
            units: usize::MAX / 2,
            kernel: vec![],
            recurrent_kernel: vec![],
            bias: None,
            return_sequences: true,
            activation: "tanh".into(),
            recurrent_activation: "sigmoid".into(),
        };
        assert!(export_onnx(&[huge], None, usize::MAX, "m").is_err());
        let huge = OnnxLayer::Dense {
            input_size: 2,
            units: usize::MAX,
            kernel: vec![],
            bias: None,
            activation: "linear".into(),
        };
        assert!(export_onnx(&[huge], None, 2, "m").is_err());
    }

    #[test]
    fn builds_supported_models() {
        let m = export_onnx(
            &[
                dense(2, 2, "relu"),
                lstm(2, 3, true, "linear", "hard_sigmoid"),
                lstm(3, 4, true, "relu", "sigmoid"),
                dense(4, 2, "softmax"),
            ],
            None,
            2,
            "",
        )
        .unwrap();
        assert!(!m.is_empty());
        // graph name defaults, input/output names present
        let contains = |s: &[u8]| m.windows(s.len()).any(|w| w == s);
        assert!(contains(b"stacklstm"));
        assert!(contains(b"HardSigmoid"));
        assert!(contains(b"Affine"));
        assert!(contains(b"timesteps"));
    }
}
