//! The Embedding layer: token ids to vectors (Keras `Embedding`).
//!
//! Legend: `N` = positions (timesteps × batch), `V` = vocabulary size (`input_dim`), `E` =
//! `output_dim`. Input ids arrive as the single feature of a `[batch, timesteps, 1]` input
//! (exact as f32 up to 2^24, far above [`MAX_VOCAB`]). Backward scatters: `d table[id] += dy`.


use ndarray::ArrayView3;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::init::Rng;
use crate::layers::keras::{FromKeras, KerasConfig};
use crate::layers::{
    cache_mut, cache_ref, check_size, Backward, Cache, Layer, LayerConfig, OutShape, Part,
    StackInput, State, Weight,
};

/// The largest vocabulary an Embedding accepts (10 million ids).
pub const MAX_VOCAB: usize = 10_000_000;

/// Specification of an Embedding layer; it must be the first layer, on an input with one
/// feature holding integer token ids in `[0, input_dim)`.
///
/// # Shapes
/// `[batch, timesteps, 1]` (ids) to `[batch, timesteps, output_dim]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Embedding {
    /// Vocabulary size `V`.
    pub input_dim: usize,
    /// Vector width `E`.
    pub output_dim: usize,
    /// Layer name; `embedding` by default.
    pub name: Option<String>,
    /// Whether training updates the table (Keras `trainable`, default true).
    #[serde(skip_serializing_if = "crate::layers::is_true")]
    pub trainable: bool,
    /// Whether id 0 is padding (Keras `mask_zero`): steps holding id 0 are masked for the
    /// layers above (see "Masks" in [`crate::layers`]); the lookup itself is unchanged.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub mask_zero: bool,
}

impl Default for Embedding {
    fn default() -> Self {
        Embedding {
            input_dim: 1,
            output_dim: 1,
            name: None,
            trainable: true,
            mask_zero: false,
        }
    }
}

impl Embedding {
    /// An embedding of `input_dim` ids into `output_dim`-wide vectors.
    #[must_use]
    pub fn new(input_dim: usize, output_dim: usize) -> Self {
        Embedding {
            input_dim,
            output_dim,
            ..Embedding::default()
        }
    }
    /// Sets the layer name.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Sets `trainable` (false: training leaves the table as it is).
    #[must_use]
    pub fn trainable(mut self, on: bool) -> Self {
        self.trainable = on;
        self
    }
    /// Sets `mask_zero`: id 0 marks padding, masked in the layers above.
    #[must_use]
    pub fn mask_zero(mut self, on: bool) -> Self {
        self.mask_zero = on;
        self
    }

    /// Checks the sizes.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the layer.
    pub fn validate(&self, name: &str) -> Result<()> {
        if self.input_dim == 0 || self.output_dim == 0 {
            return Err(Error::config(format!(
                "layer '{name}' (Embedding): input_dim and output_dim must be at least 1"
            )));
        }
        if self.input_dim > MAX_VOCAB {
            return Err(Error::config(format!(
                "layer '{name}' (Embedding): input_dim {} exceeds the limit of {MAX_VOCAB}",
                self.input_dim
            )));
        }
        check_size(name, "Embedding", &[self.input_dim, self.output_dim])
    }
}

/// A built Embedding with its table.
#[derive(Debug, Clone)]
pub struct EmbeddingLayer {
    spec: Embedding,
    name: String,
    /// `[V, E]`.
    embeddings: Vec<f32>,
    /// `[V, E]`, the Keras shape of `embeddings`.
    shape: [usize; 2],
}

/// What forward keeps: the looked-up vectors `[N, E]`.
#[derive(Debug, Default)]
struct EmbeddingCache {
    y: Vec<f32>,
}

impl LayerConfig for Embedding {
    config_identity!("Embedding", "embedding", trainable);
    fn takes_token_ids(&self) -> bool {
        true
    }
    fn makes_mask(&self) -> bool {
        self.mask_zero
    }
    fn output_width(&self, _: usize) -> usize {
        self.output_dim
    }
    fn output_shape(&self, name: &str, input: &StackInput<'_>) -> Result<OutShape> {
        if input.index != 0 || input.shape.width != 1 {
            return Err(Error::config(format!(
                "layer '{name}' (Embedding) must be the first layer, on an input of token ids with one feature (input_shape(timesteps, 1)); here it is layer {} on {} features",
                input.index + 1,
                input.shape.width
            )));
        }
        self.validate(name)?;
        Ok(OutShape {
            seq: true,
            width: self.output_dim,
        })
    }
    fn weight_shapes(&self, name: &str, _: usize) -> Result<Vec<(&'static str, Vec<usize>)>> {
        self.validate(name)?;
        Ok(vec![("embeddings", vec![self.input_dim, self.output_dim])])
    }
    fn build(&self, name: String, _: OutShape, rng: &mut Rng, _: bool) -> Result<Box<dyn Layer>> {
        Ok(Box::new(EmbeddingLayer::build(self.clone(), name, rng)?))
    }
}

