//! `stacklstm train text --data FILE.txt --out MODEL`: a character- or word-level language
//! model on a UTF-8 text, trained with stateful truncated BPTT (`--seq-len` steps per batch,
//! the recurrent state carried across batches). The last `--val-frac` of the tokens validate.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde_json::json;
use stacklstm::data::prep::Preprocessing;
use stacklstm::data::text::{Vocab, VocabKind};
use stacklstm::train::Metric;
use stacklstm::{LayerSpec, Loss};

use super::options::{CommonArgs, Stack};
use super::session::{Checkpoint, Session};

/// Arguments of `train text`.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Data")]
pub struct Args {
    /// Training data: a UTF-8 text.
    #[arg(long)]
    pub data: PathBuf,
    /// Tokens: characters, or words separated by whitespace (`<eos>` at line ends).
    #[arg(long, value_enum, default_value_t = Level::Char)]
    pub level: Level,
    #[command(flatten)]
    pub common: CommonArgs,

    /// Truncated-BPTT length (timesteps per batch).
    #[arg(long, default_value_t = 50, help_heading = "Training")]
    pub seq_len: usize,
    /// Embedding width.
    #[arg(long, default_value_t = 64, help_heading = "Model")]
    pub embedding: usize,
}

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Level {
    Char,
    Word,
}

/// Runs `train text`.
pub fn run(a: &Args) -> Result<()> {
    let c = &a.common;
    let bytes = std::fs::read(&a.data).with_context(|| format!("reading {}", a.data.display()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{}: not UTF-8 text (invalid byte at offset {})",
            a.data.display(),
            e.utf8_error().valid_up_to()
        )
    })?;
    if text.is_empty() {
        bail!("{}: the file is empty", a.data.display());
    }
    let (mut session, vocab) = match &c.resume {
        Some(p) => {
            let ck = Checkpoint::load(p)?;
            let Some(Preprocessing::Text { vocab, .. }) = ck.preprocessing() else {
                bail!("{}: not a language-model checkpoint", p.display());
            };
            (Session::resume(c, ck)?, vocab)
        }
        None => {
            let vocab = match a.level {
                Level::Char => Vocab::chars(&text)?,
                Level::Word => Vocab::words(&text)?,
            };
            let spec = c.spec(
                Stack::Text {
                    embedding: a.embedding,
                },
                None,
                1,
                vocab.len(),
            )?;
            if !matches!(spec.layers.first(), Some(LayerSpec::Embedding(_))) {
                bail!("a language model architecture must start with an Embedding layer");
            }
            let loss = Loss::SparseCategoricalCrossentropy { from_logits: true };
            let metrics = [Metric::Accuracy, Metric::Perplexity];
            (Session::fresh(c, spec.build()?, loss, &metrics)?, vocab)
        }
    };
    let ids = vocab.encode(&text)?;
    let n_val = ((ids.len() as f64) * c.val_frac).round() as usize;
    let (train_ids, val_ids) = ids.split_at(ids.len() - n_val);
    let prep = Preprocessing::Text {
        vocab: vocab.clone(),
        seq_len: a.seq_len,
    };
    if !c.quiet {
        eprintln!("{}", session.model().summary());
        let kind = if vocab.kind() == VocabKind::Char {
            "characters"
        } else {
            "words"
        };
        eprintln!(
            "{} tokens ({} distinct {kind}): {} for training, {} for validation",
            ids.len(),
            vocab.len(),
            train_ids.len(),
            val_ids.len()
        );
    }
    let needed = c.batch_size.max(1) * (a.seq_len + 1);
    if train_ids.len() < needed {
        bail!(
            "{}: {} tokens for training, too few for --batch-size {} lanes of --seq-len {} + 1 tokens (at least {needed})",
            a.data.display(),
            train_ids.len(),
            c.batch_size,
            a.seq_len
        );
    }
    let validation = (val_ids.len() > a.seq_len + 1).then(|| val_ids.to_vec());
    let history = session.fit_stream(&prep, train_ids, a.seq_len, validation)?;
    let last = history.epochs.last();
    let extra = json!({
        "vocab_size": vocab.len(),
        "val_perplexity": last.and_then(|e| e.val_metrics.get("perplexity").copied()),
        "val_accuracy": last.and_then(|e| e.val_metrics.get("accuracy").copied()),
    });
    session.finish(&prep, &history, extra)
}
