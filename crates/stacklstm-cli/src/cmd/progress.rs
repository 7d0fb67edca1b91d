//! Progress display on stderr: a bar with batch, ETA and loss while an epoch runs (on a
//! terminal), and one line per epoch with the losses. Silent with `--quiet`.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use stacklstm::train::{Callback, Control, EpochLogs, TrainInfo};
use stacklstm::Trainer;

/// The progress callback.
pub struct Progress {
    quiet: bool,
    tty: bool,
    info: Option<TrainInfo>,
    epoch_start: Instant,
    last_draw: Instant,
    running: f64,
    seen: usize,
}

impl Progress {
    /// A progress display; draws nothing when `quiet`.
    pub fn new(quiet: bool) -> Self {
        Progress {
            quiet,
            tty: std::io::stderr().is_terminal(),
            info: None,
            epoch_start: Instant::now(),
            last_draw: Instant::now(),
            running: 0.0,
            seen: 0,
        }
    }
}

fn fmt_secs(s: f64) -> String {
    if s >= 3600.0 {
        format!(
            "{}h{:02}m",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    } else if s >= 60.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{s:.1}s")
    }
}

impl Callback for Progress {
    fn on_train_begin(&mut self, info: &TrainInfo) -> stacklstm::Result<()> {
        self.info = Some(*info);
        self.epoch_start = Instant::now();
        Ok(())
    }

    fn on_batch_end(&mut self, epoch: usize, batch: usize, loss: f64) -> stacklstm::Result<()> {
        if batch == 0 {
            self.epoch_start = Instant::now();
            self.running = 0.0;
            self.seen = 0;
        }
        self.running += loss;
        self.seen += 1;
        let Some(info) = self.info else { return Ok(()) };
        if self.quiet || !self.tty {
            return Ok(());
        }
        let done = batch + 1;
        if done < info.batches && self.last_draw.elapsed().as_millis() < 100 {
            return Ok(());
        }
        self.last_draw = Instant::now();
        let frac = done as f64 / info.batches.max(1) as f64;
        let width = 24;
        let filled = ((frac * width as f64) as usize).min(width);
        let elapsed = self.epoch_start.elapsed().as_secs_f64();
        let eta = if frac > 0.0 {
            elapsed / frac - elapsed
        } else {
            0.0
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2Kepoch {}/{} [{}{}] {done}/{} loss {:.5} ETA {}",
            epoch + 1,
            info.epochs,
            "=".repeat(filled),
            " ".repeat(width - filled),
            info.batches,
            self.running / self.seen.max(1) as f64,
            fmt_secs(eta)
        );
        let _ = err.flush();
        Ok(())
    }

    fn on_epoch_end(&mut self, _: &mut Trainer, logs: &EpochLogs) -> stacklstm::Result<Control> {
        if self.quiet {
            return Ok(Control::Continue);
        }
        let epochs = self.info.map_or(0, |i| i.epochs);
        let mut line = format!("epoch {}/{epochs}: loss {:.5}", logs.epoch + 1, logs.loss);
        for (k, v) in &logs.metrics {
            line.push_str(&format!(" {k} {v:.4}"));
        }
        if let Some(v) = logs.val_loss {
            line.push_str(&format!(" val_loss {v:.5}"));
        }
        for (k, v) in &logs.val_metrics {
            line.push_str(&format!(" val_{k} {v:.4}"));
        }
        line.push_str(&format!(" ({})", fmt_secs(logs.seconds)));
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K");
        }
        let _ = writeln!(err, "{line}");
        Ok(Control::Continue)
    }
}