impl FromKeras for Embedding {
    const KERAS_SUPPORT: &'static str =
        "Embedding (first layer only; mask_zero; no sparse, regularizers, constraints, lora_rank)";

    fn from_keras(cfg: &mut KerasConfig<'_>) -> Self {
        cfg.dtype();
        cfg.forbid_true("sparse");
        cfg.forbid_set(&[
            "embeddings_regularizer",
            "embeddings_constraint",
            "activity_regularizer",
            "lora_rank",
        ]);
        Embedding::new(cfg.dim("input_dim"), cfg.dim("output_dim"))
            .name(cfg.name())
            .trainable(cfg.bool("trainable", true))
            .mask_zero(cfg.bool("mask_zero", false))
    }
}

impl EmbeddingLayer {
    /// Builds the table with Keras' default `uniform(-0.05, 0.05)`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] from [`Embedding::validate`].
    pub fn build(spec: Embedding, name: String, rng: &mut Rng) -> Result<Self> {
        spec.validate(&name)?;
        let n = spec.input_dim * spec.output_dim;
        let embeddings = (0..n).map(|_| rng.uniform(-0.05, 0.05) as f32).collect();
        let shape = [spec.input_dim, spec.output_dim];
        Ok(EmbeddingLayer {
            spec,
            name,
            embeddings,
            shape,
        })
    }

    /// The options it was built from.
    pub fn spec(&self) -> &Embedding {
        &self.spec
    }

    /// The table `[V, E]`, row-major.
    pub fn embeddings(&self) -> &[f32] {
        &self.embeddings
    }

    /// Checks that every id is an integer in `[0, V)`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the first bad id and its flat position.
    pub fn check_ids(&self, ids: impl Iterator<Item = f32>) -> Result<()> {
        for (i, id) in ids.enumerate() {
            if !(id >= 0.0 && id.fract() == 0.0 && (id as usize) < self.spec.input_dim) {
                return Err(Error::input(format!(
                    "layer '{}' (Embedding): token id {id} at position {i} is not an integer in [0, {})",
                    self.name, self.spec.input_dim
                )));
            }
        }
        Ok(())
    }

    /// `out [N, E] = table[ids]`; ids are validated by the model before.
    fn lookup(&self, ids: &[f32], out: &mut Vec<f32>) {
        let e = self.spec.output_dim;
        out.clear();
        out.reserve(ids.len() * e);
        for &id in ids {
            let r = id as usize;
            out.extend_from_slice(&self.embeddings[r * e..(r + 1) * e]);
        }
    }

    /// `d table[id] += dy` for every position, into `grad` (sized like the table).
    fn scatter(&self, ids: &[f32], dy: &[f32], grad: &mut [f32]) {
        let e = self.spec.output_dim;
        for (&id, g) in ids.iter().zip(dy.chunks_exact(e)) {
            let r = id as usize;
            for (a, b) in grad[r * e..(r + 1) * e].iter_mut().zip(g) {
                *a += b;
            }
        }
    }
}

