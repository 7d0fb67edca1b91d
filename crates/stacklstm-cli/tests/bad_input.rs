//! Malformed input of every kind through every subcommand of the real binary: each must exit
//! with code 1 and one line on stderr that names the problem (the file, and the line or
//! column where it applies), with no panic or backtrace even with `RUST_BACKTRACE=1`, and
//! without leaving any file behind (no partial output, no temporary file).
//!
//! Table-driven: one list of cases; every failing case is reported at once.

mod common;

use std::path::Path;

use common::{listing, ok, run_in, sine_csv, small_text, train_series, write};
use ndarray::{Array3, ArrayD, IxDyn};

struct Case {
    /// What the case is about.
    what: &'static str,
    args: Vec<&'static str>,
    /// Substrings the error line must contain.
    needles: Vec<&'static str>,
}

fn case(what: &'static str, args: &[&'static str], needles: &[&'static str]) -> Case {
    Case {
        what,
        args: args.to_vec(),
        needles: needles.to_vec(),
    }
}

/// A native model file with its metadata's format_version replaced.
fn with_format_version(model: &[u8], version: u64) -> Vec<u8> {
    let n = u64::from_le_bytes(model[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&model[8..8 + n]).unwrap();
    let doc = header["__metadata__"]["stacklstm"].as_str().unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(doc).unwrap();
    doc["format_version"] = version.into();
    header["__metadata__"]["stacklstm"] = doc.to_string().into();
    let h = header.to_string().into_bytes();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend_from_slice(&model[8 + n..]);
    out
}

/// Replaces the value of `col` (0-based) in data row `row` (1-based, after the header).
fn edit_cell(csv: &str, row: usize, col: usize, value: &str) -> String {
    let mut lines: Vec<String> = csv.lines().map(String::from).collect();
    let mut cells: Vec<&str> = lines[row].split(',').collect();
    cells[col] = value;
    lines[row] = cells.join(",");
    lines.join("\n") + "\n"
}

fn npy(dir: &Path, name: &str, a: ArrayD<f32>) {
    stacklstm::data::write_npy(dir.join(name), &a).unwrap();
}

/// The data and models every case draws on.
fn fixtures(d: &Path) {
    let csv = sine_csv(200);
    write(d, "s.csv", &csv);
    // Line 5 of the file is data row 4; column 1 is `temp`.
    write(d, "nonnum.csv", edit_cell(&csv, 4, 1, "warm"));
    write(d, "nan.csv", edit_cell(&csv, 6, 1, "NaN"));
    write(
        d,
        "short.csv",
        csv.lines().take(6).collect::<Vec<_>>().join("\n") + "\n",
    );
    write(d, "hdr.csv", "date,temp,load\n");
    write(d, "empty.csv", "");
    write(
        d,
        "noload.csv",
        "date,temp\n2021-01-01,1.0\n2021-01-02,2.0\n",
    );
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x80)
        .collect();
    write(d, "garbage.bin", &garbage);
    std::fs::create_dir(d.join("adir")).unwrap();
    write(d, "t.txt", small_text());
    write(d, "empty.txt", "");
    write(d, "short.txt", "the dog\n");

    ok(&train_series(d, "s.csv", "m.safetensors", &[]));
    ok(&train_series(
        d,
        "s.csv",
        "f.safetensors",
        &["--features", "temp"],
    ));
    ok(&run_in(
        d,
        &[
            "train",
            "text",
            "--data",
            "t.txt",
            "--layers",
            "8",
            "--embedding",
            "4",
            "--seq-len",
            "8",
            "--batch-size",
            "4",
            "--epochs",
            "1",
            "--quiet",
            "--out",
            "lm.safetensors",
        ],
    ));
    let m = std::fs::read(d.join("m.safetensors")).unwrap();
    write(d, "trunc.safetensors", &m[..m.len() / 2]);
    write(d, "future.safetensors", with_format_version(&m, 999));
    let mut magic = m.clone();
    magic[..8].copy_from_slice(b"PK\x03\x04junk");
    write(d, "magic.safetensors", magic);
    write(d, "zero.safetensors", "");

    let x = Array3::from_shape_fn((3, 8, 2), |(b, t, f)| (b + t + f) as f32 * 0.1).into_dyn();
    npy(d, "x.npy", x.clone());
    npy(d, "x3.npy", ArrayD::zeros(IxDyn(&[3, 8, 3])));
    npy(d, "x2d.npy", ArrayD::zeros(IxDyn(&[3, 8])));
    npy(d, "x0.npy", ArrayD::zeros(IxDyn(&[0, 8, 2])));
    let mut xnan = x.clone();
    xnan[[1, 2, 0]] = f32::NAN;
    npy(d, "xnan.npy", xnan);
    let good = std::fs::read(d.join("x.npy")).unwrap();
    write(d, "xtrunc.npy", &good[..good.len() - 10]);
    let mut bad = good.clone();
    bad[0] = b'P';
    write(d, "xmagic.npy", bad);
    write(d, "zero.npy", "");
    let row = |v: &str| {
        let mut cells = vec!["0.5"; 16];
        cells[5] = v;
        cells.join(",")
    };
    write(d, "xbad.csv", format!("{}\n{}\n", row("0.1"), row("abc")));
    write(d, "xnan.csv", format!("{}\n", row("NaN")));
    write(d, "xcount.csv", "1,2,3\n");
}

