//! `stacklstm generate --model MODEL`: samples text from a language model.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Result};
use ndarray::Array3;
use stacklstm::data::prep::{sample_token, Preprocessing};
use stacklstm::data::VocabKind;
use stacklstm::init::Rng;

/// Arguments of `generate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A language model written by `stacklstm train text`.
    #[arg(long)]
    pub model: PathBuf,
    /// Text to start from (every character/word must be in the vocabulary) [default: a newline, or the first token].
    #[arg(long)]
    pub prompt: Option<String>,
    /// Tokens to generate.
    #[arg(long, default_value_t = 200)]
    pub length: usize,
    /// Sampling temperature: 0 always takes the likeliest token, higher is more random.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    /// Seed of the sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Runs `generate`.
pub fn run(a: &Args) -> Result<()> {
    let (mut model, prep) = super::prep::load(&a.model)?;
    let Preprocessing::Text { vocab, .. } = &prep else {
        if let Preprocessing::Series { .. } = &prep {
            bail!("{}: a time-series model; use `forecast`", a.model.display());
        }
        bail!("{}: {}", a.model.display(), super::prep::ARRAYS_MODEL);
    };
    if a.length > 10_000_000 {
        bail!("--length must be at most 10000000");
    }
    let prompt_ids = match &a.prompt {
        Some(p) if !p.is_empty() => vocab.encode(p)?,
        _ => match vocab.id("\n").or(vocab.eos_id()) {
            Some(id) => vec![id],
            None => vec![0],
        },
    };
    let mut rng = Rng::new(a.seed);
    model.reset_states();
    let x = Array3::from_shape_fn((1, prompt_ids.len(), 1), |(_, t, _)| prompt_ids[t] as f32);
    let mut out = model.predict_on_batch(x.view())?;
    let mut stdout = std::io::stdout().lock();
    if let Some(p) = &a.prompt {
        write!(stdout, "{p}")?;
    }
    let sep = if vocab.kind() == VocabKind::Word {
        " "
    } else {
        ""
    };
    for _ in 0..a.length {
        let t = out.shape()[1];
        let logits: Vec<f32> = out
            .slice(ndarray::s![0, t - 1, ..])
            .iter()
            .copied()
            .collect();
        let next = sample_token(&logits, a.temperature, &mut rng)?;
        let tok = vocab.token(next).unwrap_or("?");
        if vocab.kind() == VocabKind::Word && tok == "<eos>" {
            writeln!(stdout)?;
        } else {
            write!(stdout, "{tok}{sep}")?;
        }
        let x = Array3::from_elem((1, 1, 1), next as f32);
        out = model.predict_on_batch(x.view())?;
    }
    writeln!(stdout)?;
    stdout.flush()?;
    Ok(())
}
