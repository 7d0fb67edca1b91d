//! The real `stacklstm` binary on the GRU fixtures (`$STACKLSTM_FIXTURES_RNN`, else
//! `shared/fixtures-rnn` above the crate): `predict` from every GRU case's `.keras` and
//! `.weights.h5` files and from the PyTorch `torch.safetensors` files (architecture inferred,
//! and given with `--arch`), `predict` from the bidirectional PyTorch files, and `export` to
//! ONNX.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ndarray::{ArrayD, Axis};
use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stacklstm"))
}

fn rnn_fixtures_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("STACKLSTM_FIXTURES_RNN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    root.ancestors()
        .map(|a| a.join("shared/fixtures-rnn"))
        .find(|p| p.is_dir())
        .unwrap_or_else(|| root.join("../../../shared/fixtures-rnn"))
}

fn case_json(case: &Path) -> Value {
    let text = std::fs::read_to_string(case.join("case.json"))
        .unwrap_or_else(|e| panic!("{}: {e}", case.display()));
    serde_json::from_str(&text).expect("case.json")
}

/// The cases built of GRU and Dense layers only, sorted; fails when there is none.
fn gru_cases() -> Vec<PathBuf> {
    let dir = rnn_fixtures_dir();
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("case.json").is_file())
        .filter(|p| {
            let layers = case_json(p)["model"]["layers"].clone();
            let layers = layers.as_array().cloned().unwrap_or_default();
            layers.iter().any(|l| l["type"] == "gru")
                && layers
                    .iter()
                    .all(|l| matches!(l["type"].as_str(), Some("gru" | "dense")))
        })
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no GRU fixture under {}", dir.display());
    v
}

fn name_of(case: &Path) -> String {
    case.file_name().unwrap().to_string_lossy().into_owned()
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run stacklstm")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Exit code 1 and one clear line on stderr, no panic.
fn fails(out: &Output, needle: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(needle), "expected '{needle}' in: {err}");
    err
}

fn npy(p: &Path) -> ArrayD<f32> {
    stacklstm::data::read_npy(p).unwrap_or_else(|e| panic!("{e}"))
}

fn max_diff(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// `stacklstm predict` of `case`'s `x.npy` through `model` (with `arch`), read back.
fn predict(case: &Path, model: &Path, arch: Option<&Path>, out: &Path) -> ArrayD<f32> {
    let mut cmd = bin();
    cmd.arg("predict").arg("--model").arg(model);
    if let Some(a) = arch {
        cmd.arg("--arch").arg(a);
    }
    cmd.arg("--input")
        .arg(case.join("x.npy"))
        .arg("--output")
        .arg(out);
    ok(&run(&mut cmd));
    npy(out)
}

/// Writes the fixture's `model` object, as it is, as an architecture file.
fn model_object_arch(case: &Path, tmp: &Path) -> PathBuf {
    let p = tmp.join(format!("{}.model.json", name_of(case)));
    std::fs::write(&p, case_json(case)["model"].to_string()).unwrap();
    p
}

#[test]
fn predict_reproduces_gru_fixtures_from_keras_and_torch_files() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("y.npy");
    let mut ran = Vec::new();
    let mut torch = Vec::new();
    let mut worst = 0.0f32;
    for case in gru_cases() {
        let name = name_of(&case);
        let y = npy(&case.join("y.npy"));
        let model_arch = model_object_arch(&case, tmp.path());
        let keras = case.join("model.keras");
        let mut runs: Vec<(PathBuf, Option<PathBuf>)> = vec![
            (keras.clone(), None),
            (case.join("model.weights.h5"), Some(keras.clone())),
            (case.join("model.weights.h5"), Some(model_arch.clone())),
        ];
        let torch_file = case.join("torch.safetensors");
        if torch_file.is_file() {
            // The state_dict says the architecture of these cases (GRUs returning sequences
            // but the last, a linear head); an explicit one must give the same.
            runs.push((torch_file.clone(), None));
            runs.push((torch_file.clone(), Some(model_arch.clone())));
            runs.push((torch_file, Some(keras)));
            torch.push(name.clone());
        }
        for (model, arch) in runs {
            let got = predict(&case, &model, arch.as_deref(), &out);
            let d = max_diff(&got, &y);
            assert!(
                d <= 1e-5,
                "{name}: {} (arch {arch:?}): max abs diff {d:e}",
                model.display()
            );
            worst = worst.max(d);
        }
        ran.push(name);
    }
    for must in ["gru_basic", "gru_stack", "gru_reset_before"] {
        assert!(ran.iter().any(|r| r == must), "{must} not run: {ran:?}");
    }
    for must in ["gru_basic", "gru_stack"] {
        assert!(torch.iter().any(|r| r == must), "{must}: no torch run");
    }
    eprintln!("CLI predict over the GRU fixture files: max abs diff {worst:e}");
}

