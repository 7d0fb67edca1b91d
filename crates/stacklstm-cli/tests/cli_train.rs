//! The real `stacklstm` binary end to end in a temp dir: train -> evaluate -> predict ->
//! forecast on a small CSV series, train -> generate on a small text, resuming through a
//! checkpoint, divergence, `--help` of every subcommand, usage errors, and the demo.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{listing, ok, run_in, sine_csv, small_text, train_series, write};
use ndarray::Array3;
use serde_json::Value;

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn assert_keys(v: &Value, keys: &[&str]) {
    for k in keys {
        let x = &v[*k];
        assert!(!x.is_null(), "key '{k}' missing in {v}");
    }
}

fn assert_png(p: &Path) {
    let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut r = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap_or_else(|e| panic!("{}: not a PNG: {e}", p.display()));
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).expect("png frame");
    assert!(info.width > 100 && info.height > 100, "{info:?}");
}

fn assert_svg(p: &Path) {
    let text = std::fs::read_to_string(p).unwrap();
    let doc = roxmltree::Document::parse(&text)
        .unwrap_or_else(|e| panic!("{}: not XML: {e}", p.display()));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    assert!(doc
        .descendants()
        .any(|n| n.has_tag_name("path") || n.has_tag_name("polyline")));
}

#[test]
fn series_train_evaluate_predict_forecast() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(d, "s.csv", sine_csv(300));

    // train: JSON report, model, loss plot.
    let out = train_series(
        d,
        "s.csv",
        "m.safetensors",
        &["--json", "--plot", "loss.png"],
    );
    let r = json(&ok(&out));
    assert_keys(
        &r,
        &[
            "model",
            "epochs_run",
            "final_loss",
            "final_val_loss",
            "test_rmse",
            "test_mae",
            "naive_rmse",
            "seasonal_naive_rmse",
            "test_windows",
        ],
    );
    assert_eq!(r["epochs_run"], 2);
    assert!(r["test_rmse"].as_f64().unwrap().is_finite());
    assert_png(&d.join("loss.png"));

    // evaluate
    let r = json(&ok(&run_in(
        d,
        &[
            "evaluate",
            "--model",
            "m.safetensors",
            "--data",
            "s.csv",
            "--json",
        ],
    )));
    assert_keys(
        &r,
        &[
            "windows",
            "rmse",
            "mae",
            "naive_rmse",
            "naive_mae",
            "season",
        ],
    );
    assert_eq!(r["windows"], 300 - 8);

    // summary
    let s = ok(&run_in(d, &["summary", "m.safetensors"]));
    assert!(s.contains("Input shape: (None, 8, 2)"), "{s}");

    // predict: .npy in, .npy out; CSV in, CSV out.
    let x = Array3::from_shape_fn((5, 8, 2), |(b, t, f)| ((b + t + f) as f32 * 0.2).sin());
    stacklstm::data::write_npy(d.join("x.npy"), &x.clone().into_dyn()).unwrap();
    ok(&run_in(
        d,
        &[
            "predict",
            "--model",
            "m.safetensors",
            "--input",
            "x.npy",
            "--output",
            "y.npy",
        ],
    ));
    let y = stacklstm::data::read_npy(d.join("y.npy")).unwrap();
    assert_eq!(y.shape(), &[5, 1]);
    let rows: Vec<String> = x
        .outer_iter()
        .map(|s| {
            s.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    write(d, "x.csv", rows.join("\n") + "\n");
    ok(&run_in(
        d,
        &[
            "predict",
            "--model",
            "m.safetensors",
            "--input",
            "x.csv",
            "--output",
            "y.csv",
        ],
    ));
    let ycsv: Vec<f32> = std::fs::read_to_string(d.join("y.csv"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(ycsv.len(), 5);
    for (a, b) in ycsv.iter().zip(y.iter()) {
        assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{a} vs {b}");
    }

    // forecast needs every input column to be a target: a model of temp alone.
    ok(&train_series(
        d,
        "s.csv",
        "f.safetensors",
        &["--features", "temp"],
    ));
    ok(&run_in(
        d,
        &[
            "forecast",
            "--model",
            "f.safetensors",
            "--data",
            "s.csv",
            "--steps",
            "7",
            "--output",
            "fc.csv",
            "--plot",
            "fc.svg",
        ],
    ));
    let fc = std::fs::read_to_string(d.join("fc.csv")).unwrap();
    let lines: Vec<&str> = fc.lines().collect();
    assert_eq!(lines[0], "step,temp");
    assert_eq!(lines.len(), 1 + 7, "{fc}");
    for (i, l) in lines[1..].iter().enumerate() {
        let (step, v) = l.split_once(',').unwrap();
        assert_eq!(step, (i + 1).to_string());
        assert!(v.parse::<f32>().unwrap().is_finite(), "{l}");
    }
    assert_svg(&d.join("fc.svg"));
    // To stdout, the same rows.
    let stdout = ok(&run_in(
        d,
        &[
            "forecast",
            "--model",
            "f.safetensors",
            "--data",
            "s.csv",
            "--steps",
            "7",
        ],
    ));
    assert_eq!(stdout.trim_end(), fc.trim_end());
}

#[test]
fn text_train_generate_evaluate() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let text = small_text();
    write(d, "t.txt", &text);
    let r = json(&ok(&run_in(
        d,
        &[
            "train",
            "text",
            "--data",
            "t.txt",
            "--layers",
            "12",
            "--embedding",
            "4",
            "--seq-len",
            "10",
            "--batch-size",
            "8",
            "--epochs",
            "2",
            "--quiet",
            "--json",
            "--out",
            "lm.safetensors",
        ],
    )));
    assert_keys(&r, &["model", "epochs_run", "final_loss", "vocab_size"]);
    let vocab: BTreeSet<char> = text.chars().collect();
    assert_eq!(r["vocab_size"], vocab.len());

    let generate = |seed: &str| {
        ok(&run_in(
            d,
            &[
                "generate",
                "--model",
                "lm.safetensors",
                "--length",
                "60",
                "--seed",
                seed,
            ],
        ))
    };
    let a = generate("5");
    // The generated characters, then one newline.
    let body = a.strip_suffix('\n').expect("ends with a newline");
    assert_eq!(body.chars().count(), 60, "{a:?}");
    for c in body.chars() {
        assert!(vocab.contains(&c), "'{c}' is not in the vocabulary");
    }
    assert_eq!(generate("5"), a, "same seed, same text");

    let r = json(&ok(&run_in(
        d,
        &[
            "evaluate",
            "--model",
            "lm.safetensors",
            "--data",
            "t.txt",
            "--json",
        ],
    )));
    assert_keys(&r, &["tokens", "loss", "perplexity", "accuracy"]);
    let ppl = r["perplexity"].as_f64().unwrap();
    assert!(ppl > 1.0 && ppl < vocab.len() as f64 * 2.0, "{ppl}");
}

/// The kinds of the layers of a saved native model.
fn saved_kinds(p: &Path) -> Vec<String> {
    let file = stacklstm::io::native::load(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    file.model
        .layers()
        .iter()
        .map(|l| l.kind().to_string())
        .collect()
}

/// The cells of the summary row of the layer called `name`:
/// `│ gru (GRU) │ (None, 8, 6) │ 180 │` gives `["gru (GRU)", "(None, 8, 6)", "180"]`.
fn summary_row(summary: &str, name: &str) -> Vec<String> {
    let cells = |l: &str| -> Vec<String> {
        l.split('│')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect()
    };
    summary
        .lines()
        .map(cells)
        .find(|c| {
            c.first()
                .is_some_and(|c| c.starts_with(&format!("{name} (")))
        })
        .unwrap_or_else(|| panic!("no row {name} in\n{summary}"))
}

#[test]
fn bidirectional_series_models_count_like_keras_and_text_models_refuse_it() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(d, "s.csv", sine_csv(200));
    let train = |extra: &[&str], out: &str| {
        let mut args = vec![
            "train",
            "series",
            "--data",
            "s.csv",
            "--target",
            "temp",
            "--date-column",
            "date",
            "--window",
            "8",
            "--layers",
            "6,5",
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--out",
        ];
        args.push(out);
        args.extend_from_slice(extra);
        run_in(d, &args)
    };
    // Bare --bidirectional merges by concat; Keras' counts: 2 x 4·6·(2 + 6 + 1), then
    // 2 x 4·5·(12 + 5 + 1) on the 12-wide concat, then the Dense on 10.
    let out = train(&["--bidirectional"], "b.safetensors");
    let report = ok(&out);
    let summary = String::from_utf8_lossy(&out.stderr);
    for (name, shape, params) in [
        ("bidirectional", "(None, 8, 12)", "432"),
        ("bidirectional_1", "(None, 10)", "720"),
        ("dense", "(None, 1)", "11"),
    ] {
        let kind = if name == "dense" {
            "Dense"
        } else {
            "Bidirectional"
        };
        assert_eq!(
            summary_row(&summary, name),
            [&format!("{name} ({kind})"), shape, params]
        );
    }
    assert!(
        report.contains("  stacked Bidirectional(LSTM) "),
        "{report}"
    );
    assert_eq!(
        saved_kinds(&d.join("b.safetensors")),
        ["Bidirectional", "Bidirectional", "Dense"]
    );
    // A merge by sum around GRUs: 2 x (3·6·(2 + 6) + 2·18), then on the 6-wide sum.
    let out = train(
        &["--bidirectional", "sum", "--cell", "gru"],
        "g.safetensors",
    );
    ok(&out);
    let summary = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        summary_row(&summary, "bidirectional"),
        ["bidirectional (Bidirectional)", "(None, 8, 6)", "360"]
    );
    // A language model would read the tokens it predicts.
    write(d, "t.txt", "abc abd cab ".repeat(50));
    let out = run_in(
        d,
        &[
            "train",
            "text",
            "--data",
            "t.txt",
            "--bidirectional",
            "--out",
            "t.safetensors",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--bidirectional: a language model"), "{err}");
    assert!(!d.join("t.safetensors").exists());
}

#[test]
fn cell_gru_trains_series_and_text_models_of_grus_that_predict() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(d, "s.csv", sine_csv(200));
    let out = run_in(
        d,
        &[
            "train",
            "series",
            "--data",
            "s.csv",
            "--target",
            "temp",
            "--date-column",
            "date",
            "--window",
            "8",
            "--layers",
            "6,5",
            "--cell",
            "gru",
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--out",
            "g.safetensors",
        ],
    );
    let report = ok(&out);
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(!summary.contains("(LSTM)"), "{summary}");
    // Keras' GRU counts (reset_after: input and recurrent biases): 3·6·(2 + 6) + 2·18, then
    // 3·5·(6 + 5) + 2·15, then the Dense 5 + 1.
    for (name, shape, params) in [
        ("gru", "(None, 8, 6)", "180"),
        ("gru_1", "(None, 5)", "195"),
        ("dense", "(None, 1)", "6"),
    ] {
        let kind = if name == "dense" { "Dense" } else { "GRU" };
        assert_eq!(
            summary_row(&summary, name),
            [&format!("{name} ({kind})"), shape, params]
        );
    }
    assert!(summary.contains("Total params: 381 "), "{summary}");
    assert!(report.contains("  stacked GRU "), "{report}");
    assert_eq!(
        saved_kinds(&d.join("g.safetensors")),
        ["GRU", "GRU", "Dense"]
    );
    let x = Array3::from_shape_fn((3, 8, 2), |(b, t, f)| ((b * 3 + t + f) as f32 * 0.3).sin());
    stacklstm::data::write_npy(d.join("x.npy"), &x.into_dyn()).unwrap();
    ok(&run_in(
        d,
        &[
            "predict",
            "--model",
            "g.safetensors",
            "--input",
            "x.npy",
            "--output",
            "y.npy",
        ],
    ));
    let y = stacklstm::data::read_npy(d.join("y.npy")).unwrap();
    assert_eq!(y.shape(), &[3, 1]);
    assert!(y.iter().all(|v| v.is_finite()), "{y}");
    let eval = ok(&run_in(
        d,
        &["evaluate", "--model", "g.safetensors", "--data", "s.csv"],
    ));
    assert!(eval.contains("  stacked GRU "), "{eval}");

    // A language model: Embedding, a stateful GRU returning sequences, the Dense head.
    let text = small_text();
    write(d, "t.txt", &text);
    let vocab = text.chars().collect::<BTreeSet<char>>().len();
    let out = run_in(
        d,
        &[
            "train",
            "text",
            "--data",
            "t.txt",
            "--cell",
            "gru",
            "--layers",
            "12",
            "--embedding",
            "4",
            "--seq-len",
            "10",
            "--batch-size",
            "8",
            "--epochs",
            "1",
            "--out",
            "lm.safetensors",
        ],
    );
    ok(&out);
    let summary = String::from_utf8_lossy(&out.stderr);
    // 3·12·(4 + 12) + 2·36
    assert_eq!(
        summary_row(&summary, "gru"),
        ["gru (GRU)", "(None, None, 12)", "648"]
    );
    assert!(!summary.contains("(LSTM)"), "{summary}");
    assert_eq!(
        saved_kinds(&d.join("lm.safetensors")),
        ["Embedding", "GRU", "Dense"]
    );
    // Token ids [batch, timesteps, 1] in, next-token logits [batch, timesteps, vocab] out.
    let ids = Array3::from_shape_fn((2, 10, 1), |(b, t, _)| ((b * 7 + t * 3) % vocab) as f32);
    stacklstm::data::write_npy(d.join("ids.npy"), &ids.into_dyn()).unwrap();
    ok(&run_in(
        d,
        &[
            "predict",
            "--model",
            "lm.safetensors",
            "--input",
            "ids.npy",
            "--output",
            "logits.npy",
        ],
    ));
    let logits = stacklstm::data::read_npy(d.join("logits.npy")).unwrap();
    assert_eq!(logits.shape(), &[2, 10, vocab]);
    assert!(logits.iter().all(|v| v.is_finite()));
    let generated = ok(&run_in(
        d,
        &["generate", "--model", "lm.safetensors", "--length", "20"],
    ));
    assert_eq!(generated.trim_end_matches('\n').chars().count(), 20);

    // Not a cell: a usage error listing the cells.
    let out = run_in(
        d,
        &[
            "train",
            "text",
            "--data",
            "t.txt",
            "--cell",
            "rnn",
            "--out",
            "x.safetensors",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[possible values: lstm, gru]"), "{err}");
}

#[test]
fn resume_from_a_checkpoint_equals_a_straight_run() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(d, "s.csv", sine_csv(200));
    let four = ["--epochs", "4", "--dropout", "0.1"];
    ok(&train_series(d, "s.csv", "straight.safetensors", &four));
    ok(&train_series(
        d,
        "s.csv",
        "half.safetensors",
        &[
            "--epochs",
            "2",
            "--dropout",
            "0.1",
            "--checkpoint",
            "ck.safetensors",
        ],
    ));
    // The epoch-2 checkpoint carries the training state.
    let ck = stacklstm::io::native::load(d.join("ck.safetensors")).unwrap();
    assert_eq!(ck.training.unwrap().json["epoch"], 2);
    ok(&train_series(
        d,
        "s.csv",
        "resumed.safetensors",
        &[
            "--epochs",
            "4",
            "--dropout",
            "0.1",
            "--resume",
            "ck.safetensors",
        ],
    ));
    let straight = std::fs::read(d.join("straight.safetensors")).unwrap();
    let resumed = std::fs::read(d.join("resumed.safetensors")).unwrap();
    assert!(straight == resumed, "2 + 2 epochs differ from 4");

    // A model file without training state is refused.
    let out = train_series(
        d,
        "s.csv",
        "x.safetensors",
        &["--resume", "straight.safetensors"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without training state"), "{err}");
}

#[test]
fn divergence_names_epoch_step_and_the_last_good_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(d, "s.csv", sine_csv(200));
    let blow_up = ["--optimizer", "sgd", "--lr", "1e30"];

    // A fresh run: no checkpoint yet, and the message says so.
    let mut args = vec!["--checkpoint", "ck.safetensors"];
    args.extend_from_slice(&blow_up);
    let out = train_series(d, "s.csv", "m.safetensors", &args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("diverged at epoch 1, step "), "{err}");
    assert!(
        err.contains("no checkpoint was written to ck.safetensors"),
        "{err}"
    );
    assert!(!d.join("m.safetensors").exists());

    // Two good epochs, then the same run resumed with the learning rate blown up: the
    // message names epoch 3 and the checkpoint of epoch 2, which still resumes.
    ok(&train_series(
        d,
        "s.csv",
        "m.safetensors",
        &["--optimizer", "sgd", "--checkpoint", "ck.safetensors"],
    ));
    let mut args = vec![
        "--epochs",
        "4",
        "--resume",
        "ck.safetensors",
        "--checkpoint",
        "ck.safetensors",
    ];
    args.extend_from_slice(&blow_up);
    let out = train_series(d, "s.csv", "m2.safetensors", &args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("diverged at epoch 3, step "), "{err}");
    assert!(
        err.contains("last good checkpoint is ck.safetensors (after epoch 2)"),
        "{err}"
    );
    ok(&train_series(
        d,
        "s.csv",
        "m2.safetensors",
        &[
            "--epochs",
            "4",
            "--resume",
            "ck.safetensors",
            "--lr",
            "0.001",
        ],
    ));

    // A checkpoint file left by an earlier run is not this run's last good one.
    let mut args = vec!["--checkpoint", "ck.safetensors"];
    args.extend_from_slice(&blow_up);
    let out = train_series(d, "s.csv", "m4.safetensors", &args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("no checkpoint was written to ck.safetensors"),
        "{err}"
    );

    // Without --checkpoint: a hint to lower the rate.
    let out = train_series(d, "s.csv", "m3.safetensors", &blow_up);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("diverged at epoch 1, step ") && err.contains("lower --lr"),
        "{err}"
    );
}

/// The options of a `--help` page: `(flag, description)`; a description may continue on
/// the next lines. Options are listed under "Options:", "Arguments:" and custom headings
/// ("Data:", "Model:", ...), not under "Commands:".
fn options(help: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut in_options = false;
    for line in help.lines() {
        let heading = !line.starts_with(' ') && line.ends_with(':') && !line.contains(' ');
        if heading {
            in_options = line != "Commands:";
            continue;
        }
        if !in_options || line.trim().is_empty() {
            continue;
        }
        let t = line.trim_start();
        if t.starts_with('-') || t.starts_with('<') {
            // "  -o, --output <OUTPUT>  Description": the spec ends at two spaces.
            let (spec, desc) = t.split_once("  ").unwrap_or((t, ""));
            let flag = spec
                .split([',', ' '])
                .find(|w| w.starts_with("--") || w.starts_with('<'))
                .unwrap_or(spec)
                .to_string();
            out.push((flag, desc.trim().to_string()));
        } else if let Some(last) = out.last_mut() {
            last.1.push(' ');
            last.1.push_str(t);
        }
    }
    out
}

#[test]
fn help_of_every_subcommand_documents_every_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let top = ok(&run_in(tmp.path(), &["--help"]));
    let subs: [&[&str]; 10] = [
        &["predict"],
        &["summary"],
        &["import"],
        &["export"],
        &["train", "series"],
        &["train", "text"],
        &["evaluate"],
        &["forecast"],
        &["generate"],
        &["demo"],
    ];
    let mut problems = Vec::new();
    for words in subs {
        assert!(top.contains(words[0]), "top-level help lacks {}", words[0]);
        let sub = words.join(" ");
        let mut args = words.to_vec();
        args.push("--help");
        let help = ok(&run_in(tmp.path(), &args));
        let usage = help.lines().find(|l| l.starts_with("Usage:")).unwrap_or("");
        let opts = options(&help);
        if opts.len() < 2 {
            problems.push(format!("{sub}: no options found in\n{help}"));
        }
        for (flag, desc) in opts {
            if desc.is_empty() {
                problems.push(format!("{sub} {flag}: no description"));
                continue;
            }
            // A value flag that is not required says its default.
            let takes_value = help.lines().any(|l| l.contains(&format!("{flag} <")));
            let required =
                usage.contains(&format!("{flag} <")) && !usage.contains(&format!("[{flag}"));
            let is_help = flag == "--help";
            if takes_value
                && !required
                && !is_help
                && !desc.contains("[default")
                && !desc.contains("required")
            {
                problems.push(format!("{sub} {flag}: no [default: ...] in '{desc}'"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The description of `flag` on a `--help` page.
fn describe(help: &str, flag: &str) -> String {
    options(help)
        .into_iter()
        .find(|(f, _)| f == flag)
        .unwrap_or_else(|| panic!("no {flag} in\n{help}"))
        .1
}

#[test]
fn train_help_lists_the_modes_and_each_mode_its_choices() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let help = ok(&run_in(d, &["train", "--help"]));
    let modes: Vec<&str> = help
        .lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(modes, ["series", "text", "help"], "{help}");

    let optimizers = "adam, adamw, sgd, rmsprop, adagrad";
    let series: &[(&str, &str)] = &[
        ("--cell", "lstm, gru"),
        ("--bidirectional", "concat, sum, mul, ave"),
        ("--optimizer", optimizers),
        ("--loss", "mse, mae, huber"),
        ("--fill", "error, ffill, interpolate, drop"),
        ("--scaler", "minmax, standard, none"),
    ];
    let text: &[(&str, &str)] = &[
        ("--cell", "lstm, gru"),
        ("--bidirectional", "concat, sum, mul, ave"),
        ("--optimizer", optimizers),
        ("--level", "char, word"),
    ];
    // Each mode offers its own options only.
    for (mode, choices, foreign) in [
        (
            "series",
            series,
            ["--level", "--seq-len", "--embedding", "--text"],
        ),
        ("text", text, ["--target", "--window", "--loss", "--text"]),
    ] {
        let help = ok(&run_in(d, &["train", mode, "--help"]));
        for prefix in ["CSV:", "Text:"] {
            assert!(
                !help.contains(prefix),
                "train {mode} --help: '{prefix}' in\n{help}"
            );
        }
        for (flag, values) in choices {
            let desc = describe(&help, flag);
            assert!(
                desc.contains(&format!("[possible values: {values}]")),
                "train {mode} {flag}: '{desc}'"
            );
        }
        for flag in foreign {
            assert!(
                !help.contains(&format!("{flag} ")),
                "train {mode} --help offers {flag}"
            );
        }
    }
}

#[test]
fn usage_errors_exit_2_and_the_form_without_a_mode_names_the_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(d, "s.csv", sine_csv(100));
    write(d, "t.txt", small_text());
    let series = |extra: &[&'static str]| {
        let mut v = vec![
            "train",
            "series",
            "--data",
            "s.csv",
            "--target",
            "temp",
            "--out",
            "m.safetensors",
        ];
        v.extend_from_slice(extra);
        v
    };
    let text = |extra: &[&'static str]| {
        let mut v = vec![
            "train",
            "text",
            "--data",
            "t.txt",
            "--out",
            "lm.safetensors",
        ];
        v.extend_from_slice(extra);
        v
    };
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        // The form before modes: what to type instead.
        (
            vec![
                "train",
                "--data",
                "s.csv",
                "--target",
                "temp",
                "--out",
                "m.safetensors",
            ],
            vec![
                "`stacklstm train series --data",
                "`stacklstm train text --data",
            ],
        ),
        (
            vec![
                "train",
                "--text",
                "--data",
                "t.txt",
                "--out",
                "lm.safetensors",
            ],
            vec!["`stacklstm train text --data", "instead of `train --text`"],
        ),
        (
            series(&["--optimizer", "adamax"]),
            vec![
                "'adamax'",
                "--optimizer",
                "adam, adamw, sgd, rmsprop, adagrad",
            ],
        ),
        (
            series(&["--loss", "hinge"]),
            vec!["'hinge'", "mse, mae, huber"],
        ),
        (
            series(&["--fill", "zero"]),
            vec!["'zero'", "error, ffill, interpolate, drop"],
        ),
        (
            series(&["--scaler", "log"]),
            vec!["'log'", "minmax, standard, none"],
        ),
        (
            vec![
                "train",
                "series",
                "--data",
                "s.csv",
                "--out",
                "m.safetensors",
            ],
            vec!["--target"],
        ),
        (text(&["--level", "byte"]), vec!["'byte'", "char, word"]),
        (
            text(&["--optimizer", "lion"]),
            vec!["'lion'", "--optimizer"],
        ),
        (text(&["--target", "temp"]), vec!["'--target'"]),
        (
            vec![
                "evaluate",
                "--model",
                "m.safetensors",
                "--data",
                "s.csv",
                "--fill",
                "mean",
            ],
            vec!["'mean'", "error, ffill, interpolate, drop"],
        ),
    ];
    let before = listing(d);
    let mut problems = Vec::new();
    for (args, needles) in &cases {
        let out = run_in(d, args);
        let err = String::from_utf8_lossy(&out.stderr);
        let mut wrong = Vec::new();
        if out.status.code() != Some(2) {
            wrong.push(format!("exit code {:?}, expected 2", out.status.code()));
        }
        if !err.starts_with("error: ") || err.contains("panicked") {
            wrong.push("stderr does not start with 'error: '".to_string());
        }
        for n in needles {
            if !err.contains(n) {
                wrong.push(format!("no '{n}'"));
            }
        }
        if !wrong.is_empty() {
            problems.push(format!(
                "stacklstm {}: {}\n{err}",
                args.join(" "),
                wrong.join("; ")
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(listing(d), before, "a usage error left files behind");

    // `train` alone shows the modes.
    let out = run_in(d, &["train"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("series") && err.contains("text"), "{err}");
}

#[test]
fn demo_reports_lstm_and_naive_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let r = json(&ok(&run_in(
        tmp.path(),
        &[
            "demo",
            "--quiet",
            "--json",
            "--epochs",
            "3",
            "--out-dir",
            "out",
        ],
    )));
    for k in ["lstm", "naive", "seasonal_naive_12"] {
        for m in ["rmse", "mae"] {
            let v = r[k][m].as_f64().unwrap_or(f64::NAN);
            assert!(v.is_finite() && v > 0.0, "{k}.{m} = {v} in {r}");
        }
    }
    assert_eq!(r["epochs_run"], 3);
    let out = tmp.path().join("out");
    assert!(stacklstm::io::native::load(out.join("sunspots.safetensors")).is_ok());
    assert_png(&out.join("sunspots_forecast.png"));
}