fn cases() -> Vec<Case> {
    let train = |extra: &[&'static str]| {
        let mut v = vec![
            "train",
            "series",
            "--target",
            "temp",
            "--date-column",
            "date",
            "--window",
            "8",
            "--layers",
            "4",
            "--epochs",
            "1",
            "--quiet",
        ];
        v.extend_from_slice(extra);
        v
    };
    let text = |extra: &[&'static str]| {
        let mut v = vec![
            "train",
            "text",
            "--layers",
            "4",
            "--embedding",
            "2",
            "--seq-len",
            "8",
            "--batch-size",
            "4",
            "--epochs",
            "1",
            "--quiet",
        ];
        v.extend_from_slice(extra);
        v
    };
    let data = |d: &'static str| ["--data", d, "--out", "o.safetensors"];
    let mut v = vec![
        // train series
        case(
            "train series: non-numeric cell",
            &train(&data("nonnum.csv")),
            &["nonnum.csv", "line 5", "column 'temp'", "warm"],
        ),
        case(
            "train series: unknown --target",
            &train(&[
                "--data",
                "s.csv",
                "--out",
                "o.safetensors",
                "--target",
                "nope",
            ]),
            &["s.csv", "'nope'"],
        ),
        case(
            "train series: unknown --features",
            &train(&[
                "--data",
                "s.csv",
                "--out",
                "o.safetensors",
                "--features",
                "temp,wind",
            ]),
            &["s.csv", "'wind'"],
        ),
        case(
            "train series: 0-byte CSV",
            &train(&data("empty.csv")),
            &["empty.csv", "empty"],
        ),
        case(
            "train series: header-only CSV",
            &train(&data("hdr.csv")),
            &["hdr.csv", "no data rows"],
        ),
        case(
            "train series: binary garbage",
            &train(&data("garbage.bin")),
            &["garbage.bin", "UTF-8"],
        ),
        case(
            "train series: directory as data",
            &train(&data("adir")),
            &["adir", "directory"],
        ),
        case(
            "train series: missing data file",
            &train(&data("missing.csv")),
            &["missing.csv", "No such file"],
        ),
        case(
            "train series: NaN cell",
            &train(&data("nan.csv")),
            &["nan.csv", "line 7", "column 'temp'"],
        ),
        case(
            "train series: series shorter than window + horizon",
            &train(&data("short.csv")),
            &["short.csv", "fewer than window (8) + horizon (1)"],
        ),
        case(
            "train series: output into a missing folder",
            &train(&["--data", "s.csv", "--out", "nodir/o.safetensors"]),
            &["nodir/o.safetensors", "folder nodir does not exist"],
        ),
        case(
            "train series: output under a file",
            &train(&["--data", "s.csv", "--out", "s.csv/o.safetensors"]),
            &["s.csv/o.safetensors", "s.csv is not a folder"],
        ),
        case(
            "train series: output is a folder",
            &train(&["--data", "s.csv", "--out", "adir"]),
            &["adir", "is a folder"],
        ),
        case(
            "train series: checkpoint under a file",
            &train(&[
                "--data",
                "s.csv",
                "--out",
                "o.safetensors",
                "--checkpoint",
                "s.csv/ck.safetensors",
            ]),
            &["s.csv/ck.safetensors", "not a folder"],
        ),
        case(
            "train series: plot of an unknown type",
            &train(&[
                "--data",
                "s.csv",
                "--out",
                "o.safetensors",
                "--plot",
                "loss.gif",
            ]),
            &["loss.gif", ".gif", "svg, png"],
        ),
        case(
            "train series: plot into a missing folder",
            &train(&[
                "--data",
                "s.csv",
                "--out",
                "o.safetensors",
                "--plot",
                "nodir/loss.png",
            ]),
            &["nodir/loss.png", "does not exist"],
        ),
        case(
            "train series: resume from a truncated file",
            &train(&[
                "--data",
                "s.csv",
                "--out",
                "o.safetensors",
                "--resume",
                "trunc.safetensors",
            ]),
            &["trunc.safetensors", "truncated"],
        ),
        case(
            "train series: resume from a future version",
            &train(&[
                "--data",
                "s.csv",
                "--out",
                "o.safetensors",
                "--resume",
                "future.safetensors",
            ]),
            &["future.safetensors", "format_version 999"],
        ),
        case(
            "train series: resume from a model without training state",
            &train(&[
                "--data",
                "s.csv",
                "--out",
                "o.safetensors",
                "--resume",
                "m.safetensors",
            ]),
            &["m.safetensors", "without training state"],
        ),
        case(
            "train series: architecture file of garbage",
            &train(&[
                "--data",
                "s.csv",
                "--out",
                "o.safetensors",
                "--arch",
                "garbage.bin",
            ]),
            &["garbage.bin"],
        ),
        case(
            "train series: zero checkpoint interval",
            &train(&[
                "--data",
                "s.csv",
                "--out",
                "o.safetensors",
                "--checkpoint",
                "ck.safetensors",
                "--checkpoint-every",
                "0",
            ]),
            &["--checkpoint-every must be at least 1"],
        ),
        case(
            "train series: zero horizon",
            &train(&[
                "--data",
                "s.csv",
                "--out",
                "o.safetensors",
                "--horizon",
                "0",
            ]),
            &["horizon"],
        ),
        // train text
        case(
            "train text: empty text",
            &text(&data("empty.txt")),
            &["empty.txt", "empty"],
        ),
        case(
            "train text: binary garbage",
            &text(&data("garbage.bin")),
            &["garbage.bin", "UTF-8"],
        ),
        case(
            "train text: text shorter than one batch",
            &text(&data("short.txt")),
            &["short.txt", "too few"],
        ),
        case(
            "train text: directory",
            &text(&data("adir")),
            &["adir", "directory"],
        ),
        case(
            "train text: output into a missing folder",
            &text(&["--data", "t.txt", "--out", "nodir/o.safetensors"]),
            &["nodir/o.safetensors", "folder nodir does not exist"],
        ),
        case(
            "train text: resume from a series checkpoint",
            &text(&[
                "--data",
                "t.txt",
                "--out",
                "o.safetensors",
                "--resume",
                "m.safetensors",
            ]),
            &["m.safetensors"],
        ),
    ];
    // Model files that are not models, for every command that loads one.
    let bad_models: [(&'static str, &'static str, &'static str); 7] = [
        ("truncated model", "trunc.safetensors", "truncated"),
        (
            "model of a future version",
            "future.safetensors",
            "format_version 999",
        ),
        ("wrong magic", "magic.safetensors", "magic.safetensors"),
        ("0-byte model", "zero.safetensors", "zero.safetensors"),
        ("binary garbage model", "garbage.bin", "not a model file"),
        ("directory as model", "adir", "directory"),
        ("missing model", "missing.safetensors", "No such file"),
    ];
    for (what, file, needle) in bad_models {
        let w =
            |cmd: &str| -> &'static str { Box::leak(format!("{cmd}: {what}").into_boxed_str()) };
        v.push(case(w("summary"), &["summary", file], &[file, needle]));
        v.push(case(
            w("predict"),
            &[
                "predict", "--model", file, "--input", "x.npy", "--output", "y.npy",
            ],
            &[file, needle],
        ));
        v.push(case(
            w("evaluate"),
            &["evaluate", "--model", file, "--data", "s.csv"],
            &[file, needle],
        ));
        v.push(case(
            w("forecast"),
            &[
                "forecast", "--model", file, "--data", "s.csv", "--output", "fc.csv",
            ],
            &[file, needle],
        ));
        v.push(case(
            w("generate"),
            &["generate", "--model", file],
            &[file, needle],
        ));
        v.push(case(
            w("import"),
            &["import", "--model", file, "--output", "i.safetensors"],
            &[file, needle],
        ));
        v.push(case(
            w("export"),
            &["export", "--model", file, "--onnx", "o.onnx"],
            &[file, needle],
        ));
    }
    let predict = |input: &'static str, output: &'static str| {
        vec![
            "predict",
            "--model",
            "m.safetensors",
            "--input",
            input,
            "--output",
            output,
        ]
    };
    let evaluate = |d: &'static str| vec!["evaluate", "--model", "m.safetensors", "--data", d];
    let forecast = |d: &'static str| {
        vec![
            "forecast",
            "--model",
            "f.safetensors",
            "--data",
            d,
            "--output",
            "fc.csv",
            "--plot",
            "fc.png",
        ]
    };
    v.extend([
        // predict
        case(
            "predict: wrong feature count",
            &predict("x3.npy", "y.npy"),
            &["x3.npy", "[batch, 8, 2]", "[3, 8, 3]"],
        ),
        case(
            "predict: 2-D input",
            &predict("x2d.npy", "y.npy"),
            &["x2d.npy", "3-D"],
        ),
        case(
            "predict: no samples",
            &predict("x0.npy", "y.npy"),
            &["x0.npy", "no samples"],
        ),
        case(
            "predict: NaN in .npy",
            &predict("xnan.npy", "y.npy"),
            &["xnan.npy", "sample 1, timestep 2, feature 0", "NaN"],
        ),
        case(
            "predict: truncated .npy",
            &predict("xtrunc.npy", "y.npy"),
            &["xtrunc.npy", "truncated"],
        ),
        case(
            "predict: wrong .npy magic",
            &predict("xmagic.npy", "y.npy"),
            &["xmagic.npy", "magic"],
        ),
        case(
            "predict: 0-byte .npy",
            &predict("zero.npy", "y.npy"),
            &["zero.npy"],
        ),
        case(
            "predict: garbage input",
            &predict("garbage.bin", "y.npy"),
            &["garbage.bin"],
        ),
        case(
            "predict: directory input",
            &predict("adir", "y.npy"),
            &["adir", "directory"],
        ),
        case(
            "predict: non-numeric CSV value",
            &predict("xbad.csv", "y.csv"),
            &["xbad.csv", "line 2, value 6", "'abc'"],
        ),
        case(
            "predict: NaN CSV value",
            &predict("xnan.csv", "y.csv"),
            &["xnan.csv", "line 1, value 6", "'NaN'"],
        ),
        case(
            "predict: CSV row of the wrong length",
            &predict("xcount.csv", "y.csv"),
            &["xcount.csv", "line 1", "expected 16 values"],
        ),
        case(
            "predict: empty CSV",
            &predict("empty.csv", "y.csv"),
            &["empty.csv", "no samples"],
        ),
        case(
            "predict: output into a missing folder",
            &predict("x.npy", "nodir/y.npy"),
            &["nodir/y.npy", "folder nodir does not exist"],
        ),
        case(
            "predict: output under a file",
            &predict("x.npy", "s.csv/y.npy"),
            &["s.csv/y.npy", "s.csv is not a folder"],
        ),
        case(
            "predict: output is a folder",
            &predict("x.npy", "adir"),
            &["adir", "is a folder"],
        ),
        // evaluate
        case(
            "evaluate: non-numeric cell",
            &evaluate("nonnum.csv"),
            &["nonnum.csv", "line 5", "column 'temp'"],
        ),
        case(
            "evaluate: NaN cell",
            &evaluate("nan.csv"),
            &["nan.csv", "line 7", "column 'temp'"],
        ),
        case(
            "evaluate: missing column",
            &evaluate("noload.csv"),
            &["noload.csv", "'load'"],
        ),
        case(
            "evaluate: series shorter than the window",
            &evaluate("short.csv"),
            &["short.csv", "window"],
        ),
        case(
            "evaluate: 0-byte CSV",
            &evaluate("empty.csv"),
            &["empty.csv", "empty"],
        ),
        case(
            "evaluate: header-only CSV",
            &evaluate("hdr.csv"),
            &["hdr.csv", "no data rows"],
        ),
        case(
            "evaluate: binary garbage",
            &evaluate("garbage.bin"),
            &["garbage.bin", "UTF-8"],
        ),
        case(
            "evaluate: directory",
            &evaluate("adir"),
            &["adir", "directory"],
        ),
        case(
            "evaluate: empty text",
            &[
                "evaluate",
                "--model",
                "lm.safetensors",
                "--data",
                "empty.txt",
            ],
            &["empty.txt", "empty"],
        ),
        case(
            "evaluate: text too short",
            &[
                "evaluate",
                "--model",
                "lm.safetensors",
                "--data",
                "short.txt",
            ],
            &["short.txt"],
        ),
        case(
            "evaluate: text out of the vocabulary",
            &["evaluate", "--model", "lm.safetensors", "--data", "s.csv"],
            &["s.csv", "not in the vocabulary"],
        ),
        case(
            "evaluate: model without preprocessing",
            &["evaluate", "--model", "i0.safetensors", "--data", "s.csv"],
            &["i0.safetensors", "no preprocessing"],
        ),
        // forecast
        case(
            "forecast: non-numeric cell",
            &forecast("nonnum.csv"),
            &["nonnum.csv", "line 5", "column 'temp'"],
        ),
        case(
            "forecast: NaN cell",
            &forecast("nan.csv"),
            &["nan.csv", "line 7", "column 'temp'"],
        ),
        case(
            "forecast: series shorter than the window",
            &forecast("short.csv"),
            &["short.csv", "at least 8 rows"],
        ),
        case(
            "forecast: header-only CSV",
            &forecast("hdr.csv"),
            &["hdr.csv", "no data rows"],
        ),
        case(
            "forecast: 0-byte CSV",
            &forecast("empty.csv"),
            &["empty.csv", "empty"],
        ),
        case(
            "forecast: language model",
            &["forecast", "--model", "lm.safetensors", "--data", "s.csv"],
            &["language model"],
        ),
        case(
            "forecast: zero steps",
            &[
                "forecast",
                "--model",
                "f.safetensors",
                "--data",
                "s.csv",
                "--steps",
                "0",
            ],
            &["--steps"],
        ),
        case(
            "forecast: output under a file",
            &[
                "forecast",
                "--model",
                "f.safetensors",
                "--data",
                "s.csv",
                "--output",
                "s.csv/fc.csv",
            ],
            &["s.csv/fc.csv", "not a folder"],
        ),
        case(
            "forecast: plot of an unknown type",
            &[
                "forecast",
                "--model",
                "f.safetensors",
                "--data",
                "s.csv",
                "--output",
                "fc.csv",
                "--plot",
                "fc.jpg",
            ],
            &["fc.jpg", "svg, png"],
        ),
        case(
            "forecast: plot into a missing folder",
            &[
                "forecast",
                "--model",
                "f.safetensors",
                "--data",
                "s.csv",
                "--output",
                "fc.csv",
                "--plot",
                "nodir/fc.svg",
            ],
            &["nodir/fc.svg", "does not exist"],
        ),
        // generate
        case(
            "generate: series model",
            &["generate", "--model", "m.safetensors"],
            &["m.safetensors", "time-series model"],
        ),
        case(
            "generate: prompt out of the vocabulary",
            &["generate", "--model", "lm.safetensors", "--prompt", "Zebra"],
            &["'Z'", "not in the vocabulary"],
        ),
        // import / export / demo outputs
        case(
            "import: output into a missing folder",
            &[
                "import",
                "--model",
                "m.safetensors",
                "--output",
                "nodir/i.safetensors",
            ],
            &["nodir/i.safetensors", "does not exist"],
        ),
        case(
            "import: output under a file",
            &[
                "import",
                "--model",
                "m.safetensors",
                "--output",
                "s.csv/i.safetensors",
            ],
            &["s.csv/i.safetensors", "not a folder"],
        ),
        case(
            "export: output under a file",
            &[
                "export",
                "--model",
                "m.safetensors",
                "--onnx",
                "s.csv/o.onnx",
            ],
            &["s.csv/o.onnx", "not a folder"],
        ),
        case(
            "export: output into a missing folder",
            &[
                "export",
                "--model",
                "m.safetensors",
                "--onnx",
                "nodir/o.onnx",
            ],
            &["nodir/o.onnx", "does not exist"],
        ),
        case(
            "demo: output folder under a file",
            &[
                "demo",
                "--epochs",
                "1",
                "--quiet",
                "--out-dir",
                "s.csv/demo",
            ],
            &["s.csv/demo"],
        ),
    ]);
    v
}

