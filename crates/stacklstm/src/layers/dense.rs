//! The Dense layer: `y = act(x · kernel + bias)` on the last axis.
//!
//! Legend: `N` = rows (batch, or timesteps × batch on a sequence), `D` = input width,
//! `U` = units. On a sequence `[B, T, D]` it applies to every timestep (Keras `Dense` on a
//! 3-D input, i.e. `TimeDistributed(Dense)`): the rows are simply all `T·B` positions.
//!
//! Backward, with `y` cached post-activation:
//! ```text
//! dz = dy ⊙ act'(y)                 (softmax: dz = y ⊙ (dy - Σ_j dy_j y_j), per row)
//! d kernel += xᵀ · dz   d bias += Σ_rows dz   dx = dz · kernelᵀ
//! ```


use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::init::{glorot_uniform, Rng};
use crate::kernels::activation::Activation;
use crate::kernels::matmul::{sgemm, Trans};
use crate::kernels::softmax::softmax_in_place;
use crate::layers::keras::{FromKeras, KerasConfig, REGULARIZERS};
use crate::layers::onnx::{OnnxAttr, OnnxGraph, OnnxValue, HARD_SIGMOID};
use crate::layers::{
    cache_mut, cache_ref, check_size, Backward, Cache, Layer, LayerConfig, OutShape, Part,
    StackInput, State, Weight,
};

/// Specification of a Dense layer.
///
/// # Shapes
/// `[batch, features]` to `[batch, units]`, or `[batch, timesteps, features]` to
/// `[batch, timesteps, units]` (applied to every timestep).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dense {
    /// Output width `U`.
    pub units: usize,
    /// Output activation (linear by default).
    pub activation: Activation,
    /// Add a bias.
    pub use_bias: bool,
    /// Layer name; Keras-style defaults (`dense`, `dense_1`, ...) when `None`.
    pub name: Option<String>,
    /// Whether training updates the weights (Keras `trainable`, default true).
    #[serde(skip_serializing_if = "crate::layers::is_true")]
    pub trainable: bool,
}

impl Default for Dense {
    fn default() -> Self {
        Dense {
            units: 1,
            activation: Activation::Linear,
            use_bias: true,
            name: None,
            trainable: true,
        }
    }
}

impl Dense {
    /// A Dense layer with `units` outputs, linear activation and a bias.
    #[must_use]
    pub fn new(units: usize) -> Self {
        Dense {
            units,
            ..Dense::default()
        }
    }
    /// Sets the activation.
    #[must_use]
    pub fn activation(mut self, a: Activation) -> Self {
        self.activation = a;
        self
    }
    /// Sets `use_bias`.
    #[must_use]
    pub fn use_bias(mut self, on: bool) -> Self {
        self.use_bias = on;
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

    /// Number of weights for input width `d`.
    pub fn param_count(&self, d: usize) -> usize {
        d * self.units + if self.use_bias { self.units } else { 0 }
    }

    /// Checks the options and the size.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the layer.
    pub fn validate(&self, name: &str, input_width: usize) -> Result<()> {
        if self.units == 0 {
            return Err(Error::config(format!(
                "layer '{name}' (Dense): units must be at least 1, got 0"
            )));
        }
        check_size(name, "Dense", &[input_width + 1, self.units])
    }
}

/// A built Dense layer with its weights.
#[derive(Debug, Clone)]
pub struct DenseLayer {
    spec: Dense,
    name: String,
    /// Input width `D`.
    input_width: usize,
    /// `[D, U]`.
    kernel: Vec<f32>,
    /// `[U]`; empty when `use_bias` is false.
    bias: Vec<f32>,
    /// Keras shapes of `kernel` and `bias`.
    shapes: ([usize; 2], [usize; 1]),
}

/// What forward keeps for backward.
#[derive(Debug, Default)]
struct DenseCache {
    /// `[N, U]`: the output, post-activation.
    y: Vec<f32>,
    /// `[N, U]`: `dz` of the last backward (unused for a linear layer, whose `dz` is `dy`).
    dz: Vec<f32>,
}

impl LayerConfig for Dense {
    config_identity!("Dense", "dense", trainable);
    fn output_width(&self, _: usize) -> usize {
        self.units
    }
    fn output_shape(&self, name: &str, input: &StackInput<'_>) -> Result<OutShape> {
        self.validate(name, input.shape.width)?;
        Ok(OutShape {
            seq: input.shape.seq,
            width: self.units,
        })
    }
    fn weight_shapes(
        &self,
        name: &str,
        input_width: usize,
    ) -> Result<Vec<(&'static str, Vec<usize>)>> {
        self.validate(name, input_width)?;
        let mut w = vec![("kernel", vec![input_width, self.units])];
        if self.use_bias {
            w.push(("bias", vec![self.units]));
        }
        Ok(w)
    }
    fn build(
        &self,
        name: String,
        input: OutShape,
        rng: &mut Rng,
        _: bool,
    ) -> Result<Box<dyn Layer>> {
        Ok(Box::new(DenseLayer::build(
            self.clone(),
            name,
            input.width,
            rng,
        )?))
    }
}

impl FromKeras for Dense {
    const KERAS_SUPPORT: &'static str = "Dense (activations tanh, sigmoid, hard_sigmoid, \
        relu, linear, softmax; no regularizers, constraints, lora_rank, quantization)";

