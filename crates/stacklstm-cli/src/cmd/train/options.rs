//! The options every `train` mode takes: the architecture, the optimizer, the training loop,
//! checkpoints and the outputs, and what they mean to the library (a model spec and an
//! optimizer config).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use stacklstm::optim::OptimizerConfig;
use stacklstm::{
    Activation, Adagrad, Adam, AdamW, Arch, Bidirectional, Dense, Embedding, Gru, LayerSpec, Lstm,
    MergeMode, RmsProp, Sequential, Sgd,
};

/// Options shared by `train series` and `train text` (flattened into each).
#[derive(Debug, clap::Args)]
pub struct CommonArgs {
    /// Recurrent units per layer, comma-separated, from the input up.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "50,50",
        help_heading = "Model"
    )]
    pub layers: Vec<usize>,
    /// Cell of every recurrent layer: LSTM or GRU (Keras' GRU, reset_after).
    #[arg(long, value_enum, default_value_t = CellName::Lstm, help_heading = "Model")]
    pub cell: CellName,
    /// Wrap every recurrent layer in a Bidirectional layer that merges its forward and backward runs with MERGE (Keras' merge_mode) [default: off; MERGE defaults to concat]. Series only: a language model cannot read the tokens it predicts.
    #[arg(
        long,
        value_enum,
        value_name = "MERGE",
        num_args = 0..=1,
        default_missing_value = "concat",
        help_heading = "Model"
    )]
    pub bidirectional: Option<MergeName>,
    /// Hidden Dense layers (relu) between the recurrent layers and the output, comma-separated [default: none].
    #[arg(long, value_delimiter = ',', help_heading = "Model")]
    pub dense: Vec<usize>,
    /// Input dropout rate of the recurrent layers.
    #[arg(long, default_value_t = 0.0, help_heading = "Model")]
    pub dropout: f32,
    /// Recurrent dropout rate of the recurrent layers.
    #[arg(long, default_value_t = 0.0, help_heading = "Model")]
    pub recurrent_dropout: f32,
    /// Architecture file (JSON or TOML Sequential spec, or a model file) instead of the flags above [default: none].
    #[arg(long, help_heading = "Model")]
    pub arch: Option<PathBuf>,

    /// Optimizer.
    #[arg(long, value_enum, default_value_t = OptimizerName::Adam, help_heading = "Training")]
    pub optimizer: OptimizerName,
    /// Learning rate [default: the optimizer's Keras default].
    #[arg(long, help_heading = "Training")]
    pub lr: Option<f32>,
    /// SGD/RMSprop momentum.
    #[arg(long, default_value_t = 0.0, help_heading = "Training")]
    pub momentum: f32,
    /// Clip each gradient tensor to this L2 norm [default: off].
    #[arg(long, help_heading = "Training")]
    pub clipnorm: Option<f32>,
    /// Clip all gradients together to this L2 norm [default: off].
    #[arg(long, help_heading = "Training")]
    pub global_clipnorm: Option<f32>,
    /// Clip each gradient element to [-v, v] [default: off].
    #[arg(long, help_heading = "Training")]
    pub clipvalue: Option<f32>,
    /// Passes over the training data.
    #[arg(long, default_value_t = 20, help_heading = "Training")]
    pub epochs: usize,
    /// Samples per update (for a text: lanes of the token stream read side by side).
    #[arg(long, default_value_t = 32, help_heading = "Training")]
    pub batch_size: usize,
    /// Fraction held out for validation, in order (the rows or tokens after the training part).
    #[arg(long, default_value_t = 0.1, help_heading = "Training")]
    pub val_frac: f64,
    /// Stop after this many epochs without validation improvement, keeping the best weights [default: off].
    #[arg(long, help_heading = "Training")]
    pub patience: Option<usize>,
    /// Seed of initialisation, shuffling and dropout.
    #[arg(long, default_value_t = 42, help_heading = "Training")]
    pub seed: u64,

    /// Checkpoint file written during training (with optimizer state), and on Ctrl-C [default: none; Ctrl-C then writes m.interrupted.safetensors for --out m.safetensors].
    #[arg(long, help_heading = "Checkpoints")]
    pub checkpoint: Option<PathBuf>,
    /// Write the checkpoint every N epochs.
    #[arg(long, default_value_t = 1, help_heading = "Checkpoints")]
    pub checkpoint_every: usize,
    /// Resume from a checkpoint written by --checkpoint or Ctrl-C (same data and options; --lr overrides its learning rate) [default: none].
    #[arg(long, help_heading = "Checkpoints")]
    pub resume: Option<PathBuf>,

    /// Where to write the trained model (native .safetensors, replaced atomically).
    #[arg(long, help_heading = "Output")]
    pub out: PathBuf,
    /// Plot the loss curves to this .png or .svg [default: none].
    #[arg(long, help_heading = "Output")]
    pub plot: Option<PathBuf>,
    /// No progress output on stderr.
    #[arg(long, help_heading = "Output")]
    pub quiet: bool,
    /// Print the results as JSON on stdout.
    #[arg(long, help_heading = "Output")]
    pub json: bool,
}

/// The cells `--cell` names. (Plain comments, not doc comments, on the variants: clap would
/// otherwise list them one per line instead of `[possible values: lstm, gru]`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CellName {
    // Keras `LSTM`.
    Lstm,
    // Keras `GRU` with its defaults (reset_after, as PyTorch's nn.GRU).
    Gru,
}

