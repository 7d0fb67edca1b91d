//! One run of `train`, whatever the mode: the model fresh or resumed from a checkpoint, the
//! callbacks (progress, early stopping, periodic checkpoints), Ctrl-C, the hint after a
//! divergence, and at the end the saved model, the loss plot and the report. The modes read
//! their data and describe their model; the calls into the library's training API (compile,
//! fit, fit_stream, training state) are all here.
//!
//! Ctrl-C stops training at the next batch boundary: the training state (weights, optimizer,
//! position in the epoch) goes to the `--checkpoint` file, or next to `--out` as
//! `<out stem>.interrupted.safetensors`, and the command exits with code 130. SIGTERM, what
//! batch schedulers send before they kill a job, does the same and exits with 143. `--resume`
//! on that file continues where it stopped. A second signal exits at once.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::{bail, Context, Result};
use ndarray::{Array3, ArrayD};
use stacklstm::data::prep::Preprocessing;
use stacklstm::io::native::NativeFile;
use stacklstm::train::{
    Callback, EarlyStopping, Fit, History, Interruption, Metric, ModelCheckpoint, StreamFit,
};
use stacklstm::{Loss, Model, Trainer};

use super::options::CommonArgs;
use crate::cmd::progress::Progress;

/// A model being trained under the shared options.
pub struct Session<'a> {
    args: &'a CommonArgs,
    trainer: Trainer,
    /// Where training starts: 0, or where the `--resume` checkpoint stopped.
    start: Start,
    last_good: LastGood,
}

/// Where training resumes: epoch and batches of it already done.
#[derive(Debug, Clone, Copy, Default)]
struct Start {
    epoch: usize,
    batch: usize,
}

/// The last checkpoint known good in this run: `(path, epochs done)`. Starts as the
/// `--resume` file and follows every checkpoint written, so a stale file left at the
/// `--checkpoint` path by an earlier run is never named.
type LastGood = Arc<Mutex<Option<(PathBuf, usize)>>>;

/// The last-good record, also after a panic elsewhere poisoned its lock.
fn lock(g: &LastGood) -> MutexGuard<'_, Option<(PathBuf, usize)>> {
    g.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A `--resume` file, read but not restored yet, so that a mode can check what it holds
/// first.
pub struct Checkpoint {
    path: PathBuf,
    file: NativeFile,
}

impl Checkpoint {
    /// Reads the checkpoint at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let file = stacklstm::io::native::load(path)
            .with_context(|| format!("loading checkpoint {}", path.display()))?;
        Ok(Checkpoint {
            path: path.to_path_buf(),
            file,
        })
    }

    /// The preprocessing saved with it, if it has one that reads.
    pub fn preprocessing(&self) -> Option<Preprocessing> {
        let p = self.file.preprocessing.clone()?;
        serde_json::from_value(p).ok()
    }
}

impl<'a> Session<'a> {
    /// A session on a fresh `model`, compiled with `loss`, the optimizer of the flags and
    /// `metrics`.
    pub fn fresh(
        args: &'a CommonArgs,
        model: Model,
        loss: Loss,
        metrics: &[Metric],
    ) -> Result<Self> {
        let trainer = model.compile_with_metrics(loss, args.optimizer()?, metrics)?;
        Ok(Session {
            args,
            trainer,
            start: Start::default(),
            last_good: LastGood::default(),
        })
    }

    /// A session that continues from a checkpoint: its weights, optimizer state and position.
    /// `--lr`, when given, replaces the checkpoint's learning rate (to continue after a
    /// divergence, say).
    pub fn resume(args: &'a CommonArgs, ck: Checkpoint) -> Result<Self> {
        let Checkpoint { path, file } = ck;
        let Some(training) = file.training else {
            bail!("{}: a model file without training state; --resume needs a file written by --checkpoint", path.display());
        };
        let (mut trainer, epoch, batch) = Trainer::restore_at(file.model, &training)
            .with_context(|| format!("restoring the training state of {}", path.display()))?;
        if let Some(lr) = args.lr {
            let opt = trainer.optimizer_mut();
            let mut cfg = opt.config;
            cfg.learning_rate = lr;
            cfg.validate()?;
            opt.set_learning_rate(lr);
        }
        Ok(Session {
            args,
            trainer,
            start: Start { epoch, batch },
            last_good: Arc::new(Mutex::new(Some((path, epoch)))),
        })
    }