    fn from_keras(cfg: &mut KerasConfig<'_>) -> Self {
        cfg.dtype();
        cfg.forbid_set(REGULARIZERS);
        cfg.forbid_set(&["lora_rank", "quantization_config"]);
        let all = [
            Activation::Tanh,
            Activation::Sigmoid,
            Activation::HardSigmoid,
            Activation::Relu,
            Activation::Linear,
            Activation::Softmax,
        ];
        Dense::new(cfg.dim("units"))
            .name(cfg.name())
            .activation(cfg.activation("activation", Activation::Linear, &all))
            .use_bias(cfg.bool("use_bias", true))
            .trainable(cfg.bool("trainable", true))
    }
}

impl DenseLayer {
    /// Builds the layer: `glorot_uniform` kernel, zero bias (Keras defaults).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] from [`Dense::validate`].
    pub fn build(spec: Dense, name: String, input_width: usize, rng: &mut Rng) -> Result<Self> {
        spec.validate(&name, input_width)?;
        let kernel = glorot_uniform(rng, input_width, spec.units);
        let bias = if spec.use_bias {
            vec![0.0; spec.units]
        } else {
            Vec::new()
        };
        let shapes = ([input_width, spec.units], [spec.units]);
        Ok(DenseLayer {
            spec,
            name,
            input_width,
            kernel,
            bias,
            shapes,
        })
    }

    /// The options it was built from.
    pub fn spec(&self) -> &Dense {
        &self.spec
    }

    /// `y [N, U] = act(x [N, D] · kernel + bias)`.
    fn forward_rows(&self, x: &[f32], y: &mut Vec<f32>) {
        let (d, u) = (self.input_width, self.spec.units);
        let n = x.len() / d;
        y.clear();
        y.resize(n * u, 0.0);
        if self.spec.use_bias {
            for row in y.chunks_exact_mut(u) {
                row.copy_from_slice(&self.bias);
            }
        }
        let beta = if self.spec.use_bias { 1.0 } else { 0.0 };
        sgemm(
            Trans::No,
            Trans::No,
            n,
            u,
            d,
            1.0,
            x,
            d,
            &self.kernel,
            u,
            beta,
            y,
            u,
        );
        match self.spec.activation {
            Activation::Linear => {}
            Activation::Softmax => {
                for row in y.chunks_exact_mut(u) {
                    softmax_in_place(row);
                }
            }
            a => crate::kernels::math::activate_in_place(y, a),
        }
    }

    /// `dz` of the last [`backward_data`](Self::backward_data): `dy` itself for a linear
    /// layer, else `scratch`.
    fn dz<'a>(&self, dy: &'a [f32], scratch: &'a [f32]) -> &'a [f32] {
        if self.spec.activation == Activation::Linear {
            dy
        } else {
            scratch
        }
    }

    /// The first half of backward: `dz` (into `scratch`, unless linear: see
    /// [`dz`](Self::dz)) and `dx` `[N, D]` when asked.
    fn backward_data(
        &self,
        y: &[f32],
        dy: &[f32],
        scratch: &mut Vec<f32>,
        dx: Option<&mut Vec<f32>>,
    ) {
        let (d, u) = (self.input_width, self.spec.units);
        let n = y.len() / u;
        if self.spec.activation != Activation::Linear {
            scratch.clear();
            scratch.extend_from_slice(dy);
            match self.spec.activation {
                Activation::Softmax => {
                    for (dzr, yr) in scratch.chunks_exact_mut(u).zip(y.chunks_exact(u)) {
                        let s: f32 = dzr.iter().zip(yr).map(|(g, p)| g * p).sum();
                        for (g, p) in dzr.iter_mut().zip(yr) {
                            *g = p * (*g - s);
                        }
                    }
                }
                a => {
                    for (g, yv) in scratch.iter_mut().zip(y) {
                        *g *= a.grad_from_output(*yv);
                    }
                }
            }
        }
        let dz = self.dz(dy, scratch);
        if let Some(dx) = dx {
            dx.clear();
            dx.resize(n * d, 0.0);
            sgemm(
                Trans::No,
                Trans::Yes,
                n,
                d,
                u,
                1.0,
                dz,
                u,
                &self.kernel,
                u,
                0.0,
                dx,
                d,
            );
        }
    }

