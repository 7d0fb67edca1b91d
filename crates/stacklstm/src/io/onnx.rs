//! Export a built model to ONNX.
//!
//! The exported graph reproduces Keras semantics and runs in onnxruntime:
//!
//! * input `x`: float32 `[batch, T, F]` (`batch` symbolic; `T` symbolic as `timesteps` when the
//!   model has no fixed length), output `y`;
//! * each layer adds its own initializers and nodes through its
//!   [`Layer::export_onnx`](crate::layers::Layer::export_onnx) hook, written against the
//!   [`OnnxGraph`] this module implements: an LSTM becomes one ONNX `LSTM` operator and a GRU
//!   one ONNX `GRU` operator (`linear_before_reset` 1 for Keras' `reset_after`, 0 for its
//!   reset-before form; opset 14 definitions, exported under opset [`OPSET`]), a Dense layer
//!   `MatMul` (+ `Add`) (+ activation) on the last axis, a Dropout nothing (the identity at
//!   inference); a layer without a hook (Embedding) is an [`Error::UnsupportedFormat`]
//!   naming it;
//! * a `Masking` layer computes the step mask in the graph from the input; ONNX's recurrent
//!   operators only take `sequence_lens` (padding at the end of a row), so each masked
//!   recurrent layer gathers a row's kept steps to its front, runs with `sequence_lens` =
//!   their count, and gathers its outputs back to Keras' positions (the carried state at
//!   masked steps): every padding pattern is exported exactly (see
//!   [`OnnxStepMask`]);
//! * onnxruntime only implements the `LSTM` and `GRU` operators' `layout = 0`
//!   (sequence-major, `[T, batch, in]`), so the graph transposes to sequence-major before the
//!   first recurrent layer of a run and back to batch-major only where a batch-major tensor
//!   is needed.
//!
//! Activations: `tanh`, `sigmoid`, `relu`, `linear` (ONNX `Affine` with alpha 1, beta 0) and
//! `hard_sigmoid` (Keras 3: `clip(x/6 + 0.5, 0, 1)`, ONNX `HardSigmoid` alpha 1/6, beta 0.5)
//! inside an LSTM or GRU; the same plus `softmax` (last axis) for Dense. Stateful recurrent
//! layers are refused (the graph starts every sequence from zero state); dropout is the
//! identity at inference and exports as nothing.
//!
//! This module owns the graph, the protobuf encoding (a small writer of our own, `proto`)
//! and protobuf's 2 GiB size limit; it knows no layer kind.

mod proto;

use crate::error::{Error, Result};
use crate::layers::onnx::{OnnxAttr, OnnxGraph, OnnxLayout, OnnxStepMask, OnnxValue};
use crate::model::Model;
use proto::{Dim, Msg};

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

/// Exports a built model as ONNX bytes (`ModelProto`): input `x` `[batch, T, F]`, output `y`,
/// the graph named after the model (`stacklstm` when the name is empty).
///
/// # Errors
/// [`Error::UnsupportedFormat`] for a layer (or a layer option) ONNX cannot express here,
/// naming it, or a model over protobuf's 2 GiB limit.
pub fn export_model(model: &Model) -> Result<Vec<u8>> {
    export_with_limit(model, MAX_MODEL_BYTES)
}

/// [`export_model`] with the size limit as a parameter (tests lower it).
fn export_with_limit(model: &Model, max_bytes: usize) -> Result<Vec<u8>> {
    // Refuse before copying anything when the weights alone are over the limit.
    let weight_bytes = model.param_count().saturating_mul(4);
    if weight_bytes > max_bytes {
        return Err(too_big(weight_bytes));
    }
    let (timesteps, features) = model.input_shape();
    let mut g = GraphBuilder {
        max_bytes,
        ..GraphBuilder::default()
    };
    let mut cur = OnnxValue {
        name: INPUT_NAME.to_string(),
        layout: OnnxLayout::BatchMajor,
        width: features,
    };
    for layer in model.layers() {
        cur = layer.export_onnx(&mut g, cur)?;
    }
    if cur.layout == OnnxLayout::SeqMajor {
        cur = g.to_layout(cur, OnnxLayout::BatchMajor, "output/to_batch_major")?;
    }
    if cur.name == INPUT_NAME {
        // Every layer was an identity: the output still needs a node of its own.
        g.add_node(
            "output/Identity".into(),
            "Identity",
            vec![cur.name.clone()],
            vec![OUTPUT_NAME.into()],
            vec![],
        );
    } else {
        g.rename_value(&cur.name, OUTPUT_NAME);
    }

    let time = match timesteps {
        Some(t) => Dim::Value(t),
        None => Dim::Param(TIME_DIM.to_string()),
    };
    let batch = Dim::Param(BATCH_DIM.to_string());
    let in_dims = [batch.clone(), time.clone(), Dim::Value(features)];
    let out_dims: Vec<Dim> = match cur.layout {
        OnnxLayout::Flat => vec![batch, Dim::Value(cur.width)],
        _ => vec![batch, time, Dim::Value(cur.width)],
    };

    let model_name = &model.spec().name;
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
    if graph.len() > max_bytes {
        return Err(too_big(graph.len()));
    }

    let mut bytes = Msg::new();
    bytes
        .int(1, IR_VERSION)
        .string(2, "stacklstm")
        .string(3, env!("CARGO_PKG_VERSION"))
        .msg(7, &graph)
        .msg(8, &proto::opset(OPSET));
    Ok(bytes.into_bytes())
}

