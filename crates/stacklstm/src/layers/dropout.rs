//! The Dropout layer (Keras `Dropout`): during training each element is zeroed with
//! probability `rate` and the survivors scaled by `1 / (1 - rate)`; at inference it is the
//! identity. On a sequence every element of every timestep draws its own mask (Keras'
//! default `noise_shape`).

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::init::Rng;
use crate::layers::keras::{FromKeras, KerasConfig};
use crate::layers::onnx::{OnnxGraph, OnnxValue};
use crate::layers::{
    cache_mut, cache_ref, copy_time_major_rows, Backward, Cache, Layer, LayerConfig, OutShape,
    StackInput, State, Weight,
};

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
    spec: Dropout,
    name: String,
    /// The input's shape: a sequence draws a mask per timestep.
    input: OutShape,
}

impl DropoutLayer {
    /// The options it was built from.
    pub fn spec(&self) -> &Dropout {
        &self.spec
    }
}

/// What forward keeps.
#[derive(Debug, Default)]
struct DropoutCache {
    /// Time-major like the input: the mask (0 or `1 / (1 - rate)`); empty at inference.
    mask: Vec<f32>,
    /// The output: `x ⊙ mask`, or `x` at inference.
    y: Vec<f32>,
}

impl LayerConfig for Dropout {
    config_identity!("Dropout", "dropout");
    fn output_width(&self, input_width: usize) -> usize {
        input_width
    }
    fn output_shape(&self, name: &str, input: &StackInput<'_>) -> Result<OutShape> {
        self.validate(name)?;
        Ok(input.shape)
    }
    fn weight_shapes(&self, name: &str, _: usize) -> Result<Vec<(&'static str, Vec<usize>)>> {
        self.validate(name)?;
        Ok(Vec::new())
    }
    fn build(&self, name: String, input: OutShape, _: &mut Rng, _: bool) -> Result<Box<dyn Layer>> {
        self.validate(&name)?;
        Ok(Box::new(DropoutLayer {
            spec: self.clone(),
            name,
            input,
        }))
    }
}

impl FromKeras for Dropout {
    const KERAS_SUPPORT: &'static str = "Dropout (no noise_shape)";

    fn from_keras(cfg: &mut KerasConfig<'_>) -> Self {
        // One mask element per input element; a shared (broadcast) mask is not implemented.
        cfg.forbid_set(&["noise_shape"]);
        cfg.require("rate");
        Dropout::new(cfg.rate("rate")).name(cfg.name())
    }
}

impl Layer for DropoutLayer {
    layer_identity!("Dropout");
    fn weights(&self) -> Vec<Weight<'_>> {
        Vec::new()
    }
    fn weights_mut(&mut self) -> Vec<&mut [f32]> {
        Vec::new()
    }
    fn new_cache(&self) -> Box<dyn Cache> {
        Box::<DropoutCache>::default()
    }
    fn forward(&self, x: &[f32], _: usize, _: usize, _: Option<&State>, _: Option<&[bool]>, cache: &mut dyn Cache) {
        let c: &mut DropoutCache = cache_mut(cache);
        c.y.clear();
        if c.mask.is_empty() {
            c.y.extend_from_slice(x);
        } else {
            c.y.extend(x.iter().zip(&c.mask).map(|(v, k)| v * k));
        }
    }
    fn output<'c>(&self, cache: &'c dyn Cache) -> &'c [f32] {
        &cache_ref::<DropoutCache>(cache).y
    }
    fn backward(&self, pass: Backward<'_>) {
        let c: &DropoutCache = cache_ref(pass.cache);
        if let Some(dx) = pass.dx {
            dx.clear();
            if c.mask.is_empty() {
                dx.extend_from_slice(pass.dy);
            } else {
                dx.extend(pass.dy.iter().zip(&c.mask).map(|(g, k)| g * k));
            }
        }
    }
    fn draw_masks(&self, rng: &mut Rng, t: usize, b: usize, cache: &mut dyn Cache) {
        let c: &mut DropoutCache = cache_mut(cache);
        c.mask.clear();
        if self.spec.rate > 0.0 {
            let rows = if self.input.seq { t * b } else { b };
            draw_mask(rng, self.spec.rate, rows * self.input.width, &mut c.mask);
        }
    }
    fn clear_masks(&self, cache: &mut dyn Cache) {
        cache_mut::<DropoutCache>(cache).mask.clear();
    }
    fn copy_mask_rows(
        &self,
        full: &dyn Cache,
        rows: Range<usize>,
        t: usize,
        b: usize,
        part: &mut dyn Cache,
    ) {
        let src = &cache_ref::<DropoutCache>(full).mask;
        let dst = &mut cache_mut::<DropoutCache>(part).mask;
        dst.clear();
        if !src.is_empty() {
            let steps = if self.input.seq { t } else { 1 };
            copy_time_major_rows(src, rows, steps, b, self.input.width, dst);
        }
    }
    /// The identity: dropout only acts in training.
    fn export_onnx(&self, _g: &mut dyn OnnxGraph, input: OnnxValue) -> Result<OnnxValue> {
        Ok(input)
    }
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

    #[test]
    fn keras_config() {
        let cfg: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(r#"{"name": "drop", "rate": 0.3, "seed": 7}"#).unwrap();
        let mut k = KerasConfig::new("Dropout", &cfg);
        assert_eq!(Dropout::from_keras(&mut k), Dropout::new(0.3).name("drop"));
        assert!(k.problems().is_empty(), "{:?}", k.problems());
        let cfg: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(r#"{"name": "drop", "noise_shape": [null, 1, 4]}"#).unwrap();
        let mut k = KerasConfig::new("Dropout", &cfg);
        let _ = Dropout::from_keras(&mut k);
        let p = k.into_problems();
        assert_eq!(p.malformed, ["layer 'drop' (Dropout): 'rate' missing"]);
        assert_eq!(
            p.unsupported,
            ["layer 'drop' (Dropout): noise_shape=[null,1,4]"]
        );
    }
}