    /// The second half of backward: `d kernel += xᵀ · dz`, `d bias += Σ_rows dz`.
    fn backward_weights(&self, x: &[f32], dz: &[f32], grads: &mut [Vec<f32>]) {
        let (d, u) = (self.input_width, self.spec.units);
        let n = dz.len() / u;
        let (grad_kernel, rest) = grads.split_at_mut(1);
        sgemm(
            Trans::Yes,
            Trans::No,
            d,
            u,
            n,
            1.0,
            x,
            d,
            dz,
            u,
            1.0,
            &mut grad_kernel[0],
            u,
        );
        if let Some(grad_bias) = rest.first_mut() {
            for row in dz.chunks_exact(u) {
                for (g, v) in grad_bias.iter_mut().zip(row) {
                    *g += v;
                }
            }
        }
    }
}

impl Layer for DenseLayer {
    layer_identity!("Dense");
    fn weights(&self) -> Vec<Weight<'_>> {
        let mut w = vec![Weight {
            name: "kernel",
            shape: &self.shapes.0,
            values: &self.kernel,
        }];
        if self.spec.use_bias {
            w.push(Weight {
                name: "bias",
                shape: &self.shapes.1,
                values: &self.bias,
            });
        }
        w
    }
    fn weights_mut(&mut self) -> Vec<&mut [f32]> {
        let mut w: Vec<&mut [f32]> = vec![&mut self.kernel];
        if self.spec.use_bias {
            w.push(&mut self.bias);
        }
        w
    }
    fn new_cache(&self) -> Box<dyn Cache> {
        Box::<DenseCache>::default()
    }
    fn forward(&self, x: &[f32], _: usize, _: usize, _: Option<&State>, _: Option<&[bool]>, cache: &mut dyn Cache) {
        self.forward_rows(x, &mut cache_mut::<DenseCache>(cache).y);
    }
    fn output<'c>(&self, cache: &'c dyn Cache) -> &'c [f32] {
        &cache_ref::<DenseCache>(cache).y
    }
    fn backward(&self, pass: Backward<'_>) {
        let c: &mut DenseCache = cache_mut(pass.cache);
        self.backward_data(&c.y, pass.dy, &mut c.dz, pass.dx);
        if let Some(grads) = pass.grads {
            let dz = self.dz(pass.dy, &c.dz);
            self.backward_weights(pass.x, dz, grads);
        }
    }
    /// An output layer (a vocabulary-wide softmax head, say) forms its weight gradient
    /// once after the batch parts: no second copy of it.
    fn defers_weight_grads(&self, first: bool, last: bool) -> bool {
        last && !first
    }
    /// The parts' `(x, dz)` summed in order on two threads: one takes the first half of
    /// the kernel gradient's rows (input features) and of the bias, the other the rest,
    /// so each product runs on one core and no element depends on thread timing.
    fn weight_grads_of_parts(&self, parts: &[Part<'_>], grads: &mut [Vec<f32>]) {
        let parts: Vec<(&[f32], &[f32])> = parts
            .iter()
            .map(|p| (p.x, self.dz(p.dy, &cache_ref::<DenseCache>(p.cache).dz)))
            .collect();
        let (d, u) = (self.input_width, self.spec.units);
        let (d0, u0) = (d / 2, u / 2);
        let (grad_kernel, rest) = grads.split_at_mut(1);
        let (gk0, gk1) = grad_kernel[0].split_at_mut(d0 * u);
        let (gb0, gb1) = match rest.first_mut() {
            Some(gb) => gb.split_at_mut(u0),
            None => (&mut [][..], &mut [][..]),
        };
        // Rows [r0, r0 + rows) of d kernel and bias columns [c0, c0 + gb.len()).
        let run = |r0: usize, rows: usize, gk: &mut [f32], c0: usize, gb: &mut [f32]| {
            crate::kernels::sequential(|| {
                for &(x, dz) in &parts {
                    let n = dz.len() / u;
                    if rows > 0 {
                        sgemm(
                            Trans::Yes,
                            Trans::No,
                            rows,
                            u,
                            n,
                            1.0,
                            &x[r0..],
                            d,
                            dz,
                            u,
                            1.0,
                            gk,
                            u,
                        );
                    }
                    for row in dz.chunks_exact(u) {
                        for (g, v) in gb.iter_mut().zip(&row[c0..]) {
                            *g += v;
                        }
                    }
                }
            });
        };
        rayon::join(|| run(0, d0, gk0, 0, gb0), || run(d0, d - d0, gk1, u0, gb1));
    }
    /// `MatMul` with the kernel (+ `Add` of the bias) (+ the activation) on the last axis,
    /// so on a sequence it applies per timestep, in either time layout.
    fn export_onnx(&self, g: &mut dyn OnnxGraph, x: OnnxValue) -> Result<OnnxValue> {
        let (d, n) = (self.input_width, self.spec.units);
        debug_assert_eq!(x.width, d, "layer '{}' (Dense): input width", self.name);
        let p = g.layer_prefix("dense");
        let k_name = format!("{p}/kernel");
        g.add_initializer(&k_name, &[d, n], &self.kernel)?;
        let mm = format!("{p}/MatMul");
        let mut out = format!("{mm}:0");
        g.add_node(
            mm,
            "MatMul",
            vec![x.name, k_name],
            vec![out.clone()],
            vec![],
        );
        if self.spec.use_bias {
            let b_name = format!("{p}/bias");
            g.add_initializer(&b_name, &[n], &self.bias)?;
            let add = format!("{p}/Add");
            let o = format!("{add}:0");
            g.add_node(add, "Add", vec![out, b_name], vec![o.clone()], vec![]);
            out = o;
        }
        if let Some((op, attrs)) = onnx_activation(self.spec.activation) {
            let node = format!("{p}/{op}");
            let o = format!("{node}:0");
            g.add_node(node, op, vec![out], vec![o.clone()], attrs);
            out = o;
        }
        Ok(OnnxValue {
            name: out,
            layout: x.layout,
            width: n,
        })
    }
}