    /// A session from `--resume` when given, else on the model `fresh` builds (compiled as in
    /// [`Session::fresh`]).
    pub fn open(
        args: &'a CommonArgs,
        loss: Loss,
        metrics: &[Metric],
        fresh: impl FnOnce() -> Result<Model>,
    ) -> Result<Self> {
        match &args.resume {
            Some(p) => Session::resume(args, Checkpoint::load(p)?),
            None => Session::fresh(args, fresh()?, loss, metrics),
        }
    }

    /// The model.
    pub fn model(&self) -> &Model {
        self.trainer.model()
    }

    /// Trains on samples `x` (`[batch, timesteps, features]`) with targets `y`, validating
    /// on `val` after every epoch.
    pub fn fit(
        &mut self,
        prep: &Preprocessing,
        x: &Array3<f32>,
        y: &ArrayD<f32>,
        val: Option<(Array3<f32>, ArrayD<f32>)>,
    ) -> Result<History> {
        let batches = x.shape()[0].div_ceil(self.args.batch_size.max(1));
        let (args, start) = (self.args, self.start);
        self.train(prep, Some(batches), |model, stop, callbacks| {
            let mut fit = Fit::new()
                .epochs(args.epochs)
                .batch_size(args.batch_size)
                .seed(args.seed)
                .initial_epoch(start.epoch)
                .initial_batch(start.batch)
                .stop_flag(stop);
            if let Some((vx, vy)) = val {
                fit = fit.validation_data(vx, vy);
            }
            fit.callbacks = callbacks;
            model.fit(x, y, fit)
        })
    }

    /// Trains a stateful model on a token stream, `--batch-size` lanes of `seq_len` steps per
    /// batch, validating on `validation` after every epoch.
    pub fn fit_stream(
        &mut self,
        prep: &Preprocessing,
        ids: &[u32],
        seq_len: usize,
        validation: Option<Vec<u32>>,
    ) -> Result<History> {
        let (args, start) = (self.args, self.start);
        self.train(prep, None, |model, stop, callbacks| {
            let opts = StreamFit {
                epochs: args.epochs,
                initial_epoch: start.epoch,
                initial_batch: start.batch,
                stop: Some(stop),
                batch_size: args.batch_size,
                seq_len,
                validation,
                callbacks,
            };
            model.fit_stream(ids, opts)
        })
    }

    /// Runs `fit` (one of the library's training loops) with the Ctrl-C flag and the
    /// callbacks; on Ctrl-C saves the training state and returns [`crate::cmd::Interrupted`]
    /// (`batches`, when known, is the number of batches per epoch for its message).
    fn train(
        &mut self,
        prep: &Preprocessing,
        batches: Option<usize>,
        fit: impl FnOnce(
            &mut Trainer,
            Arc<AtomicBool>,
            Vec<Box<dyn Callback>>,
        ) -> stacklstm::Result<History>,
    ) -> Result<History> {
        let prep = serde_json::to_value(prep)?;
        let signals = stop_on_signals()?;
        let callbacks = self.callbacks(&prep);
        let history = fit(&mut self.trainer, signals.stop.clone(), callbacks)
            .map_err(|e| self.divergence_hint(e.into()))?;
        if let Some(at) = history.interrupted {
            let term = signals.term.load(Ordering::SeqCst);
            return Err(self.save_interrupted(&prep, at, batches, term));
        }
        arm_ctrl_c_exit(&signals.stop);
        Ok(history)
    }

