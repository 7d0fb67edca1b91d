//! The Masking layer (Keras `Masking`): marks padded timesteps so that the layers above
//! skip them.
//!
//! A step `(b, t)` is kept iff any feature differs from `mask_value` (compared exactly in
//! f32). The output is `x` at kept steps and 0 in every feature at masked steps (which
//! matters when `mask_value` is not 0); the gradient is `dy` at kept steps and 0 at masked
//! ones. The mask itself travels to the layers above through the model (see "Masks" in
//! [`crate::layers`]).

use ndarray::ArrayView3;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::init::Rng;
use crate::layers::keras::{FromKeras, KerasConfig};
use crate::layers::{
    cache_mut, cache_ref, Backward, Cache, Layer, LayerConfig, OutShape, StackInput, State,
    Weight,
};

/// Specification of a Masking layer; it must be the first layer.
///
/// # Shapes
/// `[batch, timesteps, features]` to the same shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Masking {
    /// The value every feature of a padded step holds.
    pub mask_value: f32,
    /// Layer name; `masking` by default.
    pub name: Option<String>,
}

impl Default for Masking {
    fn default() -> Self {
        Masking {
            mask_value: 0.0,
            name: None,
        }
    }
}

impl Masking {
    /// Masking of the steps whose features all equal `mask_value`.
    #[must_use]
    pub fn new(mask_value: f32) -> Self {
        Masking {
            mask_value,
            name: None,
        }
    }
    /// Sets the layer name.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Checks `mask_value`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a non-finite `mask_value` (inputs are finite, so
    /// nothing would ever be masked).
    pub fn validate(&self, name: &str) -> Result<()> {
        if self.mask_value.is_finite() {
            Ok(())
        } else {
            Err(Error::config(format!(
                "layer '{name}' (Masking): mask_value must be a finite number, got {}; inputs are finite, so no step would ever be masked",
                self.mask_value
            )))
        }
    }
}

/// A built Masking layer (no weights).
#[derive(Debug, Clone)]
pub struct MaskingLayer {
    spec: Masking,
    name: String,
    /// Features per step.
    width: usize,
}

impl MaskingLayer {
    /// The options it was built from.
    pub fn spec(&self) -> &Masking {
        &self.spec
    }
}

/// What forward keeps: the output.
#[derive(Debug, Default)]
struct MaskingCache {
    y: Vec<f32>,
    /// `[T, B]`: the mask of the last forward.
    keep: Vec<bool>,
}

impl LayerConfig for Masking {
    config_identity!("Masking", "masking");
    fn makes_mask(&self) -> bool {
        true
    }
    fn output_width(&self, input_width: usize) -> usize {
        input_width
    }
    fn output_shape(&self, name: &str, input: &StackInput<'_>) -> Result<OutShape> {
        if input.index != 0 {
            return Err(Error::config(format!(
                "layer '{name}' (Masking) must be the first layer: it marks the padded steps of the model input; here it is layer {}",
                input.index + 1
            )));
        }
        self.validate(name)?;
        Ok(input.shape)
    }
    fn weight_shapes(&self, name: &str, _: usize) -> Result<Vec<(&'static str, Vec<usize>)>> {
        self.validate(name)?;
        Ok(Vec::new())
    }
    fn build(&self, name: String, input: OutShape, _: &mut Rng, _: bool) -> Result<Box<dyn Layer>> {
        self.validate(&name)?;
        Ok(Box::new(MaskingLayer {
            spec: self.clone(),
            name,
            width: input.width,
        }))
    }
}

impl FromKeras for Masking {
    const KERAS_SUPPORT: &'static str = "Masking (first layer only)";

    fn from_keras(cfg: &mut KerasConfig<'_>) -> Self {
        let v = cfg.float("mask_value", 0.0);
        Masking::new(v as f32).name(cfg.name())
    }
}