impl CellName {
    /// A recurrent layer of this cell with Keras' defaults and the options every stack
    /// sets the same way.
    fn layer(
        self,
        units: usize,
        return_sequences: bool,
        stateful: bool,
        dropout: f32,
        recurrent_dropout: f32,
    ) -> LayerSpec {
        match self {
            CellName::Lstm => Lstm::new(units)
                .return_sequences(return_sequences)
                .stateful(stateful)
                .dropout(dropout)
                .recurrent_dropout(recurrent_dropout)
                .into(),
            CellName::Gru => Gru::new(units)
                .return_sequences(return_sequences)
                .stateful(stateful)
                .dropout(dropout)
                .recurrent_dropout(recurrent_dropout)
                .into(),
        }
    }
}

/// The merge modes `--bidirectional` names (Keras' `merge_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MergeName {
    // Forward and backward outputs side by side (2 x units wide).
    Concat,
    // Their sum.
    Sum,
    // Their product.
    Mul,
    // Their mean.
    Ave,
}

impl MergeName {
    fn mode(self) -> MergeMode {
        match self {
            MergeName::Concat => MergeMode::Concat,
            MergeName::Sum => MergeMode::Sum,
            MergeName::Mul => MergeMode::Mul,
            MergeName::Ave => MergeMode::Ave,
        }
    }
}

/// The optimizers `--optimizer` names, with Keras' defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OptimizerName {
    Adam,
    Adamw,
    Sgd,
    Rmsprop,
    Adagrad,
}

/// Which kind of model the recurrent stack feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    /// Windows in, one prediction per window out: the last recurrent layer returns its last
    /// step.
    Series,
    /// Token ids in, a prediction per token out: an Embedding of this width first, every
    /// recurrent layer returns sequences and keeps its state across batches (truncated BPTT).
    Text {
        /// Embedding width.
        embedding: usize,
    },
}

impl CommonArgs {
    /// Refuses options that cannot work before any work is done: outputs that cannot be
    /// written, a plot of an unknown type, a zero checkpoint interval.
    pub fn check(&self) -> Result<()> {
        super::super::check_output(&self.out)?;
        if let Some(p) = &self.checkpoint {
            super::super::check_output(p)?;
            if self.checkpoint_every == 0 {
                bail!("--checkpoint-every must be at least 1");
            }
        }
        if let Some(p) = &self.plot {
            super::super::check_plot(p)?;
        }
        Ok(())
    }

    /// The optimizer the flags describe.
    pub fn optimizer(&self) -> Result<OptimizerConfig> {
        let mut cfg: OptimizerConfig = match self.optimizer {
            OptimizerName::Adam => Adam::default().into(),
            OptimizerName::Adamw => AdamW::default().into(),
            OptimizerName::Sgd => Sgd::default().momentum(self.momentum).into(),
            OptimizerName::Rmsprop => RmsProp::default().momentum(self.momentum).into(),
            OptimizerName::Adagrad => Adagrad::default().into(),
        };
        if let Some(lr) = self.lr {
            cfg.learning_rate = lr;
        }
        cfg.common.clipnorm = self.clipnorm;
        cfg.common.global_clipnorm = self.global_clipnorm;
        cfg.common.clipvalue = self.clipvalue;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The model the flags (or `--arch`) describe for input `(timesteps, features)` and
    /// `outputs` values per sample (per token for [`Stack::Text`]).
    pub fn spec(
        &self,
        stack: Stack,
        timesteps: Option<usize>,
        features: usize,
        outputs: usize,
    ) -> Result<Sequential> {
        if let Some(p) = &self.arch {
            let arch = Arch::from_path(p)
                .with_context(|| format!("reading architecture {}", p.display()))?;
            let mut spec = arch.spec;
            spec.input_shape = Some((timesteps, features));
            spec.seed = self.seed;
            return Ok(spec);
        }
        if self.layers.is_empty() || self.layers.contains(&0) {
            bail!(
                "--layers needs at least one recurrent layer with units >= 1, e.g. --layers 50,50"
            );
        }
        let mut spec = Sequential::new().seed(self.seed);
        spec.input_shape = Some((timesteps, features));
        if let Stack::Text { embedding } = stack {
            spec = spec.add(Embedding::new(outputs, embedding));
        }
        let text = stack != Stack::Series;
        if text && self.bidirectional.is_some() {
            bail!(
                "--bidirectional: a language model predicts each next token, and the backward \
                 half of a bidirectional layer would read the tokens it predicts; drop \
                 --bidirectional (it is for series and classification)"
            );
        }
        let n = self.layers.len();
        for (i, &u) in self.layers.iter().enumerate() {
            let layer = self.cell.layer(
                u,
                text || i + 1 < n,
                text,
                self.dropout,
                self.recurrent_dropout,
            );
            spec = match self.bidirectional {
                Some(m) => spec.add(Bidirectional::new(layer).merge_mode(m.mode())),
                None => spec.add(layer),
            };
        }
        for &d in &self.dense {
            spec = spec.add(Dense::new(d).activation(Activation::Relu));
        }
        Ok(spec.add(Dense::new(outputs)))
    }
}
