//! Activation functions by their Keras names.
//!
//! Every activation here can be differentiated from its *output* `y = f(x)` alone, which is
//! why layers cache post-activation values: `tanh' = 1 - y^2`, `sigmoid' = y (1 - y)`,
//! `hard_sigmoid' = 1/6` inside `0 < y < 1`, `relu' = [y > 0]`, `linear' = 1`.
//! `tanh` and `sigmoid` use the vectorisable rational approximation of
//! the kernels (max abs error 2.9e-7 for tanh, 1.7e-7 for sigmoid against f64).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::kernels::math::{sigmoid_fast, tanh_fast};

/// An elementwise activation, named as in Keras.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `tanh(x)`.
    #[default]
    Tanh,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// Keras 3: `relu6(x + 3) / 6 = clip(x / 6 + 0.5, 0, 1)`.
    HardSigmoid,
    /// `max(x, 0)`.
    Relu,
    /// `x`.
    Linear,
    /// Softmax over the last axis (Dense only).
    Softmax,
}

impl Activation {
    /// Parses a Keras activation name (`"tanh"`, `"hard_sigmoid"`, ...).
    ///
    /// # Errors
    /// [`Error::UnsupportedFormat`] listing the supported names.
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "tanh" => Activation::Tanh,
            "sigmoid" => Activation::Sigmoid,
            "hard_sigmoid" => Activation::HardSigmoid,
            "relu" => Activation::Relu,
            "linear" | "None" | "none" => Activation::Linear,
            "softmax" => Activation::Softmax,
            other => {
                return Err(Error::UnsupportedFormat {
                    found: format!("activation '{other}'"),
                    supported: "tanh, sigmoid, hard_sigmoid, relu, linear, softmax".into(),
                })
            }
        })
    }

    /// The Keras name.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::HardSigmoid => "hard_sigmoid",
            Activation::Relu => "relu",
            Activation::Linear => "linear",
            Activation::Softmax => "softmax",
        }
    }

    /// Whether this activation is elementwise (everything but softmax).
    pub fn is_elementwise(self) -> bool {
        self != Activation::Softmax
    }

    /// Applies the activation to one row of values in place: elementwise, or for softmax
    /// over the whole row (the values of one sample), so no activation can be applied the
    /// wrong way.
    ///
    /// # Example
    /// ```
    /// use stacklstm::Activation;
    /// let mut row = [1.0f32, 2.0, 3.0];
    /// Activation::Softmax.apply_row(&mut row);
    /// assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6 && row[2] > row[1]);
    /// let mut row = [-1.0f32, 2.0];
    /// Activation::Relu.apply_row(&mut row);
    /// assert_eq!(row, [0.0, 2.0]);
    /// ```
    pub fn apply_row(self, row: &mut [f32]) {
        if self == Activation::Softmax {
            crate::kernels::softmax::softmax_in_place(row);
        } else {
            for v in row {
                *v = self.apply(*v);
            }
        }
    }

    /// `f(x)` for an elementwise activation; softmax (a function of a whole row) is never
    /// passed here: the LSTM refuses it and the Dense layer applies it per row.
    #[inline(always)]
    pub(crate) fn apply(self, x: f32) -> f32 {
        debug_assert!(self.is_elementwise(), "softmax is not elementwise");
        match self {
            Activation::Tanh => tanh_fast(x),
            Activation::Sigmoid => sigmoid_fast(x),
            Activation::HardSigmoid => (x * (1.0 / 6.0) + 0.5).clamp(0.0, 1.0),
            Activation::Relu => x.max(0.0),
            Activation::Linear | Activation::Softmax => x,
        }
    }

    /// `f'(x)` expressed through the output `y = f(x)` (see the module docs).
    #[inline(always)]
    pub(crate) fn grad_from_output(self, y: f32) -> f32 {
        debug_assert!(self.is_elementwise(), "softmax is not elementwise");
        match self {
            Activation::Tanh => 1.0 - y * y,
            Activation::Sigmoid => y * (1.0 - y),
            Activation::HardSigmoid => {
                if y > 0.0 && y < 1.0 {
                    1.0 / 6.0
                } else {
                    0.0
                }
            }
            Activation::Relu => {
                if y > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::Linear | Activation::Softmax => 1.0,
        }
    }
}

impl std::fmt::Display for Activation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(a: Activation, x: f64) -> f64 {
        match a {
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::HardSigmoid => (x / 6.0 + 0.5).clamp(0.0, 1.0),
            Activation::Relu => x.max(0.0),
            Activation::Linear | Activation::Softmax => x,
        }
    }

    #[test]
    fn values_match_f64_within_documented_error() {
        for a in [
            Activation::Tanh,
            Activation::Sigmoid,
            Activation::HardSigmoid,
            Activation::Relu,
            Activation::Linear,
        ] {
            let mut worst = 0.0f64;
            let mut x = -20.0f64;
            while x <= 20.0 {
                let err = (f64::from(a.apply(x as f32)) - exact(a, f64::from(x as f32))).abs();
                worst = worst.max(err);
                x += 1e-3;
            }
            assert!(worst <= 3.0e-7, "{a}: max error {worst}");
        }
    }

    #[test]
    fn derivative_from_output_matches_central_difference() {
        for a in [
            Activation::Tanh,
            Activation::Sigmoid,
            Activation::HardSigmoid,
            Activation::Relu,
            Activation::Linear,
        ] {
            for &x in &[-4.0f64, -2.5, -0.7, -0.1, 0.3, 1.2, 2.9, 5.0] {
                let y = exact(a, x) as f32;
                let h = 1e-5;
                let fd = (exact(a, x + h) - exact(a, x - h)) / (2.0 * h);
                let g = f64::from(a.grad_from_output(y));
                assert!((g - fd).abs() < 1e-5, "{a} at {x}: {g} vs {fd}");
            }
        }
    }

    #[test]
    fn names_round_trip_and_unknown_is_an_error() {
        for a in [
            Activation::Tanh,
            Activation::Sigmoid,
            Activation::HardSigmoid,
            Activation::Relu,
            Activation::Linear,
            Activation::Softmax,
        ] {
            assert_eq!(Activation::from_name(a.name()).unwrap(), a);
        }
        let err = Activation::from_name("gelu").unwrap_err().to_string();
        assert!(
            err.contains("gelu") && err.contains("hard_sigmoid"),
            "{err}"
        );
    }
}
