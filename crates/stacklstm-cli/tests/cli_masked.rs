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
