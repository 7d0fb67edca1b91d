//! `stacklstm bench` end to end on a tiny workload table written to a temp dir: the record
//! schema the comparison script relies on, GRU stacks of the project's schema extensions,
//! the error paths, and that the command, a harness for `bench/compare.py`, stays out of the
//! command list.

use std::process::Command;

const TABLE: &str = r#"{
  "schema": 1,
  "conventions": {"threads": 2},
  "workloads": {
    "tiny": {
      "input": {"kind": "dense", "timesteps": 4, "features": 2},
      "lstm": [{"units": 3, "return_sequences": true}, {"units": 3, "return_sequences": false}],
      "dense": {"units": 1, "per_timestep": false, "activation": "linear"},
      "loss": "mse",
      "measure": {
        "train": {"batch": 4, "warmup_steps": 1, "steps": 2, "unit": "samples/s"},
        "infer_throughput": {"batch": 4, "warmup_calls": 1, "calls": 2, "unit": "samples/s"},
        "infer_latency": {"batch": 1, "warmup_calls": 1, "calls": 3, "unit": "ms"}
      }
    },
    "chars": {
      "input": {"kind": "tokens", "timesteps": 3, "vocab": 7, "embedding_dim": 2},
      "lstm": [{"units": 2, "return_sequences": true}],
      "dense": {"units": 7, "per_timestep": true, "activation": "softmax"},
      "loss": "softmax_cross_entropy",
      "measure": {"train": {"batch": 2, "warmup_steps": 1, "steps": 1, "unit": "tokens/s"}}
    },
    "gru": {
      "input": {"kind": "onehot", "timesteps": 3, "vocab": 5},
      "lstm": [{"units": 4, "return_sequences": true, "cell": "gru"},
               {"units": 2, "return_sequences": true, "cell": "gru"}],
      "dense": {"units": 5, "per_timestep": true, "activation": "softmax"},
      "loss": "softmax_cross_entropy",
      "measure": {
        "train": {"batch": 3, "warmup_steps": 1, "steps": 1, "unit": "tokens/s"},
        "infer_throughput": {"batch": 3, "warmup_calls": 1, "calls": 1, "unit": "samples/s"}
      }
    },
    "bi": {
      "input": {"kind": "dense", "timesteps": 4, "features": 2, "lengths": {"min": 2, "max": 4}},
      "lstm": [{"units": 3, "return_sequences": false, "bidirectional": "concat"}],
      "dense": {"units": 3, "per_timestep": false, "activation": "softmax"},
      "loss": "softmax_cross_entropy",
      "measure": {"train": {"batch": 4, "warmup_steps": 1, "steps": 1, "unit": "samples/s"}}
    },
    "relu": {
      "input": {"kind": "dense", "timesteps": 4, "features": 2},
      "lstm": [{"units": 3, "return_sequences": false}],
      "dense": {"units": 3, "per_timestep": false, "activation": "relu"},
      "loss": "mse",
      "measure": {"train": {"batch": 4, "warmup_steps": 1, "steps": 1, "unit": "samples/s"}}
    },
    "masked": {
      "input": {"kind": "dense", "timesteps": 6, "features": 2, "lengths": {"min": 3, "max": 6}},
      "lstm": [{"units": 3, "return_sequences": false}],
      "dense": {"units": 4, "per_timestep": false, "activation": "softmax"},
      "loss": "softmax_cross_entropy",
      "measure": {
        "train": {"batch": 4, "warmup_steps": 1, "steps": 1, "unit": "samples/s"},
        "infer_throughput": {"batch": 4, "warmup_calls": 1, "calls": 1, "unit": "samples/s"}
      }
    }
  },
  "repeats": 1
}"#;

fn bench(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let table = dir.join("workloads.json");
    std::fs::write(&table, TABLE).unwrap();
    Command::new(env!("CARGO_BIN_EXE_stacklstm"))
        .arg("bench")
        .arg("--workloads-json")
        .arg(&table)
        .args(args)
        .env("BENCH_QUIET_WINDOW_S", "0")
        .env("BENCH_QUIET_MAX_WAIT_S", "0")
        .output()
        .expect("run stacklstm")
}