fn too_big(bytes: usize) -> Error {
    Error::UnsupportedFormat {
        found: format!("an ONNX model of about {bytes} bytes (protobuf's limit is 2 GiB)"),
        supported: "models whose weights total under 2 GiB (external data is not written)"
            .to_string(),
    }
}

#[derive(Debug)]
struct NodeSpec {
    name: String,
    op: &'static str,
    inputs: Vec<String>,
    outputs: Vec<String>,
    attrs: Vec<(&'static str, OnnxAttr)>,
}

/// The graph under construction: what the layers' hooks add, in order.
#[derive(Debug, Default)]
struct GraphBuilder {
    nodes: Vec<NodeSpec>,
    initializers: Vec<Msg>,
    /// The int64 `axes` initializers already added, by axis.
    axes: Vec<i64>,
    /// Layers that asked for a name prefix so far.
    prefixes: usize,
    /// Bytes of initializer data so far, and the most allowed.
    init_bytes: usize,
    max_bytes: usize,
    /// The step mask of the value flowing through the graph.
    step_mask: Option<OnnxStepMask>,
}

impl GraphBuilder {
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
}

impl OnnxGraph for GraphBuilder {
    fn layer_prefix(&mut self, base: &str) -> String {
        let p = format!("{base}{}", self.prefixes);
        self.prefixes += 1;
        p
    }

    fn add_initializer(&mut self, name: &str, dims: &[usize], values: &[f32]) -> Result<()> {
        debug_assert_eq!(dims.iter().product::<usize>(), values.len(), "{name}");
        self.init_bytes = self
            .init_bytes
            .saturating_add(values.len().saturating_mul(4));
        if self.init_bytes > self.max_bytes {
            return Err(too_big(self.init_bytes));
        }
        self.initializers
            .push(proto::tensor_f32(name, dims, values));
        Ok(())
    }

    fn axes(&mut self, axis: i64) -> String {
        let name = format!("const/axes_{axis}");
        if !self.axes.contains(&axis) {
            self.axes.push(axis);
            self.initializers
                .push(proto::tensor_i64(&name, &[1], &[axis]));
        }
        name
    }

    fn add_initializer_i64(&mut self, name: &str, dims: &[usize], values: &[i64]) {
        self.initializers
            .push(proto::tensor_i64(name, dims, values));
    }

    fn step_mask(&self) -> Option<OnnxStepMask> {
        self.step_mask.clone()
    }

    fn set_step_mask(&mut self, mask: Option<OnnxStepMask>) {
        self.step_mask = mask;
    }

