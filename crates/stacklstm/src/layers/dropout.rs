//! The Dropout layer (Keras `Dropout`): during training each element is zeroed with
//! probability `rate` and the survivors scaled by `1 / (1 - rate)`; at inference it is the
//! identity. On a sequence every element of every timestep draws its own mask (Keras'
//! default `noise_shape`).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::init::Rng;

/// Specification of a Dropout layer.
///
/// # Shapes
/// Any; the output has the input's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dropout {
    /// Fraction of the inputs to drop, in `[0, 1)`.
    pub rate: f32,
    /// Layer name; `dropout` by default.
    pub name: Option<String>,
}

impl Default for Dropout {
    fn default() -> Self {
        Dropout {
            rate: 0.5,
            name: None,
        }
    }
}

impl Dropout {
    /// Dropout with this rate.
    #[must_use]
    pub fn new(rate: f32) -> Self {
        Dropout { rate, name: None }
    }
    /// Sets the layer name.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Checks the rate.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if the rate is outside `[0, 1)`.
    pub fn validate(&self, name: &str) -> Result<()> {
        if (0.0..1.0).contains(&self.rate) {
            Ok(())
        } else {
            Err(Error::config(format!(
                "layer '{name}' (Dropout): rate must be in [0, 1), got {}",
                self.rate
            )))
        }
    }
}

/// A built Dropout layer (it has no weights).
#[derive(Debug, Clone)]
pub struct DropoutLayer {
    /// The options it was built from.
    pub spec: Dropout,
    /// Layer name.
    pub name: String,
}

/// Fills `mask` with `n` values: 0 with probability `rate`, else `1 / (1 - rate)`.
pub(crate) fn draw_mask(rng: &mut Rng, rate: f32, n: usize, mask: &mut Vec<f32>) {
    mask.clear();
    let keep = 1.0 / (1.0 - rate);
    let rate = f64::from(rate);
    mask.extend((0..n).map(|_| if rng.next_f64() < rate { 0.0 } else { keep }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_rate_and_scale() {
        let mut rng = Rng::new(3);
        let mut m = Vec::new();
        draw_mask(&mut rng, 0.25, 40_000, &mut m);
        let zeros = m.iter().filter(|v| **v == 0.0).count() as f64 / m.len() as f64;
        assert!((zeros - 0.25).abs() < 0.01, "{zeros}");
        assert!(m.iter().all(|v| *v == 0.0 || (*v - 4.0 / 3.0).abs() < 1e-6));
        // The expected value of a masked input is the input.
        let mean = m.iter().map(|v| f64::from(*v)).sum::<f64>() / m.len() as f64;
        assert!((mean - 1.0).abs() < 0.02, "{mean}");
        assert!(Dropout::new(1.0).validate("d").is_err());
    }
}
