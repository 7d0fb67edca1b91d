//! A save that fails part-way (the file size limit `RLIMIT_FSIZE` stands in for a full disk):
//! the command reports the error naming the file, the previous file stays as it was, and no
//! temporary file is left behind.
#![cfg(target_os = "linux")]

mod common;

use std::fmt::Write as _;
use std::path::Path;

use common::{ok, run_in, write};

fn series_csv(rows: usize) -> String {
    let mut s = String::from("t,v\n");
    for i in 0..rows {
        writeln!(s, "{i},{:.4}", (i as f64 * 0.2).sin()).unwrap();
    }
    s
}

fn train_args<'a>(layers: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "series",
        "--data",
        "s.csv",
        "--target",
        "v",
        "--date-column",
        "t",
        "--window",
        "8",
        "--layers",
        layers,
        "--epochs",
        "1",
        "--quiet",
        "--out",
        out,
    ]
}

/// Runs the binary under `sh` with a file size limit of `kib` KiB, SIGXFSZ ignored so that a
/// write past the limit fails with EFBIG (as on a full disk) instead of killing the process.
fn run_limited(dir: &Path, kib: u64, args: &[&str]) -> std::process::Output {
    let script = format!("trap '' XFSZ; ulimit -f {}; exec \"$0\" \"$@\"", kib * 2);
    std::process::Command::new("sh")
        .current_dir(dir)
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_stacklstm"))
        .args(args)
        .output()
        .expect("run sh")
}

#[test]
fn a_save_that_runs_out_of_space_keeps_the_old_file_and_leaves_no_temp() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(d, "s.csv", series_csv(400));
    // A small model first: the file a failed save must not damage.
    ok(&run_in(d, &train_args("4", "m.safetensors")));
    let before = std::fs::read(d.join("m.safetensors")).unwrap();
    assert!(before.len() < 40 << 10, "{} bytes", before.len());
    // A model of ~0.5 MB under a 64 KiB limit (POSIX `ulimit -f` counts 512-byte blocks).
    let out = run_limited(d, 64, &train_args("128,128", "m.safetensors"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("m.safetensors") && err.contains("File too large"),
        "the error names the file and the cause: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert_eq!(
        std::fs::read(d.join("m.safetensors")).unwrap(),
        before,
        "the previous model is intact"
    );
    let left: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp."))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}
