//! The benchmark workloads of `workloads.json` (shared with the peer benchmarks): schema,
//! model construction, synthetic batches and analytic FLOP counts.
//!
//! The schema and the conventions (FLOPs, data, units) follow the peers' `common.py`, so a
//! record of ours and one of theirs measure the same thing.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use ndarray::{Array3, ArrayD, IxDyn};
use serde::Deserialize;
use stacklstm::init::Rng;
use stacklstm::{Dense, Embedding, Loss, Lstm, Model, Sequential};

/// The whole file.
#[derive(Debug, Deserialize)]
pub struct Spec {
    /// Schema version (1).
    pub schema: u32,
    /// Shared conventions; only `threads` is read.
    pub conventions: Conventions,
    /// Workloads by name, in file order.
    pub workloads: indexmap_like::OrderedMap,
    /// Repeats per measurement.
    pub repeats: usize,
}

/// `conventions` of the file.
#[derive(Debug, Deserialize)]
pub struct Conventions {
    /// Threads every framework may use.
    pub threads: usize,
}

/// One workload.
#[derive(Debug, Clone, Deserialize)]
pub struct Workload {
    /// The input and its kind.
    pub input: Input,
    /// The LSTM stack, input side first.
    pub lstm: Vec<LstmSpec>,
    /// Optional Dense head.
    pub dense: Option<DenseSpec>,
    /// `mse`, `softmax_cross_entropy` or none (inference only).
    pub loss: Option<String>,
    /// What to measure.
    pub measure: Measures,
}

/// `input` of a workload.
#[derive(Debug, Clone, Deserialize)]
pub struct Input {
    /// `dense`, `onehot` or `tokens`.
    pub kind: String,
    /// Timesteps `T`.
    pub timesteps: usize,
    /// Features of a dense input.
    pub features: Option<usize>,
    /// Vocabulary of onehot / token inputs.
    pub vocab: Option<usize>,
    /// Embedding width of token inputs.
    pub embedding_dim: Option<usize>,
    /// Fixed batch-1 sample of a dense input, `[T * features]`.
    pub sample: Option<Vec<f32>>,
}

/// One LSTM of the stack.
#[derive(Debug, Clone, Deserialize)]
pub struct LstmSpec {
    /// Units.
    pub units: usize,
    /// Whether it returns the whole sequence.
    pub return_sequences: bool,
}

/// The Dense head.
#[derive(Debug, Clone, Deserialize)]
pub struct DenseSpec {
    /// Output units.
    pub units: usize,
    /// Applied to every timestep of a sequence (else to the last hidden state).
    pub per_timestep: bool,
    /// `linear` or `softmax` (softmax is folded into the loss, from logits).
    pub activation: String,
}

/// `measure` of a workload.
#[derive(Debug, Clone, Deserialize)]
pub struct Measures {
    /// Training throughput.
    pub train: Option<Measure>,
    /// Inference throughput.
    pub infer_throughput: Option<Measure>,
    /// Per-call latency.
    pub infer_latency: Option<Measure>,
}

/// One measurement's sizes.
#[derive(Debug, Clone, Deserialize)]
pub struct Measure {
    /// Batch size.
    pub batch: usize,
    /// Untimed training steps.
    pub warmup_steps: Option<usize>,
    /// Timed training steps.
    pub steps: Option<usize>,
    /// Untimed calls.
    pub warmup_calls: Option<usize>,
    /// Timed calls.
    pub calls: Option<usize>,
    /// `samples/s`, `tokens/s` or `ms`.
    pub unit: String,
}

/// A name-ordered map that keeps the file's order (serde_json's map sorts by key).
pub mod indexmap_like {
    use super::Workload;
    use serde::de::{Deserializer, MapAccess, Visitor};
    use serde::Deserialize;

    /// Workloads in file order.
    #[derive(Debug, Default)]
    pub struct OrderedMap(pub Vec<(String, Workload)>);

    impl<'de> Deserialize<'de> for OrderedMap {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = OrderedMap;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a map of workloads")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<OrderedMap, A::Error> {
                    let mut v = Vec::new();
                    while let Some((k, w)) = m.next_entry::<String, Workload>()? {
                        v.push((k, w));
                    }
                    Ok(OrderedMap(v))
                }
            }
            d.deserialize_map(V)
        }
    }
}

impl Spec {
    /// Reads and parses `workloads.json`.
    pub fn load(path: &Path) -> Result<Spec> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let spec: Spec =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if spec.schema != 1 {
            bail!(
                "{}: schema {} is not supported (expected 1)",
                path.display(),
                spec.schema
            );
        }
        Ok(spec)
    }

    /// The workload called `name`.
    pub fn get(&self, name: &str) -> Result<&Workload> {
        self.workloads
            .0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, w)| w)
            .with_context(|| {
                let names: Vec<&str> = self.workloads.0.iter().map(|(n, _)| n.as_str()).collect();
                format!(
                    "no workload named '{name}'; available: {}",
                    names.join(", ")
                )
            })
    }

    /// Workload names in file order.
    pub fn names(&self) -> Vec<String> {
        self.workloads.0.iter().map(|(n, _)| n.clone()).collect()
    }
}

impl Workload {
    /// Width of the first LSTM's input.
    pub fn input_width(&self) -> Result<usize> {
        let i = &self.input;
        let w = match i.kind.as_str() {
            "dense" => i.features,
            "onehot" => i.vocab,
            "tokens" => i.embedding_dim,
            other => bail!("unknown input kind '{other}' (expected dense, onehot or tokens)"),
        };
        w.with_context(|| format!("input kind '{}' lacks its width field", i.kind))
    }

