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
use crate::layers::onnx::{OnnxAttr, OnnxGraph, OnnxLayout, OnnxStepMask, OnnxValue};
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
    /// The mask computed in the graph from the input (see [`OnnxStepMask`]); the recurrent
    /// layers above read it.
    fn export_onnx(&self, g: &mut dyn OnnxGraph, x: OnnxValue) -> Result<OnnxValue> {
        self.export(g, x)
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

/// ONNX `Cast` targets.
const ONNX_FLOAT: i64 = 1;
const ONNX_INT32: i64 = 6;
const ONNX_INT64: i64 = 7;

impl MaskingLayer {
    /// `op(inputs)` as node `{p}/{tag}` with one output, returned.
    fn node(
        g: &mut dyn OnnxGraph,
        p: &str,
        tag: &str,
        op: &'static str,
        inputs: &[&str],
        attrs: Vec<(&'static str, OnnxAttr)>,
    ) -> String {
        let out = format!("{p}/{tag}:0");
        g.add_node(
            format!("{p}/{tag}"),
            op,
            inputs.iter().map(|s| s.to_string()).collect(),
            vec![out.clone()],
            attrs,
        );
        out
    }

    /// `[B, T]` to sequence-major `[T, B, 1]`.
    fn seq_major(g: &mut dyn OnnxGraph, p: &str, tag: &str, v: &str) -> String {
        let perm = vec![("perm", OnnxAttr::Ints(vec![1, 0]))];
        let t = Self::node(g, p, &format!("{tag}_tb"), "Transpose", &[v], perm);
        let axes = g.axes(2);
        Self::node(g, p, tag, "Unsqueeze", &[&t, &axes], vec![])
    }
}

impl MaskingLayer {
    /// The mask and the step bookkeeping of [`OnnxStepMask`] from the model input, and the
    /// input with its masked steps zeroed. The mask is computed in the graph from the data,
    /// as Keras does, so any padding pattern (left, right, holes) is exported exactly.
    fn export(&self, g: &mut dyn OnnxGraph, x: OnnxValue) -> Result<OnnxValue> {
        let p = g.layer_prefix("masking");
        let x = g.to_layout(x, OnnxLayout::BatchMajor, &format!("{p}/to_batch_major"))?;
        let f32s = |g: &mut dyn OnnxGraph, tag: &str, v: f32| -> Result<String> {
            let name = format!("{p}/{tag}");
            g.add_initializer(&name, &[], &[v])?;
            Ok(name)
        };
        let value = f32s(g, "mask_value", self.spec.mask_value)?;
        let (zero, one) = (f32s(g, "zero", 0.0)?, f32s(g, "one", 1.0)?);
        // Keys that sort the kept steps first, in order: exact in f32 up to 2^22 steps.
        let big = f32s(g, "big", (1u32 << 23) as f32)?;
        let time_axis = format!("{p}/time_axis");
        g.add_initializer_i64(&time_axis, &[], &[1]);
        let n = |g: &mut dyn OnnxGraph, tag: &str, op, inputs: &[&str], attrs| {
            Self::node(g, &p, tag, op, inputs, attrs)
        };
        let cast = |to: i64| vec![("to", OnnxAttr::Int(to))];

        // keep [B, T]: 1 where any feature differs from mask_value.
        let eq = n(g, "equal", "Equal", &[&x.name, &value], vec![]);
        let ne = n(g, "not", "Not", &[&eq], vec![]);
        let nef = n(g, "differs", "Cast", &[&ne], cast(ONNX_FLOAT));
        let reduce = vec![
            ("axes", OnnxAttr::Ints(vec![2])),
            ("keepdims", OnnxAttr::Int(0)),
        ];
        let keep = n(g, "keep", "ReduceMax", &[&nef], reduce);
        // The output: x with the masked steps zeroed.
        let axes2 = g.axes(2);
        let keep3 = n(g, "keep3", "Unsqueeze", &[&keep, &axes2], vec![]);
        let y = n(g, "output", "Mul", &[&x.name, &keep3], vec![]);
        // lens [B]: kept steps per row.
        let axes1 = g.axes(1);
        let keepdims0 = vec![("keepdims", OnnxAttr::Int(0))];
        let lens_f = n(g, "lens_f", "ReduceSum", &[&keep, &axes1], keepdims0);
        let lens = n(g, "lens", "Cast", &[&lens_f], cast(ONNX_INT32));
        // count [B, T]: kept steps up to and including t; pos [B, T]: t + 1.
        let count = n(g, "count", "CumSum", &[&keep, &time_axis], vec![]);
        let zeros = n(g, "zeros", "Mul", &[&keep, &zero], vec![]);
        let ones = n(g, "ones", "Add", &[&zeros, &one], vec![]);
        let pos = n(g, "pos", "CumSum", &[&ones, &time_axis], vec![]);
        // order: the steps sorted by key = keep * 2^23 - (t + 1), largest first.
        let scaled = n(g, "scaled", "Mul", &[&keep, &big], vec![]);
        let key = n(g, "key", "Sub", &[&scaled, &pos], vec![]);
        let shape = n(g, "shape", "Shape", &[&keep], vec![]);
        // Shape[1:2], the number of steps (`axes1`/`axes2` hold the int64s 1 and 2).
        let steps = n(g, "steps", "Slice", &[&shape, &axes1, &axes2], vec![]);
        let topk = format!("{p}/order_bt");
        let order_bt = format!("{topk}:1");
        g.add_node(
            topk.clone(),
            "TopK",
            vec![key, steps],
            vec![format!("{topk}:0"), order_bt.clone()],
            vec![
                ("axis", OnnxAttr::Int(1)),
                ("largest", OnnxAttr::Int(1)),
                ("sorted", OnnxAttr::Int(1)),
            ],
        );
        let order = Self::seq_major(g, &p, "order", &order_bt);
        // last_kept = max(count - 1, 0); seen = min(count, 1).
        let less = n(g, "count_less", "Sub", &[&count, &one], vec![]);
        let clamped = n(g, "last_kept_f", "Max", &[&less, &zero], vec![]);
        let last_bt = n(g, "last_kept_bt", "Cast", &[&clamped], cast(ONNX_INT64));
        let last_kept = Self::seq_major(g, &p, "last_kept", &last_bt);
        let seen_bt = n(g, "seen_bt", "Min", &[&count, &one], vec![]);
        let seen = Self::seq_major(g, &p, "seen", &seen_bt);
        let keep_seq = Self::seq_major(g, &p, "keep_seq", &keep);
        g.set_step_mask(Some(OnnxStepMask {
            order,
            lens,
            last_kept,
            seen,
            keep: keep_seq,
        }));
        Ok(OnnxValue {
            name: y,
            layout: OnnxLayout::BatchMajor,
            width: x.width,
        })
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