/// What a state_dict cannot say comes from `--arch`: a last GRU returning sequences (its last
/// step is the fixture's output) and a Dense activation (applied to the fixture's output).
#[test]
fn torch_gru_files_take_what_the_state_dict_cannot_say_from_arch() {
    let tmp = tempfile::tempdir().unwrap();
    let case = rnn_fixtures_dir().join("gru_stack");
    let y = npy(&case.join("y.npy"));
    let file = case.join("torch.safetensors");

    let mut spec = case_json(&case)["model"].clone();
    spec["layers"][1]["return_sequences"] = true.into();
    let seq_arch = tmp.path().join("seq.json");
    std::fs::write(&seq_arch, spec.to_string()).unwrap();
    let got = predict(&case, &file, Some(&seq_arch), &tmp.path().join("seq.npy"));
    assert_eq!(got.ndim(), 3, "{:?}", got.shape());
    let t = got.shape()[1];
    let last = got.index_axis(Axis(1), t - 1).to_owned().into_dyn();
    assert!(max_diff(&last, &y) <= 1e-5);

    let mut spec = case_json(&case)["model"].clone();
    spec["layers"][2]["activation"] = "tanh".into();
    let tanh_arch = tmp.path().join("tanh.json");
    std::fs::write(&tanh_arch, spec.to_string()).unwrap();
    let got = predict(&case, &file, Some(&tanh_arch), &tmp.path().join("tanh.npy"));
    assert!(max_diff(&got, &y.mapv(f32::tanh)) <= 1e-5);

    // An architecture asking for Keras' reset-before GRU is refused, naming the layer.
    let mut spec = case_json(&case)["model"].clone();
    spec["layers"][0]["reset_after"] = false.into();
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, spec.to_string()).unwrap();
    let out = tmp.path().join("never.npy");
    fails(
        &run(bin()
            .args(["predict", "--model"])
            .arg(&file)
            .arg("--arch")
            .arg(&bad)
            .arg("--input")
            .arg(case.join("x.npy"))
            .arg("--output")
            .arg(&out)),
        "reset_after false",
    );
    assert!(!out.exists());
}

/// The bidirectional PyTorch files (`nn.LSTM` / `nn.GRU` with `bidirectional=True`)
/// reproduce their fixture's `y.npy` with `--arch` (the fixture's `model` object).
/// `bilstm_concat_stack`'s state_dict also says its architecture (concat, the last layer's
/// `h_n` into a linear head); `bigru_sum`'s does not (a `sum` merge into a per-timestep
/// head), and without `--arch` that is a one-line error asking for it and naming the merge.
#[test]
fn predict_reproduces_bidirectional_fixtures_from_torch_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = rnn_fixtures_dir();
    for (name, inferred) in [("bilstm_concat_stack", true), ("bigru_sum", false)] {
        let case = dir.join(name);
        let file = case.join("torch.safetensors");
        assert!(file.is_file(), "{}: no torch.safetensors", case.display());
        let y = npy(&case.join("y.npy"));
        let arch = model_object_arch(&case, tmp.path());
        let out = tmp.path().join(format!("{name}.npy"));
        let got = predict(&case, &file, Some(&arch), &out);
        let d = max_diff(&got, &y);
        assert!(d <= 1e-5, "{name} (--arch): max abs diff {d:e}");
        if inferred {
            let got = predict(&case, &file, None, &out);
            let d = max_diff(&got, &y);
            assert!(d <= 1e-5, "{name} (inferred): max abs diff {d:e}");
        } else {
            let never = tmp.path().join(format!("{name}.never.npy"));
            let err = fails(
                &run(bin()
                    .args(["predict", "--model"])
                    .arg(&file)
                    .arg("--input")
                    .arg(case.join("x.npy"))
                    .arg("--output")
                    .arg(&never)),
                "--arch",
            );
            assert!(err.contains("a sum, mul or ave merge"), "{err}");
            assert!(!never.exists());
        }
    }
}

/// `export` writes what the library exports for the same model, for GRU models read from
/// Keras and PyTorch files (the library's export is checked in onnxruntime against the
/// fixtures).
#[test]
fn export_writes_gru_models_to_onnx() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = gru_cases().iter().map(|c| c.join("model.keras")).collect();
    files.push(rnn_fixtures_dir().join("gru_stack/torch.safetensors"));
    for file in files {
        let onnx = tmp.path().join("m.onnx");
        let s = ok(&run(bin()
            .args(["export", "--model"])
            .arg(&file)
            .arg("--onnx")
            .arg(&onnx)));
        assert!(s.contains("opset"), "{s}");
        let model = stacklstm::load_model(&file, None).unwrap().model;
        let bytes = std::fs::read(&onnx).unwrap();
        assert_eq!(
            bytes,
            stacklstm::io::onnx::export_model(&model).unwrap(),
            "{}",
            file.display()
        );
        assert!(
            bytes.windows(3).any(|w| w == b"GRU"),
            "{}: no GRU operator",
            file.display()
        );
    }
}
