//! The real `stacklstm` binary on every case of the recurrent-family fixtures
//! (`$STACKLSTM_FIXTURES_RNN`, else `shared/fixtures-rnn` above the crate): `predict` from
//! each case's `model.keras` reproduces its `y.npy` — GRU, Bidirectional, and the masked
//! cases, whose padded inputs (`Masking`) and `[batch, timesteps]` token ids
//! (`Embedding(mask_zero)`) go in as Keras takes them — and `export` writes every masked
//! model to ONNX.

mod common;

use std::path::{Path, PathBuf};

use common::{bin, ok};

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

#[test]
fn predict_reproduces_every_rnn_fixture_from_its_keras_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = rnn_fixtures_dir();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.keras").is_file())
        .collect();
    cases.sort();
    let mut ran = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let out = tmp.path().join(format!("{name}.npy"));
        ok(&bin()
            .arg("predict")
            .arg("--model")
            .arg(case.join("model.keras"))
            .arg("--input")
            .arg(case.join("x.npy"))
            .arg("--output")
            .arg(&out)
            .output()
            .unwrap());
        let got = stacklstm::data::read_npy(&out).unwrap();
        let want = stacklstm::data::read_npy(case.join("y.npy")).unwrap();
        assert_eq!(got.shape(), want.shape(), "{name}");
        let d = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(d <= 1e-5, "{name}: max abs diff {d:e}");
        ran.push(name);
    }
    for must in [
        "masking_lstm_stack",
        "masking_seq_labeling",
        "bilstm_masking",
        "embedding_mask_zero",
        "bilstm_concat_stack",
        "bigru_sum",
    ] {
        assert!(ran.iter().any(|r| r == must), "{must} not run: {ran:?}");
    }
    // A masked model exports (its mask computed in the graph).
    let onnx = tmp.path().join("m.onnx");
    ok(&bin()
        .arg("export")
        .arg("--model")
        .arg(dir.join("bilstm_masking/model.keras"))
        .arg("--onnx")
        .arg(&onnx)
        .output()
        .unwrap());
    assert!(std::fs::metadata(&onnx).unwrap().len() > 0);
}

/// `train arrays` on padded variable-length sequences: the model masks the padding value,
/// so a sequence gives the same prediction padded on the left or on the right, and
/// class-id targets train a classifier; malformed arrays are one-line errors.
#[test]
fn train_arrays_masks_padded_sequences_wherever_the_padding_is() {
    use ndarray::{Array1, Array3};
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (n, t) = (120, 8);
    let mut x = Array3::<f32>::zeros((n, t, 2));
    let mut y = Array1::<f32>::zeros(n);
    let mut c = Array1::<f32>::zeros(n);
    for i in 0..n {
        let len = 2 + i % (t - 1);
        let left = i % 2 == 0;
        for k in 0..len {
            let s = if left { t - len + k } else { k };
            x[[i, s, 0]] = 0.1 + ((i * 7 + k * 3) % 10) as f32 / 10.0;
            x[[i, s, 1]] = 1.0;
        }
        y[i] = len as f32 / 4.0;
        c[i] = f32::from(u8::from(len > 4));
    }
    let save = |name: &str, a: ndarray::ArrayD<f32>| {
        stacklstm::data::write_npy(d.join(name), &a).unwrap();
    };
    save("x.npy", x.clone().into_dyn());
    save("y.npy", y.into_dyn());
    save("c.npy", c.into_dyn());
    let run = |args: &[&str]| bin().current_dir(d).args(args).output().unwrap();
    let base = [
        "train",
        "arrays",
        "--x",
        "x.npy",
        "--mask-value",
        "0",
        "--layers",
        "6",
    ];
    let mut args = base.to_vec();
    args.extend(["--y", "y.npy", "--epochs", "3", "--out", "m.safetensors"]);
    let out = run(&args);
    ok(&out);
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(summary.contains("masking (Masking)"), "{summary}");
    assert!(
        summary.contains("120 samples of 8 steps: 108 training, 12 validation"),
        "{summary}"
    );
    // One sequence, padded on the right and on the left: the same prediction.
    let real = [[0.3f32, 1.0], [0.7, 1.0], [0.2, 1.0]];
    let mut two = Array3::<f32>::zeros((2, t, 2));
    for (k, v) in real.iter().enumerate() {
        two[[0, k, 0]] = v[0];
        two[[0, k, 1]] = v[1];
        two[[1, t - 3 + k, 0]] = v[0];
        two[[1, t - 3 + k, 1]] = v[1];
    }
    save("two.npy", two.into_dyn());
    ok(&run(&[
        "predict",
        "--model",
        "m.safetensors",
        "--input",
        "two.npy",
        "--output",
        "p.npy",
    ]));
    let p = stacklstm::data::read_npy(d.join("p.npy")).unwrap();
    assert_eq!(p.shape(), &[2, 1]);
    assert!((p[[0, 0]] - p[[1, 0]]).abs() < 1e-6, "{p}");
    // Class ids: a bidirectional classifier.
    let mut args = base.to_vec();
    args.extend([
        "--y",
        "c.npy",
        "--loss",
        "sparse-ce",
        "--bidirectional",
        "--epochs",
        "2",
        "--quiet",
        "--json",
        "--out",
        "c.safetensors",
    ]);
    let v: serde_json::Value = serde_json::from_str(&ok(&run(&args))).unwrap();
    assert_eq!(v["network"], "stacked Bidirectional(LSTM)");
    assert!(v["masked_steps"].as_u64().unwrap() > 0);
    // Malformed targets: one clear line each.
    save("short.npy", ndarray::Array1::<f32>::zeros(7).into_dyn());
    save(
        "frac.npy",
        ndarray::Array1::<f32>::from_elem(n, 0.5).into_dyn(),
    );
    let mut xnan = x.clone();
    xnan[[5, 1, 0]] = f32::NAN;
    save("xnan.npy", xnan.into_dyn());
    for (xf, y, loss, needle) in [
        (
            "x.npy",
            "short.npy",
            "mse",
            "short.npy has 7 samples but x.npy has 120",
        ),
        ("x.npy", "frac.npy", "sparse-ce", "is not a class id"),
        (
            "xnan.npy",
            "y.npy",
            "mse",
            "xnan.npy: sample 5, timestep 1, feature 0 (0-based) is NaN",
        ),
        ("nope.npy", "y.npy", "mse", "nope.npy"),
    ] {
        let mut args = base.to_vec();
        args[3] = xf;
        args.extend(["--y", y, "--loss", loss, "--out", "bad.safetensors"]);
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(needle) && err.lines().count() == 1, "{err}");
        assert!(!d.join("bad.safetensors").exists());
    }
}