impl Layer for EmbeddingLayer {
    layer_identity!("Embedding");
    fn weights(&self) -> Vec<Weight<'_>> {
        vec![Weight {
            name: "embeddings",
            shape: &self.shape,
            values: &self.embeddings,
        }]
    }
    fn weights_mut(&mut self) -> Vec<&mut [f32]> {
        vec![&mut self.embeddings]
    }
    fn new_cache(&self) -> Box<dyn Cache> {
        Box::<EmbeddingCache>::default()
    }
    fn check_input(&self, x: ArrayView3<'_, f32>) -> Result<()> {
        self.check_ids(x.iter().copied())
    }
    /// With `mask_zero`, a step is kept iff its id is not 0.
    fn compute_mask(&self, x: ArrayView3<'_, f32>, mask: &mut Vec<bool>) {
        let (b, t, _) = x.dim();
        mask.clear();
        mask.extend((0..t * b).map(|k| x[[k % b, k / b, 0]] != 0.0));
    }
    fn forward(&self, ids: &[f32], _: usize, _: usize, _: Option<&State>, _: Option<&[bool]>, cache: &mut dyn Cache) {
        self.lookup(ids, &mut cache_mut::<EmbeddingCache>(cache).y);
    }
    fn output<'c>(&self, cache: &'c dyn Cache) -> &'c [f32] {
        &cache_ref::<EmbeddingCache>(cache).y
    }
    fn backward(&self, pass: Backward<'_>) {
        if let Some(g) = pass.grads {
            self.scatter(pass.x, pass.dy, &mut g[0]);
        }
        if let Some(dx) = pass.dx {
            // Token ids are not differentiable: their gradient is zero.
            dx.clear();
            dx.resize(pass.x.len(), 0.0);
        }
    }
    /// The scatter-add runs after the batch parts, one part after the other into the one
    /// gradient: no second copy of a vocabulary-sized table.
    fn defers_weight_grads(&self, first: bool, _: bool) -> bool {
        first
    }
    fn weight_grads_of_parts(&self, parts: &[Part<'_>], grads: &mut [Vec<f32>]) {
        for p in parts {
            self.scatter(p.x, p.dy, &mut grads[0]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_and_scatter_gradient() {
        let mut rng = Rng::new(1);
        let mut l =
            EmbeddingLayer::build(Embedding::new(4, 2), "embedding".into(), &mut rng).unwrap();
        assert!(l.embeddings.iter().all(|v| v.abs() <= 0.05));
        l.embeddings = (0..8).map(|v| v as f32).collect();
        let ids = [2.0, 0.0, 2.0];
        let mut cache = l.new_cache();
        l.forward(&ids, 3, 1, None, None, &mut *cache);
        assert_eq!(l.output(&*cache), [4.0, 5.0, 0.0, 1.0, 4.0, 5.0]);
        let mut grads = vec![vec![0.0; 8]];
        let mut dx = Vec::new();
        l.backward(Backward {
            x: &ids,
            dy: &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            cache: &mut *cache,
            mask: None,
            dx: Some(&mut dx),
            grads: Some(&mut grads),
        });
        // Row 2 receives two contributions, row 0 one, rows 1 and 3 none.
        assert_eq!(grads[0], vec![3.0, 4.0, 0.0, 0.0, 6.0, 8.0, 0.0, 0.0]);
        assert_eq!(dx, vec![0.0; 3]);
        // The same gradient formed after the parts, one part after the other.
        let mut after = vec![vec![0.0; 8]];
        let parts = [
            Part {
                x: &ids[..1],
                dy: &[1.0, 2.0],
                cache: &*cache,
            },
            Part {
                x: &ids[1..],
                dy: &[3.0, 4.0, 5.0, 6.0],
                cache: &*cache,
            },
        ];
        l.weight_grads_of_parts(&parts, &mut after);
        assert_eq!(after, grads);
        assert!(l.check_ids([1.0, 3.0].into_iter()).is_ok());
        assert!(l
            .check_ids([4.0].into_iter())
            .unwrap_err()
            .to_string()
            .contains("[0, 4)"));
        assert!(l.check_ids([1.5].into_iter()).is_err());
        assert!(l.check_ids([-1.0].into_iter()).is_err());
        assert!(
            EmbeddingLayer::build(Embedding::new(MAX_VOCAB + 1, 2), "e".into(), &mut rng).is_err()
        );
    }

    #[test]
    fn keras_config() {
        let cfg: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
            r#"{"name": "emb", "input_dim": 10, "output_dim": 4, "mask_zero": false}"#,
        )
        .unwrap();
        let mut k = KerasConfig::new("Embedding", &cfg);
        assert_eq!(
            Embedding::from_keras(&mut k),
            Embedding::new(10, 4).name("emb")
        );
        assert!(k.problems().is_empty(), "{:?}", k.problems());
        let cfg: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
            r#"{"name": "emb", "input_dim": 10, "output_dim": 4, "mask_zero": true}"#,
        )
        .unwrap();
        let mut k = KerasConfig::new("Embedding", &cfg);
        assert_eq!(
            Embedding::from_keras(&mut k),
            Embedding::new(10, 4).name("emb").mask_zero(true)
        );
        assert!(k.problems().is_empty(), "{:?}", k.problems());
        let cfg: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
            r#"{"name": "emb", "input_dim": 10, "sparse": true, "lora_rank": 2}"#,
        )
        .unwrap();
        let mut k = KerasConfig::new("Embedding", &cfg);
        let _ = Embedding::from_keras(&mut k);
        let p = k.into_problems();
        assert_eq!(p.malformed.len(), 1, "output_dim missing: {p:?}");
        assert_eq!(p.unsupported.len(), 2, "{p:?}");
    }
}