/// The ONNX node (operator, attributes) applying `a` to the last axis; `None` for linear.
fn onnx_activation(a: Activation) -> Option<(&'static str, Vec<(&'static str, OnnxAttr)>)> {
    match a {
        Activation::Linear => None,
        Activation::Tanh => Some(("Tanh", vec![])),
        Activation::Sigmoid => Some(("Sigmoid", vec![])),
        Activation::Relu => Some(("Relu", vec![])),
        Activation::Softmax => Some(("Softmax", vec![("axis", OnnxAttr::Int(-1))])),
        Activation::HardSigmoid => Some((
            "HardSigmoid",
            vec![
                ("alpha", OnnxAttr::Float(HARD_SIGMOID.0)),
                ("beta", OnnxAttr::Float(HARD_SIGMOID.1)),
            ],
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::test_util::{fd_check, rand_vec};

    /// Output and gradients (input, kernel, bias) of `L = Σ w ⊙ y` on `n` rows.
    fn run(l: &DenseLayer, x: &[f32], w: &[f32], grads: &mut [Vec<f32>]) -> (f64, Vec<f32>) {
        let mut cache = l.new_cache();
        l.forward(x, 1, 0, None, None, &mut *cache);
        let loss = l
            .output(&*cache)
            .iter()
            .zip(w)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum::<f64>();
        let mut dx = Vec::new();
        l.backward(Backward {
            x,
            dy: w,
            cache: &mut *cache,
            mask: None,
            dx: Some(&mut dx),
            grads: Some(grads),
        });
        (loss, dx)
    }

    fn check(spec: Dense) {
        let (n, d) = (5, 4);
        let mut rng = Rng::new(31);
        let mut l = DenseLayer::build(spec, "dense".into(), d, &mut rng).unwrap();
        for v in l.bias.iter_mut() {
            *v = rng.uniform(-0.5, 0.5) as f32;
        }
        let x = rand_vec(&mut rng, n * d, 1.0);
        let w = rand_vec(&mut rng, n * l.spec.units, 1.0);
        let mut grads: Vec<Vec<f32>> = l
            .weights()
            .iter()
            .map(|w| vec![0.0; w.values.len()])
            .collect();
        let (_, dx) = run(&l, &x, &w, &mut grads);
        let loss = |l: &DenseLayer, x: &[f32]| run(l, x, &w, &mut grads.clone()).0;
        fd_check("input", &dx, x.len(), |i, e| {
            let mut x2 = x.clone();
            x2[i] += e;
            loss(&l, &x2)
        });
        fd_check("kernel", &grads[0], l.kernel.len(), |i, e| {
            let mut l2 = l.clone();
            l2.kernel[i] += e;
            loss(&l2, &x)
        });
        if l.spec.use_bias {
            fd_check("bias", &grads[1], l.bias.len(), |i, e| {
                let mut l2 = l.clone();
                l2.bias[i] += e;
                loss(&l2, &x)
            });
        }
        // Weight gradients formed after two batch parts equal the one-pass ones.
        if l.spec.use_bias {
            let mut c0 = l.new_cache();
            let mut c1 = l.new_cache();
            let split = 2 * d;
            for (c, xs, ws) in [
                (&mut c0, &x[..split], &w[..2 * l.spec.units]),
                (&mut c1, &x[split..], &w[2 * l.spec.units..]),
            ] {
                l.forward(xs, 1, 0, None, None, &mut **c);
                l.backward(Backward {
                    x: xs,
                    dy: ws,
                    cache: &mut **c,
                    mask: None,
                    dx: None,
                    grads: None,
                });
            }
            let parts = [
                Part {
                    x: &x[..split],
                    dy: &w[..2 * l.spec.units],
                    cache: &*c0,
                },
                Part {
                    x: &x[split..],
                    dy: &w[2 * l.spec.units..],
                    cache: &*c1,
                },
            ];
            let mut after: Vec<Vec<f32>> = grads.iter().map(|g| vec![0.0; g.len()]).collect();
            l.weight_grads_of_parts(&parts, &mut after);
            for (a, g) in after.iter().flatten().zip(grads.iter().flatten()) {
                assert!((a - g).abs() <= 1e-5 * (1.0 + g.abs()), "{a} vs {g}");
            }
        }
    }

    #[test]
    fn gradients_for_every_activation() {
        for a in [
            Activation::Linear,
            Activation::Tanh,
            Activation::Sigmoid,
            Activation::Relu,
            Activation::Softmax,
        ] {
            check(Dense::new(3).activation(a));
        }
        check(Dense::new(2).use_bias(false));
    }

    #[test]
    fn softmax_is_stable_for_large_logits() {
        let mut row = [1000.0f32, 1001.0, 999.0];
        softmax_in_place(&mut row);
        assert!(row.iter().all(|v| v.is_finite()));
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(row[1] > row[0] && row[0] > row[2]);
    }

    #[test]
    fn zero_units_and_absurd_sizes_are_errors() {
        let mut rng = Rng::new(0);
        assert!(DenseLayer::build(Dense::new(0), "d".into(), 3, &mut rng).is_err());
        let err = DenseLayer::build(Dense::new(1 << 40), "d".into(), 1 << 20, &mut rng)
            .unwrap_err()
            .to_string();
        assert!(err.contains("too large"), "{err}");
    }

    #[test]
    fn keras_config_sets_every_option_and_refuses_the_rest() {
        let json = r#"{"name": "head", "units": 3, "activation": "softmax", "use_bias": false,
            "dtype": {"class_name": "DTypePolicy", "config": {"name": "float32"}}}"#;
        let cfg: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json).unwrap();
        let mut k = KerasConfig::new("Dense", &cfg);
        let spec = Dense::from_keras(&mut k);
        assert!(k.problems().is_empty(), "{:?}", k.problems());
        let want = Dense::new(3)
            .name("head")
            .activation(Activation::Softmax)
            .use_bias(false);
        assert_eq!(spec, want);
        // Keras' default activation is linear.
        let cfg: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(r#"{"name": "d", "units": 1}"#).unwrap();
        let spec = Dense::from_keras(&mut KerasConfig::new("Dense", &cfg));
        assert_eq!(spec.activation, Activation::Linear);

        let json = r#"{"name": "d", "units": 0, "lora_rank": 4, "activation": "gelu",
            "bias_regularizer": {"class_name": "L1"}}"#;
        let cfg: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json).unwrap();
        let mut k = KerasConfig::new("Dense", &cfg);
        let _ = Dense::from_keras(&mut k);
        let p = k.into_problems();
        assert_eq!(p.malformed.len(), 1, "{p:?}");
        let all = p.unsupported.join("; ");
        for needle in ["lora_rank=4", "activation 'gelu'", "bias_regularizer"] {
            assert!(all.contains(needle), "{needle} not in {all}");
        }
    }
}
