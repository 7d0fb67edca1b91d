//! Signals: Ctrl-C (or SIGTERM) during `train series` or `train text` saves the training state and exits 130 (143), and resuming from
//! it ends where an uninterrupted run ends; SIGKILL in the middle of saving a model never
//! leaves a broken file under the target name.
#![cfg(unix)]

mod common;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, listing, ok, run_in, write, Noise};
use stacklstm::{Dense, Lstm, Sequential};

fn signal(child: &Child, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(st.success());
}

/// Spawns `stacklstm args...` in `dir` with stderr piped, waits for the first line of stderr
/// starting with `marker` (training is under way and the handler installed), sends SIGINT,
/// and returns the exit code and all of stderr.
fn interrupt_after(dir: &Path, args: &[&str], marker: &str) -> (Option<i32>, String) {
    signal_after(dir, args, marker, "-INT")
}

/// [`interrupt_after`] with the signal `sig` (`-INT`, `-TERM`).
fn signal_after(dir: &Path, args: &[&str], marker: &str, sig: &str) -> (Option<i32>, String) {
    let mut child = bin()
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stacklstm");
    let mut err = String::new();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut sent = false;
    for line in lines.by_ref() {
        let line = line.unwrap();
        writeln!(err, "{line}").unwrap();
        if !sent && line.starts_with(marker) {
            signal(&child, sig);
            sent = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(sent, "no '{marker}' line: {err}");
    (status.code(), err)
}

fn series_csv(rows: usize) -> String {
    let mut s = String::from("date,temp\n");
    for i in 0..rows {
        writeln!(s, "d{i},{:.4}", (i as f64 * 0.3).sin()).unwrap();
    }
    s
}

#[test]
fn ctrl_c_saves_the_training_state_and_resuming_ends_like_a_straight_run() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(d, "s.csv", series_csv(1500));
    // ~0.1 s per epoch: the signal lands inside a run of 10 epochs.
    let args = |out: &'static str| {
        vec![
            "train",
            "series",
            "--data",
            "s.csv",
            "--target",
            "temp",
            "--date-column",
            "date",
            "--window",
            "32",
            "--layers",
            "24,24",
            "--batch-size",
            "16",
            "--epochs",
            "10",
            "--seed",
            "3",
            "--dropout",
            "0.1",
            "--out",
            out,
        ]
    };
    let (code, err) = interrupt_after(d, &args("m.safetensors"), "epoch 1/10");
    assert_eq!(code, Some(130), "{err}");
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with("interrupted at epoch ")
            && last.contains("saved to m.interrupted.safetensors (no --checkpoint given)")
            && last.contains("--resume m.interrupted.safetensors"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        !d.join("m.safetensors").exists(),
        "no model after an interruption"
    );
    let ck = stacklstm::io::native::load(d.join("m.interrupted.safetensors")).unwrap();
    let state = ck.training.expect("training state").json;
    assert!(state["epoch"].as_u64().unwrap() >= 1, "{state}");

    let mut resume = args("m.safetensors");
    resume.extend(["--quiet", "--resume", "m.interrupted.safetensors"]);
    ok(&run_in(d, &resume));
    let mut straight = args("straight.safetensors");
    straight.push("--quiet");
    ok(&run_in(d, &straight));
    assert!(
        std::fs::read(d.join("m.safetensors")).unwrap()
            == std::fs::read(d.join("straight.safetensors")).unwrap(),
        "interrupted + resumed differs from a straight run (stopped at {state})"
    );
}

/// A batch scheduler's SIGTERM: like the first Ctrl-C (the checkpoint is written at the next
/// batch boundary) but exits with 143; the checkpoint resumes to the straight run's model.
#[test]
fn sigterm_saves_the_checkpoint_and_exits_143() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(d, "s.csv", series_csv(1500));
    let args = |out: &'static str, epochs: &'static str| {
        vec![
            "train",
            "series",
            "--data",
            "s.csv",
            "--target",
            "temp",
            "--date-column",
            "date",
            "--window",
            "32",
            "--layers",
            "24,24",
            "--batch-size",
            "16",
            "--epochs",
            epochs,
            "--seed",
            "5",
            "--checkpoint",
            "ck.safetensors",
            "--out",
            out,
        ]
    };
    let (code, err) = signal_after(d, &args("m.safetensors", "10"), "epoch 1/10", "-TERM");
    assert_eq!(code, Some(143), "{err}");
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with("interrupted by SIGTERM at epoch ")
            && last.contains("saved to ck.safetensors; continue with --resume ck.safetensors"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(!d.join("m.safetensors").exists(), "no model after SIGTERM");
    let ck = stacklstm::io::native::load(d.join("ck.safetensors")).unwrap();
    assert!(
        ck.training.is_some(),
        "the checkpoint holds the training state"
    );
    let mut resume = args("m.safetensors", "10");
    resume.extend(["--quiet", "--resume", "ck.safetensors"]);
    ok(&run_in(d, &resume));
    let mut straight = args("straight.safetensors", "10");
    straight.push("--quiet");
    ok(&run_in(d, &straight));
    assert!(
        std::fs::read(d.join("m.safetensors")).unwrap()
            == std::fs::read(d.join("straight.safetensors")).unwrap(),
        "SIGTERM + resume differs from a straight run"
    );
}