impl Layer for MaskingLayer {
    layer_identity!("Masking");
    fn weights(&self) -> Vec<Weight<'_>> {
        Vec::new()
    }
    fn weights_mut(&mut self) -> Vec<&mut [f32]> {
        Vec::new()
    }
    fn new_cache(&self) -> Box<dyn Cache> {
        Box::<MaskingCache>::default()
    }
    /// A step is kept iff any feature differs from `mask_value`.
    fn compute_mask(&self, x: ArrayView3<'_, f32>, mask: &mut Vec<bool>) {
        let (b, t, _) = x.dim();
        let v = self.spec.mask_value;
        mask.clear();
        mask.extend(
            (0..t * b).map(|k| x.slice(ndarray::s![k % b, k / b, ..]).iter().any(|&f| f != v)),
        );
    }
    fn forward(
        &self,
        x: &[f32],
        _: usize,
        _: usize,
        _: Option<&State>,
        mask: Option<&[bool]>,
        cache: &mut dyn Cache,
    ) {
        let c: &mut MaskingCache = cache_mut(cache);
        let w = self.width;
        c.y.clear();
        c.y.extend_from_slice(x);
        c.keep.clear();
        if let Some(mask) = mask {
            c.keep.extend_from_slice(mask);
            for (row, _) in mask.iter().enumerate().filter(|(_, &k)| !k) {
                c.y[row * w..(row + 1) * w].fill(0.0);
            }
        }
    }
    fn output<'c>(&self, cache: &'c dyn Cache) -> &'c [f32] {
        &cache_ref::<MaskingCache>(cache).y
    }
    fn backward(&self, pass: Backward<'_>) {
        let c: &MaskingCache = cache_ref(pass.cache);
        if let Some(dx) = pass.dx {
            let w = self.width;
            dx.clear();
            dx.extend_from_slice(pass.dy);
            for (row, _) in c.keep.iter().enumerate().filter(|(_, &k)| !k) {
                dx[row * w..(row + 1) * w].fill(0.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Array3;

    use super::*;
    use crate::layers::StackInput;

    fn built(v: f32, width: usize) -> Box<dyn Layer> {
        Masking::new(v)
            .build(
                "masking".into(),
                OutShape { seq: true, width },
                &mut Rng::new(1),
                true,
            )
            .unwrap()
    }

    #[test]
    fn masks_steps_whose_features_all_equal_the_value_and_zeroes_them() {
        // [B=2, T=3, F=2]; mask_value -1: step (0, 1) is all -1, step (1, 2) is all -1,
        // step (1, 0) has one -1 only (kept).
        let x = Array3::from_shape_vec(
            (2, 3, 2),
            vec![1.0, 2.0, -1.0, -1.0, 3.0, 4.0, -1.0, 5.0, 6.0, 7.0, -1.0, -1.0],
        )
        .unwrap();
        let l = built(-1.0, 2);
        let mut mask = Vec::new();
        l.compute_mask(x.view(), &mut mask);
        // Time-major [T, B].
        assert_eq!(mask, [true, true, false, true, true, false]);
        let xt = crate::layers::to_time_major(x.view());
        let mut cache = l.new_cache();
        l.forward(&xt, 3, 2, None, Some(&mask), &mut *cache);
        let y = l.output(&*cache).to_vec();
        assert_eq!(&y[4..6], &[0.0, 0.0], "masked step zeroed, not left at -1");
        assert_eq!(&y[10..12], &[0.0, 0.0]);
        assert_eq!(&y[..4], &xt[..4]);
        let dy = vec![1.0; 12];
        let mut dx = Vec::new();
        l.backward(Backward {
            x: &xt,
            dy: &dy,
            cache: &mut *cache,
            mask: Some(&mask),
            dx: Some(&mut dx),
            grads: Some(&mut []),
        });
        let zeros: Vec<usize> = (0..6).filter(|&r| dx[2 * r] == 0.0).collect();
        assert_eq!(zeros, [2, 5]);
    }

    #[test]
    fn must_be_first_and_finite() {
        let shape = OutShape { seq: true, width: 3 };
        let second = StackInput {
            index: 1,
            shape,
            flat_origin: None,
        };
        let e = Masking::new(0.0).output_shape("m", &second).unwrap_err();
        assert!(e.to_string().contains("must be the first layer"), "{e}");
        let first = StackInput {
            index: 0,
            shape,
            flat_origin: None,
        };
        let e = Masking::new(f32::NAN).output_shape("m", &first).unwrap_err();
        assert!(e.to_string().contains("finite"), "{e}");
    }
}
