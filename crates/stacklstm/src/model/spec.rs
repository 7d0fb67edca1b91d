//! `Sequential`: the model's specification, its layer names, shape inference and build.

use ndarray::ArrayD;
use serde::{Deserialize, Serialize};

use super::Model;
use crate::error::{Error, Result};
use crate::init::Rng;
use crate::layers::{FlatOrigin, LayerSpec, OutShape, StackInput, MAX_LAYER_PARAMS};

/// The most timesteps or features a model input may declare.
pub const MAX_DIM: usize = 1 << 24;

/// A model under construction: an input shape and a stack of layer specs.
///
/// # Example
/// ```
/// use stacklstm::{Dense, Lstm, Sequential};
/// let model = Sequential::new()
///     .input_shape(30, 1)                        // timesteps, features
///     .add(Lstm::new(50).return_sequences(true))
///     .add(Lstm::new(50))
///     .add(Dense::new(1))
///     .build()?;
/// assert_eq!(model.param_count(), 10_400 + 20_200 + 51);
/// # Ok::<(), stacklstm::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sequential {
    /// Model name (`sequential` by default).
    pub name: String,
    /// `(timesteps, features)`; `timesteps` is `None` for variable-length input.
    pub input_shape: Option<(Option<usize>, usize)>,
    /// The layers, input side first.
    pub layers: Vec<LayerSpec>,
    /// Seed of the weight initialisers.
    pub seed: u64,
}

impl Default for Sequential {
    fn default() -> Self {
        Sequential::new()
    }
}

impl Sequential {
    /// An empty model named `sequential`, seed 0.
    #[must_use]
    pub fn new() -> Self {
        Sequential {
            name: "sequential".into(),
            input_shape: None,
            layers: Vec::new(),
            seed: 0,
        }
    }
    /// Sets the input shape `(timesteps, features)` of one sample.
    #[must_use]
    pub fn input_shape(mut self, timesteps: usize, features: usize) -> Self {
        self.input_shape = Some((Some(timesteps), features));
        self
    }
    /// Declares a variable number of timesteps with `features` per step.
    #[must_use]
    pub fn input_features(mut self, features: usize) -> Self {
        self.input_shape = Some((None, features));
        self
    }
    /// Appends a layer.
    #[must_use]
    #[allow(clippy::should_implement_trait)] // Keras' `model.add(layer)`.
    pub fn add(mut self, layer: impl Into<LayerSpec>) -> Self {
        self.layers.push(layer.into());
        self
    }
    /// Sets the seed of the weight initialisers.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Sets the model name.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Checks the stack, infers every shape and initialises the weights from the seed.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`]: no input shape, no layers, a zero or absurd size, an LSTM
    /// stacked after a layer with 2-D output (the message names both layers and says to
    /// set `return_sequences(true)`), `return_state` inside a `Sequential`, duplicate names.
    pub fn build(&self) -> Result<Model> {
        self.build_impl(true)
    }

    /// Builds the model and sets its weights (Keras `get_weights()` order): how a model is
    /// restored from a file.
    ///
    /// # Errors
    /// As [`build`](Self::build) and [`Model::set_weights`].
    pub fn build_with_weights(&self, weights: &[ArrayD<f32>]) -> Result<Model> {
        let mut model = self.build_impl(false)?;
        model.set_weights(weights)?;
        Ok(model)
    }

    /// The input shape, checked.
    fn checked_input(&self) -> Result<(Option<usize>, usize)> {
        let (timesteps, features) = self.input_shape.ok_or_else(|| {
            Error::config(
                "the model has no input shape: call .input_shape(timesteps, features) before .build()",
            )
        })?;
        if features == 0 || features > MAX_DIM {
            return Err(Error::config(format!(
                "input features must be in 1..={MAX_DIM}, got {features}"
            )));
        }
        if let Some(t) = timesteps.filter(|&t| t == 0 || t > MAX_DIM) {
            return Err(Error::config(format!(
                "input timesteps must be in 1..={MAX_DIM}, got {t}"
            )));
        }
        Ok((timesteps, features))
    }

