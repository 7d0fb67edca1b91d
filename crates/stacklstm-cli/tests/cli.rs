//! The real `stacklstm` binary in a temp dir: every fixture through every model file, import,
//! export, summary, and the error paths (exit code and message).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ndarray::{ArrayD, IxDyn};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stacklstm"))
}

fn fixtures_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("STACKLSTM_FIXTURES") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    root.ancestors()
        .map(|a| a.join("shared/fixtures"))
        .find(|p| p.is_dir())
        .unwrap_or_else(|| root.join("../../../shared/fixtures"))
}

fn cases() -> Vec<PathBuf> {
    let dir = fixtures_dir();
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.keras").is_file())
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no fixture under {}", dir.display());
    v
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

fn max_diff(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn npy(p: &Path) -> ArrayD<f32> {
    stacklstm::data::read_npy(p).unwrap_or_else(|e| panic!("{e}"))
}

/// The architecture of a case (JSON spec) for weight-only files.
fn arch_of(case: &Path, tmp: &Path) -> PathBuf {
    let m = stacklstm::load_model(case.join("model.keras"), None).expect("load");
    let p = tmp.join(format!(
        "{}.arch.json",
        case.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&p, serde_json::to_string(m.model.spec()).unwrap()).unwrap();
    p
}

#[test]
fn predict_reproduces_every_fixture_from_every_file() {
    let tmp = tempfile::tempdir().unwrap();
    let mut worst = 0.0f32;
    for case in cases() {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let y = npy(&case.join("y.npy"));
        let arch = arch_of(&case, tmp.path());
        let mut runs: Vec<(PathBuf, Option<PathBuf>)> = vec![
            (case.join("model.keras"), None),
            (case.join("model.weights.h5"), Some(arch.clone())),
        ];
        if case.join("torch.safetensors").is_file() {
            runs.push((case.join("torch.safetensors"), Some(arch.clone())));
        }
        // The native file made by `import`.
        let native = tmp.path().join(format!("{name}.safetensors"));
        ok(&run(bin()
            .arg("import")
            .arg("--model")
            .arg(case.join("model.keras"))
            .arg("--output")
            .arg(&native)));
        runs.push((native, None));
        for (model, arch) in runs {
            let out = tmp.path().join("out.npy");
            let mut cmd = bin();
            cmd.arg("predict").arg("--model").arg(&model);
            if let Some(a) = &arch {
                cmd.arg("--arch").arg(a);
            }
            cmd.arg("--input")
                .arg(case.join("x.npy"))
                .arg("--output")
                .arg(&out);
            ok(&run(&mut cmd));
            let d = max_diff(&npy(&out), &y);
            assert!(d <= 1e-5, "{}: {d:e}", model.display());
            worst = worst.max(d);
        }
    }
    eprintln!("CLI predict over all fixture files: max abs diff {worst:e}");
}

#[test]
fn torch_files_predict_without_arch_when_inferable() {
    let tmp = tempfile::tempdir().unwrap();
    let case = fixtures_dir().join("seed_stack4");
    let out = tmp.path().join("y.npy");
    ok(&run(bin()
        .args(["predict", "--model"])
        .arg(case.join("torch.safetensors"))
        .arg("--input")
        .arg(case.join("x.npy"))
        .arg("--output")
        .arg(&out)));
    assert!(max_diff(&npy(&out), &npy(&case.join("y.npy"))) <= 1e-5);
}

#[test]
fn summary_import_export_and_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let case = fixtures_dir().join("seed_stack2");
    let s = ok(&run(bin().arg("summary").arg(case.join("model.keras"))));
    assert!(
        s.contains("lstm_1 (LSTM)") && s.contains("Total params: 196"),
        "{s}"
    );
    assert!(s.contains("Keras 3"), "{s}");

    let native = tmp.path().join("m.safetensors");
    let s = ok(&run(bin()
        .args(["import", "--model"])
        .arg(case.join("model.keras"))
        .arg("--output")
        .arg(&native)));
    assert!(s.contains("196 parameters"), "{s}");
    let s = ok(&run(bin().arg("summary").arg(&native)));
    assert!(s.contains("stacklstm"), "{s}");

    let onnx = tmp.path().join("m.onnx");
    let s = ok(&run(bin()
        .args(["export", "--model"])
        .arg(&native)
        .arg("--onnx")
        .arg(&onnx)));
    assert!(s.contains("opset"), "{s}");
    let model = stacklstm::load_model(&native, None).unwrap().model;
    assert_eq!(
        std::fs::read(&onnx).unwrap(),
        stacklstm::io::onnx::export_model(&model).unwrap()
    );

    // CSV in and out: one flattened sample per row.
    let x = npy(&case.join("x.npy"));
    let rows: Vec<String> = x
        .outer_iter()
        .map(|s| {
            s.iter()
                .map(|v| format!("{v:?}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    let xin = tmp.path().join("x.csv");
    std::fs::write(&xin, rows.join("\n")).unwrap();
    let yout = tmp.path().join("y.csv");
    ok(&run(bin()
        .args(["predict", "--model"])
        .arg(&native)
        .arg("--input")
        .arg(&xin)
        .arg("--output")
        .arg(&yout)));
    let text = std::fs::read_to_string(&yout).unwrap();
    let vals: Vec<f32> = text
        .split([',', '\n'])
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let y = npy(&case.join("y.npy"));
    let got = ArrayD::from_shape_vec(IxDyn(y.shape()), vals).unwrap();
    assert!(max_diff(&got, &y) <= 1e-5);
}

#[test]
fn error_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let case = fixtures_dir().join("seed_stack2");
    let x = case.join("x.npy");
    let keras = case.join("model.keras");
    let predict = |model: &Path, input: &Path, output: &Path| {
        run(bin()
            .args(["predict", "--model"])
            .arg(model)
            .arg("--input")
            .arg(input)
            .arg("--output")
            .arg(output))
    };

    // Missing model file.
    fails(
        &predict(&t.join("nope.keras"), &x, &t.join("o.npy")),
        "nope.keras",
    );
    // Garbage model file.
    let garbage = t.join("garbage.keras");
    std::fs::write(&garbage, b"definitely not a model").unwrap();
    fails(&predict(&garbage, &x, &t.join("o.npy")), "not a model file");
    // Truncated .keras.
    let bytes = std::fs::read(&keras).unwrap();
    let trunc = t.join("trunc.keras");
    std::fs::write(&trunc, &bytes[..bytes.len() / 2]).unwrap();
    fails(&predict(&trunc, &x, &t.join("o.npy")), "trunc.keras");
    // Weights without architecture.
    fails(
        &predict(&case.join("model.weights.h5"), &x, &t.join("o.npy")),
        "--arch",
    );
    // Missing input.
    fails(
        &predict(&keras, &t.join("missing.npy"), &t.join("o.npy")),
        "missing.npy",
    );
    // Wrong input shape: seq_labeling's input has 5 features, this model takes 1.
    let other = fixtures_dir().join("seq_labeling").join("x.npy");
    fails(&predict(&keras, &other, &t.join("o.npy")), "expected shape");
    // Input of the wrong rank.
    let flat = t.join("flat.npy");
    stacklstm::data::write_npy(&flat, &ndarray::Array2::<f32>::zeros((2, 3))).unwrap();
    fails(&predict(&keras, &flat, &t.join("o.npy")), "3-D");
    // Unwritable output (its folder does not exist); nothing is left behind.
    fails(&predict(&keras, &x, &t.join("no/such/dir/o.npy")), "o.npy");
    // Bad architecture file.
    let arch = t.join("arch.json");
    std::fs::write(&arch, "{ not json").unwrap();
    fails(
        &run(bin()
            .args(["summary", "--arch"])
            .arg(&arch)
            .arg(case.join("model.weights.h5"))),
        "arch.json",
    );
    // Export to an unwritable place.
    fails(
        &run(bin()
            .args(["export", "--model"])
            .arg(&keras)
            .arg("--onnx")
            .arg(t.join("no/dir/m.onnx"))),
        "m.onnx",
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = run(bin().arg("predict"));
    assert_eq!(out.status.code(), Some(2));
    let out = run(bin().arg("frobnicate"));
    assert_eq!(out.status.code(), Some(2));
    let out = run(bin().arg("--help"));
    assert_eq!(out.status.code(), Some(0));
}