/// What is wrong with one case's run, if anything.
fn check(d: &Path, c: &Case) -> Option<String> {
    let before = listing(d);
    let out = run_in(d, &c.args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let mut problems = Vec::new();
    if out.status.code() != Some(1) {
        problems.push(format!("exit code {:?}, expected 1", out.status.code()));
    }
    let lines: Vec<&str> = err.trim_end().lines().collect();
    if lines.len() != 1 || !lines[0].starts_with("error: ") {
        problems.push("stderr is not one 'error: ' line".to_string());
    }
    for bad in ["panicked", "backtrace", "RUST_BACKTRACE", ".tmp."] {
        if err.contains(bad) {
            problems.push(format!("stderr mentions '{bad}'"));
        }
    }
    for n in &c.needles {
        if !err.contains(n) {
            problems.push(format!("no '{n}'"));
        }
    }
    let after = listing(d);
    if after != before {
        let new: Vec<&String> = after.iter().filter(|n| !before.contains(n)).collect();
        problems.push(format!("files left behind: {new:?}"));
    }
    (!problems.is_empty()).then(|| {
        format!(
            "{}: {}\n    stacklstm {}\n    stderr: {}",
            c.what,
            problems.join("; "),
            c.args.join(" "),
            err.trim_end()
        )
    })
}

#[test]
fn every_bad_input_fails_with_one_clear_line_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fixtures(d);
    // A model without preprocessing: the series model through the library's save.
    let m = stacklstm::Model::load(d.join("m.safetensors")).unwrap();
    m.save(d.join("i0.safetensors")).unwrap();
    let cases = cases();
    let failures: Vec<String> = cases.iter().filter_map(|c| check(d, c)).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