    /// [`build`](Self::build); `init` false skips the initialisers that cost more than
    /// O(weights), for a model whose weights are set right after.
    fn build_impl(&self, init: bool) -> Result<Model> {
        let (timesteps, features) = self.checked_input()?;
        if self.layers.is_empty() {
            return Err(Error::config(
                "the model has no layers: add at least one with .add(...)",
            ));
        }
        let names = self.layer_names()?;
        // The whole model must fit the same budget as one layer (2^31 weights, 8 GiB of f32):
        // a config asking for more is an error here, not an out-of-memory kill later.
        let total: u128 = self
            .weight_shapes()?
            .iter()
            .map(|(_, s)| s.iter().fold(1u128, |a, &d| a.saturating_mul(d as u128)))
            .sum();
        if total > MAX_LAYER_PARAMS {
            return Err(Error::config(format!(
                "the model would have {total} weights, more than the limit of {MAX_LAYER_PARAMS}; check the units and input width of its layers"
            )));
        }
        let mut rng = Rng::new(self.seed);
        let mut layers = Vec::with_capacity(self.layers.len());
        let mut shapes = Vec::with_capacity(self.layers.len());
        for_each_shape(self, &names, features, |spec, name, input, out| {
            layers.push(
                spec.config()
                    .build(name.to_string(), input, &mut rng, init)?,
            );
            shapes.push(out);
            Ok(())
        })?;
        Ok(Model::from_parts(
            self.clone(),
            timesteps,
            features,
            layers,
            shapes,
        ))
    }

    /// The layer names `build` will use: explicit names, else Keras-style defaults (`lstm`,
    /// `lstm_1`, ..., `dense`, ...).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an empty or duplicate name.
    pub fn layer_names(&self) -> Result<Vec<String>> {
        let specs = &self.layers;
        let mut names: Vec<String> = Vec::with_capacity(specs.len());
        let mut counts = std::collections::HashMap::new();
        for s in specs.iter().map(LayerSpec::config) {
            let name = match s.explicit_name() {
                Some(n) => n.to_string(),
                None => loop {
                    let k = counts.entry(s.default_prefix()).or_insert(0usize);
                    let candidate = if *k == 0 {
                        s.default_prefix().to_string()
                    } else {
                        format!("{}_{}", s.default_prefix(), k)
                    };
                    *k += 1;
                    if !specs
                        .iter()
                        .any(|o| o.config().explicit_name() == Some(candidate.as_str()))
                    {
                        break candidate;
                    }
                },
            };
            if name.is_empty() {
                return Err(Error::config(format!(
                    "a {} layer has an empty name",
                    s.kind()
                )));
            }
            if names.contains(&name) {
                return Err(Error::config(format!(
                    "two layers are named '{name}'; layer names must be unique"
                )));
            }
            names.push(name);
        }
        Ok(names)
    }

    /// The weight tensors a model built from this spec has, as `("layer/weight", shape)` in
    /// Keras `get_weights()` order, computed without building (nothing is allocated), so a
    /// loader can check a file's tensors against its config first.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`]: no input shape, an absurd size (`units = 10^12`), a bad
    /// option or name. Stacking errors are left to [`build`](Self::build).
    pub fn weight_shapes(&self) -> Result<Vec<(String, Vec<usize>)>> {
        let (_, features) = self.checked_input()?;
        let names = self.layer_names()?;
        let mut width = features;
        let mut out = Vec::new();
        for (spec, name) in self.layers.iter().zip(&names) {
            let shapes = spec.config().weight_shapes(name, width)?;
            out.extend(shapes.into_iter().map(|(w, s)| (format!("{name}/{w}"), s)));
            width = spec.config().output_width(width);
        }
        Ok(out)
    }

    /// The output shape of every layer, after the stacking checks.
    ///
    /// # Errors
    /// As [`build`](Self::build), without allocating any weight.
    pub fn output_shapes(&self) -> Result<Vec<OutShape>> {
        let (_, features) = self.checked_input()?;
        let names = self.layer_names()?;
        let mut shapes = Vec::with_capacity(self.layers.len());
        for_each_shape(self, &names, features, |_, _, _, out| {
            shapes.push(out);
            Ok(())
        })?;
        Ok(shapes)
    }
}

/// Walks the stack: for every layer, its spec, name, input shape and output shape, after
/// the layer's own checks; tracks which layer removed the time axis for the stacking
/// error.
fn for_each_shape(
    model: &Sequential,
    names: &[String],
    features: usize,
    mut f: impl FnMut(&LayerSpec, &str, OutShape, OutShape) -> Result<()>,
) -> Result<()> {
    let mut shape = OutShape {
        seq: true,
        width: features,
    };
    let mut flat_origin: Option<FlatOrigin> = None;
    for (index, (spec, name)) in model.layers.iter().zip(names).enumerate() {
        let config = spec.config();
        let out = config.output_shape(
            name,
            &StackInput {
                index,
                shape,
                flat_origin: flat_origin.as_ref(),
            },
        )?;
        f(spec, name, shape, out)?;
        if !out.seq {
            let sequence_source = if shape.seq {
                config.has_return_sequences().then(|| name.clone())
            } else {
                flat_origin.and_then(|o| o.sequence_source)
            };
            flat_origin = Some(FlatOrigin {
                layer: name.clone(),
                kind: config.kind(),
                sequence_source,
            });
        }
        shape = out;
    }
    Ok(())
}
