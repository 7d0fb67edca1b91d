//! Helpers shared by the end-to-end tests: the binary, small generated data sets, checks
//! of exit codes and of stderr.

#![allow(dead_code)] // each test file uses a part

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The real binary, with backtraces on: a failure must still print no backtrace.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stacklstm"));
    c.env("RUST_BACKTRACE", "1");
    c
}

/// Runs `stacklstm args...` in `dir`.
pub fn run_in(dir: &Path, args: &[&str]) -> Output {
    bin()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run stacklstm")
}

/// Stdout of a run that must succeed.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A tiny deterministic generator (SplitMix64) for noise in the test data.
pub struct Noise(u64);

impl Noise {
    pub fn new(seed: u64) -> Self {
        Noise(seed)
    }
    /// Uniform in [-1, 1).
    pub fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// A noisy sine `temp` and a slower cosine `load`, hourly, with a `date` column.
pub fn sine_csv(rows: usize) -> String {
    let mut noise = Noise::new(7);
    let mut s = String::from("date,temp,load\n");
    for i in 0..rows {
        let t = i as f64;
        writeln!(
            s,
            "2021-{:02}-{:02} {:02}:00,{:.4},{:.4}",
            1 + i / (24 * 28),
            1 + (i / 24) % 28,
            i % 24,
            (t * 0.3).sin() + 0.05 * noise.next(),
            (t * 0.05).cos()
        )
        .unwrap();
    }
    s
}

/// A small text for language models.
pub fn small_text() -> String {
    let words = [
        "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog",
    ];
    let mut noise = Noise::new(3);
    let mut s = String::new();
    for i in 0..300 {
        let k = ((noise.next() + 1.0) * 4.5) as usize % words.len();
        s.push_str(words[k]);
        s.push(if i % 12 == 11 { '\n' } else { ' ' });
    }
    s
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// The names in a folder, sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Trains a small series model (`train series`) on `data` (in `dir`) to `out` (2 epochs
/// unless `extra` says otherwise); extra flags appended.
pub fn train_series(dir: &Path, data: &str, out: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "series",
        "--data",
        data,
        "--target",
        "temp",
        "--date-column",
        "date",
        "--window",
        "8",
        "--layers",
        "6",
        "--batch-size",
        "16",
        "--quiet",
        "--out",
        out,
    ];
    if !extra.contains(&"--epochs") {
        args.extend_from_slice(&["--epochs", "2"]);
    }
    args.extend_from_slice(extra);
    run_in(dir, &args)
}