    /// Progress, early stopping (`--patience`) and checkpoints (`--checkpoint`).
    fn callbacks(&self, prep: &serde_json::Value) -> Vec<Box<dyn Callback>> {
        let a = self.args;
        let mut cbs: Vec<Box<dyn Callback>> = vec![Box::new(Progress::new(a.quiet))];
        if let Some(p) = a.patience {
            cbs.push(Box::new(
                EarlyStopping::new("val_loss")
                    .patience(p)
                    .restore_best_weights(true),
            ));
        }
        if let Some(path) = &a.checkpoint {
            let saver = checkpoint_saver(prep.clone(), self.last_good.clone());
            cbs.push(Box::new(
                ModelCheckpoint::new(path, saver)
                    .monitor("loss")
                    .every(a.checkpoint_every),
            ));
        }
        cbs
    }

    /// Adds what to do next to a divergence error: resume from the last good checkpoint, or
    /// lower the learning rate.
    fn divergence_hint(&self, e: anyhow::Error) -> anyhow::Error {
        let diverged = e.chain().any(|c| {
            matches!(
                c.downcast_ref::<stacklstm::Error>(),
                Some(stacklstm::Error::Diverged { .. })
            )
        });
        if !diverged {
            return e;
        }
        let hint = match (&*lock(&self.last_good), &self.args.checkpoint) {
            (Some((p, epochs)), _) => format!(
                "the last good checkpoint is {} (after epoch {epochs}); continue from it with --resume {} and a lower --lr",
                p.display(),
                p.display()
            ),
            (None, Some(p)) => format!(
                "no checkpoint was written to {} before it, try a lower --lr or gradient clipping (--clipnorm)",
                p.display()
            ),
            (None, None) => "try a lower --lr or gradient clipping (--clipnorm)".to_string(),
        };
        // The divergence first (epoch and step), then what to do about it.
        anyhow::anyhow!("{}; {hint}", crate::cmd::one_line(&e))
    }

    /// Where Ctrl-C saves the training state: `--checkpoint`, or
    /// `<out stem>.interrupted.safetensors` next to `--out`.
    fn interrupted_path(&self) -> PathBuf {
        match &self.args.checkpoint {
            Some(p) => p.clone(),
            None => self.args.out.with_extension("interrupted.safetensors"),
        }
    }

    /// Saves the training state of an interrupted run; returns the error that makes the
    /// command exit with code 130 (143 after SIGTERM, `term`), or the one that says the
    /// checkpoint could not be written.
    fn save_interrupted(
        &self,
        prep: &serde_json::Value,
        at: Interruption,
        batches: Option<usize>,
        term: bool,
    ) -> anyhow::Error {
        let path = self.interrupted_path();
        let state = self.trainer.training_state_at(at.epoch, at.batches_done);
        let saved =
            stacklstm::io::native::save_checkpoint(&path, self.model(), Some(prep), Some(&state))
                .with_context(|| {
                    format!(
                        "interrupted at epoch {}, but writing the checkpoint {} failed",
                        at.epoch + 1,
                        path.display()
                    )
                });
        if let Err(e) = saved {
            return e;
        }
        let of = batches.map_or(String::new(), |n| format!(" of {n}"));
        let whence = if self.args.checkpoint.is_some() {
            ""
        } else {
            " (no --checkpoint given)"
        };
        let (by, code) = if term {
            (" by SIGTERM", crate::cmd::EXIT_TERMINATED)
        } else {
            ("", crate::cmd::EXIT_INTERRUPTED)
        };
        crate::cmd::Interrupted {
            message: format!(
                "interrupted{by} at epoch {}, batch {}{of}: training state saved to {}{whence}; continue with --resume {}",
                at.epoch + 1,
                at.batches_done,
                path.display(),
                path.display()
            ),
            code,
        }
        .into()
    }