#[test]
fn ctrl_c_writes_the_checkpoint_path_when_given_and_text_runs_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let text: String = (0..4000)
        .map(|i| ["abc ", "abd\n", "cab "][i % 3])
        .collect();
    write(d, "t.txt", text);
    let base = [
        "train",
        "text",
        "--data",
        "t.txt",
        "--layers",
        "32",
        "--embedding",
        "8",
        "--seq-len",
        "20",
        "--batch-size",
        "8",
        "--out",
        "lm.safetensors",
        "--checkpoint",
        "ck.safetensors",
    ];
    let mut args = base.to_vec();
    args.extend(["--epochs", "200"]);
    let (code, err) = interrupt_after(d, &args, "epoch 1/200");
    assert_eq!(code, Some(130), "{err}");
    assert!(
        err.lines()
            .last()
            .unwrap()
            .contains("saved to ck.safetensors; continue"),
        "{err}"
    );
    let ck = stacklstm::io::native::load(d.join("ck.safetensors")).unwrap();
    let epoch = ck.training.unwrap().json["epoch"].as_u64().unwrap();
    // Resume and finish the interrupted epoch and one more.
    let epochs = (epoch + 2).to_string();
    let mut args = base.to_vec();
    args.extend(["--epochs", &epochs, "--resume", "ck.safetensors", "--quiet"]);
    ok(&run_in(d, &args));
    assert!(stacklstm::io::native::load(d.join("lm.safetensors")).is_ok());
}

#[test]
fn sigkill_while_saving_leaves_the_old_or_the_new_file() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // Two models of ~8 MB each, mostly a wide input kernel (cheap to initialise).
    for (name, seed) in [("a.safetensors", 1), ("b.safetensors", 2)] {
        let m = Sequential::new()
            .input_shape(2, 4000)
            .add(Lstm::new(128))
            .add(Dense::new(1))
            .seed(seed)
            .build()
            .unwrap();
        m.save(d.join(name)).unwrap();
    }
    let a = std::fs::read(d.join("a.safetensors")).unwrap();
    let b = std::fs::read(d.join("b.safetensors")).unwrap();
    let import = |src: &str| {
        bin()
            .current_dir(d)
            .args(["import", "--model", src, "--output", "t.safetensors"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn stacklstm")
    };
    // A full import, to time one.
    let t0 = Instant::now();
    assert!(import("b.safetensors").wait().unwrap().success());
    let full = t0.elapsed();
    assert!(std::fs::read(d.join("t.safetensors")).unwrap() == b);

    let mut noise = Noise::new(11);
    let (mut old, mut new) = (0, 0);
    // The kill lands anywhere from early in a run to well past its end. How long a run takes
    // varies with the machine's load, so the window adapts: a kill that let the new file land
    // shortens it, one that kept the old file lengthens it, and both outcomes keep occurring.
    let mut scale = 1.0f64;
    let start = Instant::now();
    for i in 0..100 {
        let both = old >= 3 && new >= 3;
        if (both && i >= 12) || start.elapsed() > Duration::from_secs(30) {
            break;
        }
        let before = std::fs::read(d.join("t.safetensors")).unwrap();
        let src = if i % 2 == 0 {
            "a.safetensors"
        } else {
            "b.safetensors"
        };
        let expect_new = if i % 2 == 0 { &a } else { &b };
        let mut child = import(src);
        std::thread::sleep(full.mul_f64(scale * (1.0 + 0.8 * noise.next())));
        child.kill().unwrap();
        child.wait().unwrap();
        let now = std::fs::read(d.join("t.safetensors")).unwrap();
        if &now == expect_new && now != before {
            new += 1;
            scale *= 0.8;
        } else {
            assert!(
                now == before,
                "kill {i}: the target is neither the old nor the new file"
            );
            old += 1;
            scale *= 1.25;
        }
        stacklstm::io::native::load(d.join("t.safetensors"))
            .unwrap_or_else(|e| panic!("kill {i}: {e}"));
    }
    // Anything else left in the folder is a hidden temporary file, never the target.
    let strays: Vec<String> = listing(d)
        .into_iter()
        .filter(|n| !["a.safetensors", "b.safetensors", "t.safetensors"].contains(&n.as_str()))
        .collect();
    for s in &strays {
        assert!(s.starts_with(".t.safetensors.tmp."), "unexpected file {s}");
    }
    eprintln!(
        "one import {full:?}; {old} kills kept the old file, {new} let the new one land, {} left a temporary file",
        strays.len()
    );
    assert!(
        old > 0 && new > 0,
        "kills landed only on one side: old {old}, new {new}"
    );
}