    fn add_node(
        &mut self,
        name: String,
        op: &'static str,
        inputs: Vec<String>,
        outputs: Vec<String>,
        attrs: Vec<(&'static str, OnnxAttr)>,
    ) {
        self.nodes.push(NodeSpec {
            name,
            op,
            inputs,
            outputs,
            attrs,
        });
    }

    /// Swaps the first two axes (`[A, B, C] -> [B, A, C]`).
    fn to_layout(&mut self, value: OnnxValue, to: OnnxLayout, node: &str) -> Result<OnnxValue> {
        if value.layout == to {
            return Ok(value);
        }
        if value.layout == OnnxLayout::Flat || to == OnnxLayout::Flat {
            return Err(Error::config(format!(
                "ONNX export: {node}: a [batch, {}] value has no time axis to move",
                value.width
            )));
        }
        let out = format!("{node}:0");
        self.add_node(
            node.to_string(),
            "Transpose",
            vec![value.name],
            vec![out.clone()],
            vec![("perm", OnnxAttr::Ints(vec![1, 0, 2]))],
        );
        Ok(OnnxValue {
            name: out,
            layout: to,
            width: value.width,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::activation::Activation;
    use crate::layers::dense::Dense;
    use crate::layers::dropout::Dropout;
    use crate::layers::embedding::Embedding;
    use crate::layers::gru::Gru;
    use crate::layers::lstm::Lstm;
    use crate::model::Sequential;

    fn contains(bytes: &[u8], s: &str) -> bool {
        bytes.windows(s.len()).any(|w| w == s.as_bytes())
    }

    #[test]
    fn builds_supported_models() {
        let model = Sequential::new()
            .name("")
            .input_features(2)
            .add(Dense::new(2).activation(Activation::Relu))
            .add(
                Lstm::new(3)
                    .return_sequences(true)
                    .activation(Activation::Linear)
                    .recurrent_activation(Activation::HardSigmoid),
            )
            .add(Dropout::new(0.5))
            .add(
                Lstm::new(4)
                    .return_sequences(true)
                    .activation(Activation::Relu),
            )
            .add(Dense::new(2).activation(Activation::Softmax))
            .build()
            .unwrap();
        let m = export_model(&model).unwrap();
        // graph name defaults; input/output names and the symbolic time axis present
        for s in ["stacklstm", "HardSigmoid", "Affine", "timesteps", "Softmax"] {
            assert!(contains(&m, s), "{s}");
        }
        // A Dropout adds nothing and does not shift the names of the layers after it.
        for s in ["dense0/kernel", "lstm1/W", "lstm2/W", "dense3/MatMul"] {
            assert!(contains(&m, s), "{s}");
        }
        // The two LSTMs share one sequence-major run: one transpose in, one out.
        assert!(contains(&m, "lstm1/to_seq_major") && !contains(&m, "lstm2/to_seq_major"));
        assert!(contains(&m, "output/to_batch_major"));
    }

    #[test]
    fn builds_gru_models_in_both_reset_modes() {
        let model = Sequential::new()
            .input_shape(4, 2)
            .add(Gru::new(3).return_sequences(true))
            .add(Lstm::new(2).return_sequences(true))
            .add(
                Gru::new(2)
                    .reset_after(false)
                    .use_bias(false)
                    .activation(Activation::Relu)
                    .recurrent_activation(Activation::HardSigmoid),
            )
            .add(Dense::new(1))
            .build()
            .unwrap();
        let m = export_model(&model).unwrap();
        for s in [
            "gru0/W",
            "gru0/R",
            "gru0/B",
            "gru0/GRU",
            "linear_before_reset",
            "lstm1/LSTM",
            "gru2/GRU",
            "HardSigmoid",
            "Relu",
        ] {
            assert!(contains(&m, s), "{s}");
        }
        // Without a bias the GRU has no `B` input; the three recurrent layers share one
        // sequence-major run.
        assert!(!contains(&m, "gru2/B"));
        assert!(contains(&m, "gru0/to_seq_major") && !contains(&m, "gru2/to_seq_major"));
    }

    #[test]
    fn a_model_of_identities_still_has_an_output_node() {
        let model = Sequential::new()
            .input_shape(3, 2)
            .add(Dropout::new(0.1))
            .build()
            .unwrap();
        let m = export_model(&model).unwrap();
        assert!(contains(&m, "output/Identity"));
    }

    #[test]
    fn refuses_what_onnx_cannot_run() {
        let model = Sequential::new()
            .input_shape(3, 1)
            .add(Embedding::new(5, 2).name("emb"))
            .add(Lstm::new(2))
            .build()
            .unwrap();
        let err = export_model(&model).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::UnsupportedFormat { .. }), "{err:?}");
        assert!(msg.contains("'emb'") && msg.contains("Embedding"), "{msg}");

        let model = Sequential::new()
            .input_shape(3, 1)
            .add(Lstm::new(2).stateful(true).name("carry"))
            .build()
            .unwrap();
        let msg = export_model(&model).unwrap_err().to_string();
        assert!(msg.contains("stateful") && msg.contains("'carry'"), "{msg}");

        let model = Sequential::new()
            .input_shape(3, 1)
            .add(Gru::new(2).stateful(true).name("carry_gru"))
            .build()
            .unwrap();
        let err = export_model(&model).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::UnsupportedFormat { .. }), "{err:?}");
        assert!(msg.contains("stateful layer 'carry_gru' (GRU)"), "{msg}");
    }

    #[test]
    fn refuses_models_over_the_size_limit() {
        let model = Sequential::new()
            .input_shape(3, 2)
            .add(Lstm::new(4))
            .add(Dense::new(1))
            .build()
            .unwrap();
        let weights = model.param_count() * 4;
        let too_big = |r: Result<Vec<u8>>| matches!(r, Err(Error::UnsupportedFormat { .. }));
        // Under the weights alone: refused before any copy.
        assert!(too_big(export_with_limit(&model, weights - 1)));
        // The LSTM's zero recurrent bias `Rb` goes over: refused while adding it.
        assert!(too_big(export_with_limit(&model, weights)));
        // The protobuf framing goes over: refused on the finished graph.
        let initializers = weights + 16 * 4;
        assert!(too_big(export_with_limit(&model, initializers)));
        assert!(export_with_limit(&model, initializers + 4096).is_ok());
    }
}
