//! The Embedding layer: token ids to vectors (Keras `Embedding`).
//!
//! Legend: `N` = positions (timesteps × batch), `V` = vocabulary size (`input_dim`), `E` =
//! `output_dim`. Input ids arrive as the single feature of a `[batch, timesteps, 1]` input
//! (exact as f32 up to 2^24, far above [`MAX_VOCAB`]). Backward scatters: `d table[id] += dy`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::init::Rng;
use crate::layers::check_size;

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
}

impl Default for Embedding {
    fn default() -> Self {
        Embedding {
            input_dim: 1,
            output_dim: 1,
            name: None,
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
            name: None,
        }
    }
    /// Sets the layer name.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
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

/// A built Embedding with its table and gradient.
#[derive(Debug, Clone)]
pub struct EmbeddingLayer {
    /// The options it was built from.
    pub spec: Embedding,
    /// Layer name.
    pub name: String,
    /// `[V, E]`.
    pub embeddings: Vec<f32>,
    /// Gradient of `embeddings`.
    pub grad_embeddings: Vec<f32>,
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
        Ok(EmbeddingLayer {
            spec,
            name,
            embeddings,
            grad_embeddings: vec![0.0; n],
        })
    }

    /// Sets the gradient to zero.
    pub fn zero_grad(&mut self) {
        self.grad_embeddings.clear();
        self.grad_embeddings.resize(self.embeddings.len(), 0.0);
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
    pub(crate) fn forward(&self, ids: &[f32], out: &mut Vec<f32>) {
        let e = self.spec.output_dim;
        out.clear();
        out.reserve(ids.len() * e);
        for &id in ids {
            let r = id as usize;
            out.extend_from_slice(&self.embeddings[r * e..(r + 1) * e]);
        }
    }

    /// `d table[id] += dy` for every position.
    #[cfg(test)]
    pub(crate) fn backward(&mut self, ids: &[f32], dy: &[f32]) {
        let mut grad = std::mem::take(&mut self.grad_embeddings);
        self.backward_into(ids, dy, &mut grad);
        self.grad_embeddings = grad;
    }

    /// [`backward`](Self::backward) accumulating into `grad` (sized like the table).
    pub(crate) fn backward_into(&self, ids: &[f32], dy: &[f32], grad: &mut [f32]) {
        let e = self.spec.output_dim;
        for (&id, g) in ids.iter().zip(dy.chunks_exact(e)) {
            let r = id as usize;
            for (a, b) in grad[r * e..(r + 1) * e].iter_mut().zip(g) {
                *a += b;
            }
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
        let mut out = Vec::new();
        l.forward(&ids, &mut out);
        assert_eq!(out, vec![4.0, 5.0, 0.0, 1.0, 4.0, 5.0]);
        l.backward(&ids, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        // Row 2 receives two contributions, row 0 one, rows 1 and 3 none.
        assert_eq!(
            l.grad_embeddings,
            vec![3.0, 4.0, 0.0, 0.0, 6.0, 8.0, 0.0, 0.0]
        );
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
}