#[test]
fn records_follow_the_peers_schema() {
    let dir = tempfile::tempdir().unwrap();
    let out = bench(dir.path(), &["--workloads", "tiny,chars", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["framework"], "stacklstm");
    let recs = v["records"].as_array().unwrap();
    let metrics: Vec<(&str, &str)> = recs
        .iter()
        .map(|r| {
            (
                r["workload"].as_str().unwrap(),
                r["metric"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        metrics,
        [
            ("tiny", "train"),
            ("tiny", "infer_throughput"),
            ("tiny", "infer_latency_predict"),
            ("tiny", "infer_latency_direct"),
            ("chars", "train"),
        ]
    );
    for r in recs {
        for k in ["median", "min", "max", "forward_flops_per_sample", "batch"] {
            assert!(r[k].is_number(), "{k} in {r}");
        }
        assert!(r["median"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["gflops"]["median"].as_f64().unwrap() > 0.0, "{r}");
        assert_eq!(r["values"].as_array().unwrap().len(), 1);
    }
    // 2 * 4 * 3 * (2 + 3) * 4 + 2 * 4 * 3 * (3 + 3) * 4 + 2 * 3 * 1
    assert_eq!(recs[0]["forward_flops_per_sample"], 1062.0);
    assert_eq!(recs[0]["unit"], "samples/s");
    assert_eq!(recs[4]["unit"], "tokens/s");
}

#[test]
fn gru_stacks_run_and_count_three_gate_blocks() {
    let dir = tempfile::tempdir().unwrap();
    // `--workload`, the earlier spelling, still names workloads.
    let out = bench(dir.path(), &["--workload", "gru", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let recs = v["records"].as_array().unwrap();
    let metrics: Vec<&str> = recs.iter().map(|r| r["metric"].as_str().unwrap()).collect();
    assert_eq!(metrics, ["train", "infer_throughput"]);
    // (2 * 3 * 4 * (5 + 4) + 2 * 3 * 2 * (4 + 2) + 2 * 2 * 5) * 3
    assert_eq!(recs[0]["forward_flops_per_sample"], 924.0);
    for r in recs {
        assert!(r["median"].as_f64().unwrap() > 0.0, "{r}");
    }
}

#[test]
fn a_workload_the_library_cannot_build_fails_alone_and_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let out = bench(dir.path(), &["--workloads", "relu,masked", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("relu: FAILED dense activation 'relu' is not supported"),
        "{err}"
    );
    // The other workload, rows of lengths 3..6 (masked), still ran; the failure is in the
    // records file.
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let recs = v["records"].as_array().unwrap();
    let runs: Vec<(&str, &str)> = recs
        .iter()
        .map(|r| {
            (
                r["workload"].as_str().unwrap(),
                r["metric"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(runs, [("masked", "train"), ("masked", "infer_throughput")]);
    // The LSTM over the mean length 4.5: 2 * 4 * 3 * (2 + 3) * 4.5, then 2 * 3 * 4.
    assert_eq!(recs[0]["forward_flops_per_sample"], 564.0);
    assert_eq!(v["errors"][0]["workload"], "relu");
}

#[test]
fn a_bidirectional_workload_on_masked_rows_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = bench(dir.path(), &["--workloads", "bi", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let recs = v["records"].as_array().unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["workload"], "bi");
    assert!(recs[0]["median"].as_f64().unwrap() > 0.0);
}

#[test]
fn unknown_workload_and_missing_table_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = bench(dir.path(), &["--workloads", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no workload named 'nope'")
            && err.contains("tiny, chars, gru, bi, relu, masked"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_stacklstm"))
        .args(["bench", "--workloads-json", "/nonexistent/w.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/w.json"));
    // A relative table is looked for upwards; not found, the error says how to give it.
    let out = Command::new(env!("CARGO_BIN_EXE_stacklstm"))
        .current_dir(dir.path())
        .args(["bench", "--workloads-json", "nowhere/w.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nowhere/w.json not found") && err.contains("pass --workloads-json FILE"),
        "{err}"
    );
    // The earlier spelling of the table flag gets a pointer to the current one.
    let out = Command::new(env!("CARGO_BIN_EXE_stacklstm"))
        .args(["bench", "--workloads", "w.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a file; pass the table with --workloads-json w.json"),
        "{err}"
    );
    // A table whose extension fields are malformed is refused before anything runs.
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        TABLE.replace(r#""cell": "gru"}"#, r#""cell": "rnn"}"#),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stacklstm"))
        .arg("bench")
        .arg("--workloads-json")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown variant `rnn`"), "{err}");
}

#[test]
fn bench_runs_but_is_not_in_the_command_list() {
    let out = Command::new(env!("CARGO_BIN_EXE_stacklstm"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(help.contains("train"), "{help}");
    assert!(
        !help.lines().any(|l| l.trim_start().starts_with("bench")),
        "{help}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_stacklstm"))
        .args(["bench", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--workloads <NAMES>") && help.contains("--workloads-json <FILE>"),
        "{help}"
    );
}