    /// Analytic forward matmul FLOPs per sample (see `conventions.flops`).
    pub fn forward_flops_per_sample(&self) -> Result<u64> {
        let t = self.input.timesteps as u64;
        let mut width = self.input_width()? as u64;
        let mut flops = 0u64;
        for l in &self.lstm {
            let u = l.units as u64;
            flops += 2 * 4 * u * (width + u) * t;
            width = u;
        }
        if let Some(d) = &self.dense {
            flops += 2 * width * d.units as u64 * if d.per_timestep { t } else { 1 };
        }
        Ok(flops)
    }

    /// The training loss.
    pub fn loss(&self) -> Result<Option<Loss>> {
        Ok(match self.loss.as_deref() {
            None => None,
            Some("mse") => Some(Loss::Mse),
            Some("softmax_cross_entropy") => {
                Some(Loss::SparseCategoricalCrossentropy { from_logits: true })
            }
            Some(other) => bail!("unknown loss '{other}'"),
        })
    }

    /// Builds the model (seed 0, Keras default initialisers).
    pub fn build(&self) -> Result<Model> {
        let t = self.input.timesteps;
        let mut s = if self.input.kind == "tokens" {
            // Token ids `[B, T, 1]` looked up in an Embedding(vocab, embedding_dim).
            let vocab = self.input.vocab.context("a tokens input needs vocab")?;
            Sequential::new()
                .input_shape(t, 1)
                .add(Embedding::new(vocab, self.input_width()?))
        } else {
            Sequential::new().input_shape(t, self.input_width()?)
        };
        for l in &self.lstm {
            s = s.add(Lstm::new(l.units).return_sequences(l.return_sequences));
        }
        if let Some(d) = &self.dense {
            let last_seq = self.lstm.last().is_some_and(|l| l.return_sequences);
            if d.per_timestep != last_seq {
                bail!("dense.per_timestep must equal the last LSTM's return_sequences");
            }
            if !matches!(d.activation.as_str(), "linear" | "softmax") {
                bail!("dense activation '{}' is not supported", d.activation);
            }
            // softmax is applied inside the cross-entropy (from logits), as the peers do.
            s = s.add(Dense::new(d.units));
        }
        Ok(s.seed(0).build()?)
    }

    /// A synthetic batch `(x [B, T, width], target)`, as the peers' `make_batch` (token
    /// inputs: `[B, T, 1]` ids as `f32`): dense
    /// inputs ~ N(0, 1) (the fixed sample at batch 1 when given), one-hot rows of uniform
    /// token ids, random next-token ids (as `f32`) for cross-entropy, N(0, 1) targets for mse.
    pub fn batch(&self, b: usize, seed: u64) -> Result<(Array3<f32>, ArrayD<f32>)> {
        let mut rng = Rng::new(seed);
        let t = self.input.timesteps;
        let width = self.input_width()?;
        let x = match (self.input.kind.as_str(), &self.input.sample) {
            ("dense", Some(sample)) if b == 1 => {
                Array3::from_shape_vec((1, t, width), sample.clone())
                    .context("input.sample does not have timesteps * features values")?
            }
            ("tokens", _) => {
                let vocab = self.input.vocab.context("a tokens input needs vocab")?;
                Array3::from_shape_simple_fn((b, t, 1), || rng.below(vocab) as f32)
            }
            ("onehot", _) => {
                let mut x = Array3::zeros((b, t, width));
                for i in 0..b {
                    for s in 0..t {
                        x[[i, s, rng.below(width)]] = 1.0;
                    }
                }
                x
            }
            _ => Array3::from_shape_simple_fn((b, t, width), || rng.normal() as f32),
        };
        let (units, seq) = match (&self.dense, self.lstm.last()) {
            (Some(d), _) => (d.units, d.per_timestep),
            (None, Some(l)) => (l.units, l.return_sequences),
            (None, None) => bail!("a workload needs at least one LSTM"),
        };
        let y = if self.loss.as_deref() == Some("softmax_cross_entropy") {
            let shape: Vec<usize> = if seq { vec![b, t] } else { vec![b] };
            ArrayD::from_shape_simple_fn(IxDyn(&shape), || rng.below(units) as f32)
        } else {
            let shape: Vec<usize> = if seq {
                vec![b, t, units]
            } else {
                vec![b, units]
            };
            ArrayD::from_shape_simple_fn(IxDyn(&shape), || rng.normal() as f32)
        };
        Ok((x, y))
    }

    /// How many units (samples or tokens) one sample is worth.
    pub fn units_per_sample(&self, unit: &str) -> usize {
        if unit.starts_with("tokens") {
            self.input.timesteps
        } else {
            1
        }
    }
}

/// Tallies of a workload name list, `all` expanded.
pub fn select(spec: &Spec, wanted: &str) -> Result<Vec<String>> {
    if wanted == "all" {
        return Ok(spec.names());
    }
    let mut seen = BTreeMap::new();
    let mut out = Vec::new();
    for n in wanted.split(',').filter(|s| !s.is_empty()) {
        spec.get(n)?;
        if seen.insert(n.to_string(), ()).is_none() {
            out.push(n.to_string());
        }
    }
    if out.is_empty() {
        bail!("no workload given");
    }
    Ok(out)
}
