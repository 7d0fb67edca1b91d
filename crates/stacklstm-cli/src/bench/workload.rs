//! The benchmark workloads of `workloads.json` (shared with the peer benchmarks): schema,
//! model construction, synthetic batches and analytic FLOP counts.
//!
//! The schema and the conventions (FLOPs, data, units) follow the peers' `common.py`, so a
//! record of ours and one of theirs measure the same thing. The project's own table
//! `bench/workloads-rnn.json` extends the schema with three optional fields, read here too:
//! `cell` (`lstm` or `gru`) and `bidirectional` (`concat`) on a recurrent layer, and
//! `lengths` (`{min, max}`: per-row lengths, right padding) on the input.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use ndarray::{s, Array3, ArrayD, IxDyn};
use serde::Deserialize;
use stacklstm::init::Rng;
use stacklstm::{
    Bidirectional, Dense, Embedding, Gru, LayerSpec, Loss, Lstm, Masking, MergeMode, Model,
    Sequential,
};

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
    /// The recurrent stack, input side first (the key is `lstm` in every table, whatever
    /// the cells).
    pub lstm: Vec<RecurrentSpec>,
    /// Optional Dense head.
    pub dense: Option<DenseSpec>,
    /// `mse`, `softmax_cross_entropy` or none (inference only).
    pub loss: Option<String>,
    /// What to measure.
    pub measure: Measures,
}

/// `input` of a workload. Unknown fields are refused: a field this reader does not know
/// could change the model, and a benchmark of another model than the table's is worse
/// than none.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
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
    /// Per-row lengths of a dense input (right padding with zeros up to `timesteps`, to
    /// be masked); every row full length when absent.
    pub lengths: Option<Lengths>,
}

/// `input.lengths`: the rows of a batch have lengths spread evenly over `min..=max`, in a
/// random order (see [`Workload::lengths`]).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lengths {
    /// Shortest row, at least 1.
    pub min: usize,
    /// Longest row, at most `timesteps`.
    pub max: usize,
}

/// One recurrent layer of the stack. Unknown fields are refused, as for [`Input`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecurrentSpec {
    /// Units (per direction).
    pub units: usize,
    /// Whether it returns the whole sequence.
    pub return_sequences: bool,
    /// The cell; LSTM when absent (the shared table has no such field).
    #[serde(default)]
    pub cell: Cell,
    /// Run the layer in both directions and merge their outputs.
    pub bidirectional: Option<Merge>,
}

/// `cell` of a recurrent layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cell {
    /// Keras `LSTM` / `nn.LSTM`: 4 gates.
    #[default]
    Lstm,
    /// Keras `GRU` (`reset_after=True`, its default) / `nn.GRU`: 3 gates.
    Gru,
}

impl Cell {
    /// Gate blocks of the cell's kernels (the `4` of `4 * units`).
    pub fn gates(self) -> u64 {
        match self {
            Cell::Lstm => 4,
            Cell::Gru => 3,
        }
    }
}

/// `bidirectional` of a recurrent layer: how the two directions' outputs combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Merge {
    /// Forward and backward outputs side by side (`2 * units` wide), Keras'
    /// `merge_mode="concat"` and what `nn.LSTM(bidirectional=True)` returns.
    Concat,
}

impl RecurrentSpec {
    /// Directions (2 when bidirectional).
    pub fn directions(&self) -> u64 {
        if self.bidirectional.is_some() {
            2
        } else {
            1
        }
    }

