//! Reads every fixture case's `model.keras` and `model.weights.h5` and compares them with
//! `case.json`.

mod common;

use std::path::{Path, PathBuf};

use serde_json::Value;
use stacklstm::io::keras::{read_keras_file, read_weights_h5, KerasWeights, Tensor};
use stacklstm::LayerSpec;

fn fixtures_dir() -> PathBuf {
    common::fixtures_dir()
}

fn case_dirs() -> Vec<PathBuf> {
    let dir = fixtures_dir();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read fixtures dir {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("case.json").is_file())
        .collect();
    cases.sort();
    assert!(
        !cases.is_empty(),
        "no fixture case found in {}",
        dir.display()
    );
    cases
}

fn json_tensor(v: &Value) -> Tensor {
    let shape = v["shape"]
        .as_array()
        .expect("shape")
        .iter()
        .map(|d| d.as_u64().expect("dim") as usize)
        .collect();
    let data = v["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect();
    Tensor { shape, data }
}

/// The expected variables of each layer, in model order, from case.json.
fn expected_weights(case: &Value) -> Vec<Vec<Tensor>> {
    case["weights"]
        .as_array()
        .expect("weights")
        .iter()
        .map(|w| {
            ["kernel", "recurrent_kernel", "bias"]
                .iter()
                .filter_map(|k| w.get(*k).map(json_tensor))
                .collect()
        })
        .collect()
}

fn assert_bit_exact(case: &str, what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.shape, want.shape, "{case}: {what}: shape");
    assert_eq!(got.data.len(), want.data.len(), "{case}: {what}: length");
    for (i, (a, b)) in got.data.iter().zip(&want.data).enumerate() {
        assert_eq!(
            a.to_bits(),
            b.to_bits(),
            "{case}: {what}: element {i}: {a} != {b}"
        );
    }
}

fn check_weights(
    case: &str,
    file: &str,
    got: &KerasWeights,
    names: &[String],
    want: &[Vec<Tensor>],
) {
    for (name, want_vars) in names.iter().zip(want) {
        let vars = got
            .get(name)
            .unwrap_or_else(|| panic!("{case}: {file}: no weights for layer {name}"));
        assert_eq!(
            vars.len(),
            want_vars.len(),
            "{case}: {file}: {name}: variable count"
        );
        for (i, (g, w)) in vars.iter().zip(want_vars).enumerate() {
            assert_bit_exact(case, &format!("{file}: {name} var {i}"), g, w);
        }
    }
    let with_vars = got.layers.iter().filter(|(_, v)| !v.is_empty()).count();
    assert_eq!(
        with_vars,
        names.len(),
        "{case}: {file}: number of layers with weights"
    );
}

