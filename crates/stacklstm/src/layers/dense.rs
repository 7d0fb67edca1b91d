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

use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::init::{glorot_uniform, Rng};
use crate::kernels::matmul::{sgemm, Trans};
use crate::kernels::softmax;
use crate::layers::check_size;

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
}

impl Default for Dense {
    fn default() -> Self {
        Dense {
            units: 1,
            activation: Activation::Linear,
            use_bias: true,
            name: None,
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

/// A built Dense layer with its weights and gradients.
#[derive(Debug, Clone)]
pub struct DenseLayer {
    /// The options it was built from.
    pub spec: Dense,
    /// Layer name.
    pub name: String,
    /// Input width `D`.
    pub input_width: usize,
    /// `[D, U]`.
    pub kernel: Vec<f32>,
    /// `[U]`; empty when `use_bias` is false.
    pub bias: Vec<f32>,
    /// Gradient of `kernel`.
    pub grad_kernel: Vec<f32>,
    /// Gradient of `bias`.
    pub grad_bias: Vec<f32>,
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
        let mut l = DenseLayer {
            spec,
            name,
            input_width,
            kernel,
            bias,
            grad_kernel: Vec::new(),
            grad_bias: Vec::new(),
        };
        l.zero_grad();
        Ok(l)
    }

    /// Sets the gradients to zero.
    pub fn zero_grad(&mut self) {
        self.grad_kernel.clear();
        self.grad_kernel.resize(self.kernel.len(), 0.0);
        self.grad_bias.clear();
        self.grad_bias.resize(self.bias.len(), 0.0);
    }

    /// `y [N, U] = act(x [N, D] · kernel + bias)`.
    pub(crate) fn forward(&self, x: &[f32], n: usize, y: &mut Vec<f32>) {
        let (d, u) = (self.input_width, self.spec.units);
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

    /// Backward of `forward`: `y` is the cached output, `dy` its gradient. `dz` is
    /// scratch (unused for a linear layer). Accumulates weight gradients and writes `dx [N, D]` when asked.
    #[cfg(test)]
    pub(crate) fn backward(
        &mut self,
        x: &[f32],
        y: &[f32],
        dy: &[f32],
        dz: &mut Vec<f32>,
        dx: Option<&mut Vec<f32>>,
    ) {
        let mut grads = [
            std::mem::take(&mut self.grad_kernel),
            std::mem::take(&mut self.grad_bias),
        ];
        self.backward_into(x, y, dy, dz, dx, &mut grads);
        [self.grad_kernel, self.grad_bias] = grads;
    }

    /// [`backward`](Self::backward) accumulating into `grads` (`[d kernel, d bias]`, sized
    /// like the weights) instead of the layer's own gradients.
    pub(crate) fn backward_into(
        &self,
        x: &[f32],
        y: &[f32],
        dy: &[f32],
        scratch: &mut Vec<f32>,
        dx: Option<&mut Vec<f32>>,
        grads: &mut [Vec<f32>; 2],
    ) {
        self.backward_data(y, dy, scratch, dx);
        let dz = self.dz(dy, scratch);
        self.backward_weights(x, dz, grads);
    }

    /// `dz` of the last [`backward_data`](Self::backward_data): `dy` itself for a linear
    /// layer, else `scratch`.
    pub(crate) fn dz<'a>(&self, dy: &'a [f32], scratch: &'a [f32]) -> &'a [f32] {
        if self.spec.activation == Activation::Linear {
            dy
        } else {
            scratch
        }
    }

    /// The first half of backward: `dz` (into `scratch`, unless linear: see
    /// [`dz`](Self::dz)) and `dx` `[N, D]` when asked.
    pub(crate) fn backward_data(
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
    pub(crate) fn backward_weights(&self, x: &[f32], dz: &[f32], grads: &mut [Vec<f32>; 2]) {
        let [grad_kernel, grad_bias] = grads;
        let (d, u) = (self.input_width, self.spec.units);
        let n = dz.len() / u;
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
            grad_kernel,
            u,
        );
        if self.spec.use_bias {
            for row in dz.chunks_exact(u) {
                for (g, v) in grad_bias.iter_mut().zip(row) {
                    *g += v;
                }
            }
        }
    }

    /// [`backward_weights`](Self::backward_weights) for several parts of a batch (`(x,
    /// dz)` pairs, summed in order) on two threads: one takes the first half of the kernel
    /// gradient's rows (input features) and of the bias, the other the rest, so each
    /// product runs on one core and no element depends on thread timing.
    pub(crate) fn backward_weights_parts(
        &self,
        parts: &[(&[f32], &[f32])],
        grads: &mut [Vec<f32>; 2],
    ) {
        let [grad_kernel, grad_bias] = grads;
        let (d, u) = (self.input_width, self.spec.units);
        let (d0, u0) = (d / 2, u / 2);
        let (gk0, gk1) = grad_kernel.split_at_mut(d0 * u);
        let (gb0, gb1) = if self.spec.use_bias {
            grad_bias.split_at_mut(u0)
        } else {
            (&mut [][..], &mut [][..])
        };
        // Rows [r0, r0 + rows) of d kernel and bias columns [c0, c0 + gb.len()).
        let run = |r0: usize, rows: usize, gk: &mut [f32], c0: usize, gb: &mut [f32]| {
            crate::kernels::sequential(|| {
                for &(x, dz) in parts {
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

    /// The weights as Keras orders them: kernel, bias (if any).
    pub fn weights(&self) -> Vec<(&'static str, Vec<usize>, &[f32])> {
        let mut w = vec![(
            "kernel",
            vec![self.input_width, self.spec.units],
            self.kernel.as_slice(),
        )];
        if self.spec.use_bias {
            w.push(("bias", vec![self.spec.units], self.bias.as_slice()));
        }
        w
    }
}

/// Numerically stable softmax of one row.
pub(crate) fn softmax_in_place(row: &mut [f32]) {
    let m = softmax::max(row);
    let sum = softmax::exp_sum_in_place(row, m);
    let inv = 1.0 / sum;
    for v in row.iter_mut() {
        *v *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::test_util::{fd_check, rand_vec};

    fn check(spec: Dense) {
        let (n, d) = (5, 4);
        let mut rng = Rng::new(31);
        let mut l = DenseLayer::build(spec, "dense".into(), d, &mut rng).unwrap();
        for v in l.bias.iter_mut() {
            *v = rng.uniform(-0.5, 0.5) as f32;
        }
        let x = rand_vec(&mut rng, n * d, 1.0);
        let w = rand_vec(&mut rng, n * l.spec.units, 1.0);
        let loss = |l: &DenseLayer, x: &[f32]| {
            let mut y = Vec::new();
            l.forward(x, n, &mut y);
            y.iter()
                .zip(&w)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum::<f64>()
        };
        let mut y = Vec::new();
        l.forward(&x, n, &mut y);
        let (mut dz, mut dx) = (Vec::new(), Vec::new());
        l.backward(&x, &y, &w, &mut dz, Some(&mut dx));
        let base = l.clone();
        fd_check("input", &dx, x.len(), |i, e| {
            let mut x2 = x.clone();
            x2[i] += e;
            loss(&base, &x2)
        });
        fd_check("kernel", &base.grad_kernel, base.kernel.len(), |i, e| {
            let mut l2 = base.clone();
            l2.kernel[i] += e;
            loss(&l2, &x)
        });
        fd_check("bias", &base.grad_bias, base.bias.len(), |i, e| {
            let mut l2 = base.clone();
            l2.bias[i] += e;
            loss(&l2, &x)
        });
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
}