    /// Width of the layer's output.
    pub fn output_width(&self) -> usize {
        self.units * self.directions() as usize
    }
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
        for (name, w) in &spec.workloads.0 {
            w.validate()
                .with_context(|| format!("{}: workload '{name}'", path.display()))?;
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

    /// Analytic forward matmul FLOPs per sample (see `conventions.flops`): per timestep,
    /// `2 * gates * units * (input_width + units)` for each direction of a recurrent layer
    /// (gates: 4 for an LSTM, 3 for a GRU); with `input.lengths`, the recurrent layers count
    /// the mean length `(min + max) / 2` instead of `timesteps`.
    pub fn forward_flops_per_sample(&self) -> Result<u64> {
        let t = self.input.timesteps as u64;
        // Twice the recurrent timesteps, so that a mean length ending in .5 stays exact.
        let t2 = match self.input.lengths {
            Some(l) => (l.min + l.max) as u64,
            None => 2 * t,
        };
        let mut width = self.input_width()? as u64;
        let mut flops = 0u64;
        for l in &self.lstm {
            let u = l.units as u64;
            flops += 2 * l.cell.gates() * u * (width + u) * t2 / 2 * l.directions();
            width = l.output_width() as u64;
        }
        if let Some(d) = &self.dense {
            flops += 2 * width * d.units as u64 * if d.per_timestep { t } else { 1 };
        }
        Ok(flops)
    }

    /// Refuses tables this harness cannot run as written: lengths outside `1..=timesteps`,
    /// lengths on an input that is not dense, no recurrent layer.
    pub fn validate(&self) -> Result<()> {
        if self.lstm.is_empty() {
            bail!("a workload needs at least one recurrent layer");
        }
        if let Some(l) = self.input.lengths {
            if self.input.kind != "dense" {
                bail!(
                    "input.lengths is for dense inputs only (this one is '{}')",
                    self.input.kind
                );
            }
            if l.min == 0 || l.min > l.max || l.max > self.input.timesteps {
                bail!(
                    "input.lengths {{min: {}, max: {}}} must satisfy 1 <= min <= max <= timesteps ({})",
                    l.min,
                    l.max,
                    self.input.timesteps
                );
            }
        }
        Ok(())
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

    /// Builds the model (seed 0, Keras default initialisers). An input with `lengths`
    /// starts with `Masking(0)`: its padded steps are all zero, a valid step of N(0, 1)
    /// values never is.
    ///
    /// # Errors
    /// A table this harness cannot run (see `validate`), a dense head that does not fit.
    pub fn build(&self) -> Result<Model> {
        self.validate()?;
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
        if self.input.lengths.is_some() {
            s = s.add(Masking::new(0.0));
        }
        for l in &self.lstm {
            let cell: LayerSpec = match l.cell {
                Cell::Lstm => Lstm::new(l.units)
                    .return_sequences(l.return_sequences)
                    .into(),
                Cell::Gru => Gru::new(l.units)
                    .return_sequences(l.return_sequences)
                    .into(),
            };
            s = match l.bidirectional {
                // `concat`, the only merge the table names (what PyTorch returns).
                Some(_) => s.add(Bidirectional::new(cell).merge_mode(MergeMode::Concat)),
                None => s.add(cell),
            };
        }
        if let Some(d) = &self.dense {
            let last_seq = self.lstm.last().is_some_and(|l| l.return_sequences);
            if d.per_timestep != last_seq {
                bail!("dense.per_timestep must equal the last recurrent layer's return_sequences");
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
    /// token ids, random next-token ids (as `f32`) for cross-entropy (class ids `[B]` when
    /// the output is not a sequence), N(0, 1) targets for mse. With `input.lengths`, the
    /// steps of row `i` from [`Workload::lengths`]`[i]` on are zero (right padding).
    pub fn batch(&self, b: usize, seed: u64) -> Result<(Array3<f32>, ArrayD<f32>)> {
        self.validate()?;
        let mut rng = Rng::new(seed);
        let t = self.input.timesteps;
        let width = self.input_width()?;
        let mut x = match (self.input.kind.as_str(), &self.input.sample) {
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
        if let Some(lengths) = self.lengths(b, seed) {
            for (mut row, len) in x.outer_iter_mut().zip(lengths) {
                row.slice_mut(s![len.., ..]).fill(0.0);
            }
        }
        let (units, seq) = match (&self.dense, self.lstm.last()) {
            (Some(d), _) => (d.units, d.per_timestep),
            (None, Some(l)) => (l.output_width(), l.return_sequences),
            (None, None) => bail!("a workload needs at least one recurrent layer"),
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

    /// The row lengths of a batch of `b` with `input.lengths` (`None` without): the `b`
    /// values `min + floor(i * (max - min) / (b - 1))` (`max` alone for `b = 1`), shuffled
    /// by `seed`. Every framework gets the same lengths, so the same work, in its own
    /// random order.
    pub fn lengths(&self, b: usize, seed: u64) -> Option<Vec<usize>> {
        let l = self.input.lengths?;
        let mut v: Vec<usize> = (0..b)
            .map(|i| {
                if b == 1 {
                    l.max
                } else {
                    l.min + i * (l.max - l.min) / (b - 1)
                }
            })
            .collect();
        // A stream of its own ("lengths" in ASCII), apart from the batch's values.
        Rng::new(seed ^ 0x006c_656e_6774_6873).shuffle(&mut v);
        Some(v)
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

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Axis;

    fn workload(json: &str) -> Workload {
        serde_json::from_str(json).unwrap()
    }

    const MEASURE: &str = r#""measure": {"train": {"batch": 4, "steps": 1, "unit": "samples/s"}}"#;

    /// The project's table, from the repository.
    fn rnn_table() -> Spec {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/workloads-rnn.json");
        Spec::load(&path).unwrap()
    }

    #[test]
    fn the_project_table_reads_with_the_conventions_flop_counts() {
        let spec = rnn_table();
        assert_eq!(spec.names(), ["ts-gru", "charrnn-gru", "bilstm-cls"]);
        let flops = |n: &str| spec.get(n).unwrap().forward_flops_per_sample().unwrap();
        // GRU: 2 * 3 * units * (in + units) per step; Dense 2 * in * out.
        assert_eq!(
            flops("ts-gru"),
            2 * 3 * 50 * (1 + 50) * 30 + 2 * 3 * 50 * (50 + 50) * 30 + 2 * 50
        );
        assert_eq!(
            flops("charrnn-gru"),
            (2 * 3 * 128 * (65 + 128) + 2 * 3 * 128 * (128 + 128) + 2 * 128 * 65) * 50
        );
        // Bidirectional LSTMs over the mean length 75: both directions, the second layer
        // reads 2 * 128, the head the two final states.
        assert_eq!(
            flops("bilstm-cls"),
            2 * (2 * 4 * 128 * (16 + 128) * 75)
                + 2 * (2 * 4 * 128 * (256 + 128) * 75)
                + 2 * 256 * 10
        );
        let w = spec.get("ts-gru").unwrap();
        assert!(w.lstm.iter().all(|l| l.cell == Cell::Gru));
        let m = w.build().unwrap();
        assert_eq!(m.summary().matches("(GRU)").count(), 2, "{}", m.summary());
        // Keras' GRU counts (reset_after: bias [2, 3H]).
        assert_eq!(
            m.param_count(),
            3 * 50 * (1 + 50) + 2 * 150 + 3 * 50 * (50 + 50) + 2 * 150 + 51
        );
    }

    #[test]
    fn the_bidirectional_classifier_has_keras_parameter_counts() {
        let spec = rnn_table();
        let m = spec.get("bilstm-cls").unwrap().build().unwrap();
        let kinds: Vec<&str> = m.layers().iter().map(|l| l.kind()).collect();
        assert_eq!(
            kinds,
            ["Masking", "Bidirectional", "Bidirectional", "Dense"]
        );
        // Bidirectional(LSTM(128)) on 16 features, on 256, then Dense(10) on 256.
        assert_eq!(
            m.param_count(),
            2 * 4 * 128 * (16 + 128 + 1) + 2 * 4 * 128 * (256 + 128 + 1) + 257 * 10
        );
    }

    #[test]
    fn rows_with_lengths_are_masked_so_padding_does_not_change_the_output() {
        let w = |timesteps: usize| {
            workload(&format!(
                r#"{{"input": {{"kind": "dense", "timesteps": {timesteps}, "features": 3,
                              "lengths": {{"min": 2, "max": {timesteps}}}}},
                    "lstm": [{{"units": 4, "return_sequences": true, "cell": "gru"}},
                             {{"units": 5, "return_sequences": false}}],
                    "dense": {{"units": 2, "per_timestep": false, "activation": "linear"}},
                    "loss": "mse", {MEASURE}}}"#
            ))
        };
        let padded = w(9);
        let model = padded.build().unwrap();
        assert_eq!(model.layers()[0].kind(), "Masking");
        let (x, _) = padded.batch(5, 1).unwrap();
        let lengths = padded.lengths(5, 1).unwrap();
        let y = model.predict(&x).unwrap();
        // The same weights (seed 0; their shapes do not depend on T) on each row's valid
        // steps alone.
        for (i, &n) in lengths.iter().enumerate() {
            let row = x.slice(s![i..=i, ..n, ..]).to_owned();
            let alone = w(n).build().unwrap().predict(&row).unwrap();
            for (k, (a, b)) in y
                .index_axis(Axis(0), i)
                .iter()
                .zip(alone.iter())
                .enumerate()
            {
                assert!(
                    (a - b).abs() < 1e-5,
                    "row {i} (length {n}), output {k}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn lengths_spread_evenly_in_a_random_order_and_pad_with_zeros() {
        let w = workload(&format!(
            r#"{{"input": {{"kind": "dense", "timesteps": 10, "features": 2,
                          "lengths": {{"min": 4, "max": 10}}}},
                "lstm": [{{"units": 3, "return_sequences": false}}],
                "dense": {{"units": 5, "per_timestep": false, "activation": "softmax"}},
                "loss": "softmax_cross_entropy", {MEASURE}}}"#
        ));
        let l = w.lengths(7, 3).unwrap();
        let mut sorted = l.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [4, 5, 6, 7, 8, 9, 10]);
        assert_ne!(l, sorted, "not shuffled");
        assert_eq!(w.lengths(7, 3).unwrap(), l, "not a function of the seed");
        assert_eq!(w.lengths(1, 3).unwrap(), [10]);
        let (x, y) = w.batch(7, 3).unwrap();
        for (row, &n) in x.outer_iter().zip(&l) {
            for (t, step) in row.outer_iter().enumerate() {
                let zero = step.iter().all(|&v| v == 0.0);
                assert_eq!(zero, t >= n, "step {t} of a row of length {n}");
            }
        }
        // Class ids, one per row.
        assert_eq!(y.shape(), [7]);
        assert!(y
            .iter()
            .all(|&c| (0.0..5.0).contains(&c) && c.fract() == 0.0));
    }

    #[test]
    fn bad_extensions_are_errors_not_other_models() {
        let layer = |extra: &str| {
            format!(
                r#"{{"input": {{"kind": "dense", "timesteps": 5, "features": 1}},
                    "lstm": [{{"units": 2, "return_sequences": false{extra}}}],
                    "dense": null, "loss": null, {MEASURE}}}"#
            )
        };
        let parse = |s: &str| serde_json::from_str::<Workload>(s).map(|_| ()).unwrap_err();
        // A misspelt field would otherwise run an LSTM in place of a GRU.
        assert!(parse(&layer(r#", "cel": "gru""#))
            .to_string()
            .contains("unknown field `cel`"));
        assert!(parse(&layer(r#", "cell": "rnn""#))
            .to_string()
            .contains("unknown variant `rnn`"));
        assert!(parse(&layer(r#", "bidirectional": "sum""#))
            .to_string()
            .contains("unknown variant `sum`"));
        workload(&layer(r#", "cell": "lstm""#));
        for (lengths, why) in [
            (r#"{"min": 0, "max": 5}"#, "1 <= min"),
            (r#"{"min": 4, "max": 3}"#, "1 <= min <= max"),
            (r#"{"min": 1, "max": 6}"#, "max <= timesteps (5)"),
        ] {
            let w = workload(&format!(
                r#"{{"input": {{"kind": "dense", "timesteps": 5, "features": 1, "lengths": {lengths}}},
                    "lstm": [{{"units": 2, "return_sequences": false}}],
                    "dense": null, "loss": null, {MEASURE}}}"#
            ));
            let e = w.validate().unwrap_err().to_string();
            assert!(e.contains(why), "{lengths}: {e}");
        }
        let w = workload(&format!(
            r#"{{"input": {{"kind": "onehot", "timesteps": 5, "vocab": 3, "lengths": {{"min": 1, "max": 5}}}},
                "lstm": [{{"units": 2, "return_sequences": false}}],
                "dense": null, "loss": null, {MEASURE}}}"#
        ));
        assert!(w
            .validate()
            .unwrap_err()
            .to_string()
            .contains("dense inputs only"));
    }
}