fn check_case(dir: &Path) {
    let case_name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("?")
        .to_string();
    let case: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).expect("case.json"))
            .expect("json");
    let (model, weights) = read_keras_file(&dir.join("model.keras"))
        .unwrap_or_else(|e| panic!("{case_name}: model.keras: {e}"));

    // Model structure.
    assert_eq!(model.name, case_name);
    let ishape = case["model"]["input_shape"]
        .as_array()
        .expect("input_shape");
    assert_eq!(
        model.input_shape.0,
        ishape[0].as_u64().map(|t| t as usize),
        "{case_name}: timesteps"
    );
    assert_eq!(
        model.input_shape.1,
        ishape[1].as_u64().expect("F") as usize,
        "{case_name}: features"
    );
    let want_layers = case["model"]["layers"].as_array().expect("layers");
    assert_eq!(
        model.layers.len(),
        want_layers.len(),
        "{case_name}: layer count"
    );
    for (got, want) in model.layers.iter().zip(want_layers) {
        let s = |k: &str| want[k].as_str().expect(k).to_string();
        let b = |k: &str| want[k].as_bool().expect(k);
        let units = want["units"].as_u64().expect("units") as usize;
        match (want["type"].as_str().expect("type"), got) {
            ("lstm", LayerSpec::Lstm(l)) => {
                assert_eq!(l.units, units, "{case_name}: units");
                assert_eq!(
                    l.return_sequences,
                    b("return_sequences"),
                    "{case_name}: return_sequences"
                );
                assert_eq!(
                    l.activation.name(),
                    s("activation"),
                    "{case_name}: activation"
                );
                assert_eq!(
                    l.recurrent_activation.name(),
                    s("recurrent_activation"),
                    "{case_name}: recurrent_activation"
                );
                assert_eq!(l.use_bias, b("use_bias"), "{case_name}: use_bias");
                assert_eq!(
                    l.unit_forget_bias,
                    b("unit_forget_bias"),
                    "{case_name}: unit_forget_bias"
                );
            }
            ("dense", LayerSpec::Dense(d)) => {
                assert_eq!(d.units, units, "{case_name}: dense units");
                assert_eq!(
                    d.activation.name(),
                    s("activation"),
                    "{case_name}: dense activation"
                );
                if let Some(ub) = want.get("use_bias").and_then(Value::as_bool) {
                    assert_eq!(d.use_bias, ub);
                }
            }
            (t, g) => panic!("{case_name}: layer type {t} read as {g:?}"),
        }
    }
    assert_eq!(
        model.keras_version.as_deref().map(|v| v.starts_with("3.")),
        Some(true)
    );

    // Weights: from the .keras file (model order) and from the .weights.h5 file (by name).
    let names: Vec<String> = model
        .layer_names()
        .into_iter()
        .map(str::to_string)
        .collect();
    let want = expected_weights(&case);
    assert_eq!(
        want.len(),
        names.len(),
        "{case_name}: case.json weights per layer"
    );
    let keras_names: Vec<&str> = weights.layers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        keras_names,
        names.iter().map(String::as_str).collect::<Vec<_>>(),
        "{case_name}: weights order"
    );
    check_weights(&case_name, "model.keras", &weights, &names, &want);
    let h5 = read_weights_h5(&dir.join("model.weights.h5"))
        .unwrap_or_else(|e| panic!("{case_name}: model.weights.h5: {e}"));
    check_weights(&case_name, "model.weights.h5", &h5, &names, &want);
}

#[test]
fn every_fixture_case_reads_bit_exactly() {
    let cases = case_dirs();
    for dir in &cases {
        check_case(dir);
    }
    eprintln!("checked {} fixture cases", cases.len());
}

/// Every case of the recurrent-family fixtures (GRU, Bidirectional, Masking,
/// Embedding(mask_zero)): `model.keras`, and `model.weights.h5` with the `.keras` file as
/// architecture, hold the weights of `case.json` bit for bit, in Keras order (a
/// Bidirectional's forward copy first, though the files list its backward copy first), and
/// predict the Keras output.
#[test]
fn rnn_keras_files_reproduce_the_keras_output() {
    let mut ran = 0;
    for dir in common::rnn_case_dirs() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let case = common::load_case(&dir).unwrap();
        let want = common::tensor(&case.json["output"]).unwrap();
        let keras = stacklstm::load_model(dir.join("model.keras"), None).unwrap();
        let arch = stacklstm::Arch::from_path(dir.join("model.keras")).unwrap();
        let h5 = stacklstm::load_model(dir.join("model.weights.h5"), Some(&arch)).unwrap();
        let want_weights = common::weights(&case.json["weights"]).unwrap();
        for (file, m) in [
            ("model.keras", &keras.model),
            ("model.weights.h5", &h5.model),
        ] {
            let weights = m.get_weights();
            assert_eq!(weights.len(), want_weights.len(), "{name}/{file}");
            for (k, (a, b)) in weights.iter().zip(&want_weights).enumerate() {
                let bits =
                    |t: &ndarray::ArrayD<f32>| t.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(a.shape(), b.shape(), "{name}/{file}: weight {k}");
                assert_eq!(bits(a), bits(b), "{name}/{file}: weight {k}");
            }
            let got = m.predict(&case.x).unwrap();
            let d = common::max_abs_diff(&got, &want);
            assert!(
                d <= 1e-5,
                "{name}/{file}: output differs from Keras by {d:e}"
            );
            assert_eq!(m.param_count(), case.model.param_count(), "{name}/{file}");
        }
        ran += 1;
    }
    assert!(ran >= 9, "only {ran} cases ran");
}
