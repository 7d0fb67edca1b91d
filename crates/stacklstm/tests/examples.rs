//! The tutorial's examples (`examples/tutorial_*.rs`) run as the README shows them: each
//! prints its model summary and the shape of its prediction.
//!
//! `cargo test` builds the examples next to the test binaries (`target/<profile>/examples`);
//! a run limited to this test (`--test examples`) does not, so build them first with
//! `cargo build --release -p stacklstm --examples`.

use std::path::PathBuf;
use std::process::Command;

/// The compiled example `name`: the test binary is `target/<profile>/deps/examples-<hash>`,
/// the examples are in `target/<profile>/examples/`.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lies in target/<profile>/deps");
    let path = profile
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is not built: run `cargo test` without a target filter, or `cargo build --release -p stacklstm --examples` first",
        path.display()
    );
    path
}

struct Case {
    name: &'static str,
    /// LSTM layers in the summary.
    lstms: usize,
    /// Dense layers in the summary.
    dense: usize,
    /// The printed shape of the prediction.
    shape: &'static str,
}

#[test]
fn every_tutorial_example_prints_its_summary_and_prediction_shape() {
    let cases = [
        Case {
            name: "tutorial_output_layer",
            lstms: 1,
            dense: 0,
            shape: "[1, 1]",
        },
        Case {
            name: "tutorial_return_sequences",
            lstms: 1,
            dense: 0,
            shape: "[1, 3, 1]",
        },
        Case {
            name: "tutorial_two_hidden",
            lstms: 2,
            dense: 1,
            shape: "[1, 1]",
        },
        Case {
            name: "tutorial_four_hidden",
            lstms: 4,
            dense: 1,
            shape: "[1, 1]",
        },
    ];
    // Every example is a case here.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("the examples folder")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".rs").map(String::from)
        })
        .collect();
    files.sort();
    let mut names: Vec<String> = cases.iter().map(|c| c.name.to_string()).collect();
    names.sort();
    assert_eq!(files, names, "examples/ vs the cases of this test");

    let mut failures = Vec::new();
    for c in &cases {
        let out = Command::new(example(c.name))
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", c.name));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut problems = Vec::new();
        if !out.status.success() {
            problems.push(format!(
                "exit {:?}: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let rows = |kind: &str| stdout.lines().filter(|l| l.contains(kind)).count();
        if rows("(LSTM)") != c.lstms || rows("(Dense)") != c.dense {
            problems.push(format!(
                "summary has {} LSTM and {} Dense rows, expected {} and {}",
                rows("(LSTM)"),
                rows("(Dense)"),
                c.lstms,
                c.dense
            ));
        }
        if !stdout.contains("Total params:") {
            problems.push("no 'Total params:' line".to_string());
        }
        let shape = format!("prediction shape {}", c.shape);
        if !stdout.lines().any(|l| l == shape) {
            problems.push(format!("no line '{shape}'"));
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}\n{stdout}", c.name, problems.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