    /// Saves the trained model with its preprocessing, plots the loss curves (`--plot`) and
    /// prints the report: the final losses and the mode's `extra` results.
    pub fn finish(
        &self,
        prep: &Preprocessing,
        history: &History,
        extra: serde_json::Value,
    ) -> Result<()> {
        let a = self.args;
        let prep = serde_json::to_value(prep)?;
        stacklstm::io::native::save(&a.out, self.model(), Some(&prep))
            .with_context(|| format!("writing {}", a.out.display()))?;
        if let Some(p) = &a.plot {
            let loss = history.series("loss");
            let val = history.series("val_loss");
            let chart = stacklstm::plot::Chart::loss_curves(
                "training loss",
                &loss,
                (!val.is_empty()).then_some(val.as_slice()),
            );
            chart
                .save(p)
                .with_context(|| format!("writing plot {}", p.display()))?;
        }
        let last = history.epochs.last();
        let report = Report {
            model: a.out.display().to_string(),
            epochs_run: history.epochs.len(),
            final_loss: last.map(|e| e.loss),
            final_val_loss: last.and_then(|e| e.val_loss),
            extra,
        };
        if a.json {
            return crate::cmd::print(&serde_json::to_string_pretty(&report)?);
        }
        let mut lines = vec![format!("saved {}", report.model)];
        if let Some(l) = report.final_loss {
            lines.push(format!("final loss {l:.6}"));
        }
        if let Some(v) = report.final_val_loss {
            lines.push(format!("final val_loss {v:.6}"));
        }
        if report.extra.as_object().is_some_and(|o| !o.is_empty()) {
            lines.push(crate::cmd::report::render(&report.extra));
        }
        crate::cmd::print(&lines.join("\n"))
    }
}

/// The results of a training run, printed at the end.
#[derive(Debug, serde::Serialize)]
struct Report {
    model: String,
    epochs_run: usize,
    final_loss: Option<f64>,
    final_val_loss: Option<f64>,
    #[serde(flatten)]
    extra: serde_json::Value,
}

/// A checkpoint saver for `ModelCheckpoint`: weights, preprocessing and training state.
fn checkpoint_saver(prep: serde_json::Value, last_good: LastGood) -> stacklstm::train::Saver {
    Box::new(move |t: &Trainer, p: &Path, epochs_done: usize| {
        let state = t.training_state(epochs_done);
        stacklstm::io::native::save_checkpoint(p, t.model(), Some(&prep), Some(&state))?;
        *lock(&last_good) = Some((p.to_path_buf(), epochs_done));
        Ok(())
    })
}

/// What stops training: Ctrl-C (SIGINT) and SIGTERM (what batch schedulers send before
/// they kill) both set `stop`, which training checks before every batch; SIGTERM also sets
/// `term`, so the command exits with 143 instead of 130. A second signal, or one after
/// training ended (when `stop` is set again, see [`arm_ctrl_c_exit`]), exits at once with
/// the signal's code.
struct StopSignals {
    stop: Arc<AtomicBool>,
    term: Arc<AtomicBool>,
}

fn stop_on_signals() -> Result<StopSignals> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Arc::new(AtomicBool::new(false));
    let term = Arc::new(AtomicBool::new(false));
    for (sig, code) in [
        (SIGINT, crate::cmd::EXIT_INTERRUPTED),
        (SIGTERM, crate::cmd::EXIT_TERMINATED),
    ] {
        // The exit must be registered first: it sees the flag as it was before this signal.
        signal_hook::flag::register_conditional_shutdown(sig, code, stop.clone())
            .context("installing the signal handlers")?;
        signal_hook::flag::register(sig, stop.clone()).context("installing the signal handlers")?;
    }
    signal_hook::flag::register(SIGTERM, term.clone()).context("installing the signal handlers")?;
    Ok(StopSignals { stop, term })
}

/// After training: Ctrl-C exits at once again (nothing is left worth a checkpoint).
fn arm_ctrl_c_exit(flag: &AtomicBool) {
    flag.store(true, Ordering::SeqCst);
}
