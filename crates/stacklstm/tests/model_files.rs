//! Model files end to end: every fixture through `.keras`, `.weights.h5` and
//! `torch.safetensors` reproduces Keras' `y.npy` within 1e-5; native save -> load -> predict
//! is bit-identical (fixtures and a proptest over architectures); checkpoints round-trip
//! preprocessing and training state bit-exactly; hostile native files are clear errors; a
//! save killed mid-write never corrupts the previous file; PyTorch multi-layer modules and
//! explicit mappings; PyTorch `nn.GRU` and bidirectional `nn.LSTM` / `nn.GRU` files against
//! the GRU and Bidirectional fixtures and against PyTorch's own LSTM and GRU equations.
//! Keras files need the `keras` feature and `.npy` reading the `data` feature; without them
//! the Keras files are clear errors.

mod common;

use std::collections::BTreeMap;

use ndarray::{Array3, ArrayD, IxDyn};
use proptest::prelude::*;
use serde_json::json;
use stacklstm::io::native::{self, TrainingState};
use stacklstm::io::safetensors;
use stacklstm::{
    load_model, Activation, Arch, Bidirectional, Dense, Embedding, Error, Gru, Lstm, MergeMode,
    Model, ModelFormat, Sequential,
};

use common::*;

// Reading Keras' `y.npy` needs both features.
#[cfg(all(feature = "keras", feature = "data"))]
const TOL: f32 = 1e-5;

#[cfg(all(feature = "keras", feature = "data"))]
fn read_y(dir: &std::path::Path) -> ArrayD<f32> {
    stacklstm::data::read_npy(dir.join("y.npy")).expect("y.npy")
}

#[cfg(all(feature = "keras", feature = "data"))]
fn read_x(dir: &std::path::Path) -> Array3<f32> {
    stacklstm::data::read_npy(dir.join("x.npy"))
        .expect("x.npy")
        .into_dimensionality()
        .expect("x is 3-D")
}

fn bits(a: &ArrayD<f32>) -> Vec<u32> {
    a.iter().map(|v| v.to_bits()).collect()
}

/// Every fixture, every file: the prediction against `y.npy`. Reports all failures.
#[cfg(all(feature = "keras", feature = "data"))]
#[test]
fn every_fixture_file_reproduces_keras_output() {
    let mut fails = Vec::new();
    let mut worst = 0.0f32;
    let mut checked = 0;
    for dir in case_dirs() {
        let case = load_case(&dir).expect("case.json");
        let name = case.name.clone();
        let (x, y) = (read_x(&dir), read_y(&dir));
        let arch = Arch::from(case.model.spec().clone());
        let mut files = vec![
            ("model.keras", None, ModelFormat::Keras),
            ("model.weights.h5", Some(&arch), ModelFormat::KerasWeights),
        ];
        if dir.join("torch.safetensors").is_file() {
            // The state_dict alone does not say whether the last LSTM returns sequences; the
            // inference assumes it does not, which holds for every case but seq_labeling.
            let torch_arch = if y.ndim() == 3 { Some(&arch) } else { None };
            files.push(("torch.safetensors", torch_arch, ModelFormat::Torch));
        }
        for (file, arch, format) in files {
            let loaded = match load_model(dir.join(file), arch) {
                Ok(l) => l,
                Err(e) => {
                    fails.push(format!("{name}/{file}: {e}"));
                    continue;
                }
            };
            assert_eq!(loaded.format, format, "{name}/{file}");
            match loaded.model.predict(&x) {
                Ok(got) if got.shape() == y.shape() => {
                    let d = max_abs_diff(&got, &y);
                    worst = worst.max(d);
                    checked += 1;
                    if d > TOL {
                        fails.push(format!("{name}/{file}: max abs diff {d:e}"));
                    }
                }
                Ok(got) => fails.push(format!(
                    "{name}/{file}: shape {:?} vs {:?}",
                    got.shape(),
                    y.shape()
                )),
                Err(e) => fails.push(format!("{name}/{file}: {e}")),
            }
        }
    }
    eprintln!("{checked} fixture files checked, max abs diff {worst:e}");
    assert!(fails.is_empty(), "{}", fails.join("\n"));
}

/// The torch file of seq_labeling (last LSTM returns sequences) cannot be inferred: without
/// an architecture the model differs, which is why the CLI takes `--arch`.
#[test]
fn torch_inference_defaults_to_last_step() {
    let dir = fixtures_dir().join("seq_labeling");
    let m = load_model(dir.join("torch.safetensors"), None).expect("load");
    assert!(!m.model.output_shape().seq);
    assert_eq!(m.model.input_shape(), (None, 5));
}

#[cfg(feature = "keras")]
#[test]
fn weights_h5_without_arch_is_a_clear_error() {
    let dir = fixtures_dir().join("seed_stack2");
    let e = load_model(dir.join("model.weights.h5"), None).unwrap_err();
    assert!(e.to_string().contains("--arch"), "{e}");
    // A wrong architecture names the problem.
    let arch = Arch::from(
        Sequential::new()
            .input_shape(3, 1)
            .add(Lstm::new(5).return_sequences(true))
            .add(Lstm::new(3))
            .add(Dense::new(1)),
    );
    let e = load_model(dir.join("model.weights.h5"), Some(&arch)).unwrap_err();
    assert!(e.to_string().contains("lstm/kernel"), "{e}");
}

#[cfg(not(feature = "keras"))]
#[test]
fn keras_files_without_the_keras_feature_are_clear_errors() {
    let dir = fixtures_dir().join("seed_stack2");
    for file in ["model.keras", "model.weights.h5"] {
        let e = load_model(dir.join(file), None).unwrap_err();
        assert!(
            matches!(e, Error::UnsupportedFormat { .. }),
            "{file}: {e:?}"
        );
        let msg = e.to_string();
        assert!(msg.contains("without its `keras` feature"), "{msg}");
        let bytes = std::fs::read(dir.join(file)).expect("read");
        let e = stacklstm::io::load_model_bytes(&bytes, file, None).unwrap_err();
        assert!(e.to_string().contains("`keras` feature"), "{e}");
    }
}

/// The TOML form of an architecture (the `toml` feature), or a clear error without it.
#[test]
fn toml_architectures_need_the_toml_feature() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = tmp.path().join("arch.toml");
    std::fs::write(
        &p,
        "input_shape = [0, 2]\n[[layers]]\ntype = \"lstm\"\nunits = 3\n",
    )
    .expect("write");
    let got = Arch::from_path(&p);
    if cfg!(feature = "toml") {
        let arch = got.expect("toml arch");
        assert_eq!(arch.spec.input_shape, Some((None, 2)));
        assert_eq!(arch.spec.layers.len(), 1);
    } else {
        let e = got.unwrap_err();
        assert!(matches!(e, Error::UnsupportedFormat { .. }), "{e:?}");
        assert!(e.to_string().contains("without its `toml` feature"), "{e}");
    }
}

#[test]
fn native_round_trip_of_every_fixture_is_bit_identical() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for dir in case_dirs() {
        let case = load_case(&dir).expect("case");
        let path = tmp.path().join(format!("{}.safetensors", case.name));
        case.model.save(&path).expect("save");
        let again = load_model(&path, None).expect("load");
        assert_eq!(again.format, ModelFormat::Native);
        assert_eq!(again.model.spec(), case.model.spec());
        let (a, b) = (
            case.model.predict(&case.x).expect("predict"),
            again.model.predict(&case.x).expect("predict"),
        );
        assert_eq!(bits(&a), bits(&b), "{}", case.name);
    }
}

fn act(k: u8) -> Activation {
    [
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::HardSigmoid,
        Activation::Relu,
        Activation::Linear,
    ][k as usize % 5]
}

fn arb_spec() -> impl Strategy<Value = Sequential> {
    // Units, bias, activations, and the kind: LSTM, GRU (reset_after), GRU (reset before),
    // or a Bidirectional around an LSTM or a GRU (merge mode from the activations).
    let lstm = (1usize..6, any::<bool>(), 0u8..5, 0u8..5, 0u8..5);
    (
        prop::option::of(1usize..5),
        1usize..4,
        prop::collection::vec(lstm, 1..4),
        any::<bool>(),
        prop::option::of((1usize..4, 0u8..6, any::<bool>())),
        any::<u64>(),
    )
        .prop_map(|(t, f, lstms, last_rs, dense, seed)| {
            let mut s = Sequential::new().seed(seed);
            s = match t {
                Some(t) => s.input_shape(t, f),
                None => s.input_features(f),
            };
            let n = lstms.len();
            for (i, (u, bias, a, r, kind)) in lstms.into_iter().enumerate() {
                let rs = i + 1 < n || last_rs;
                let mode = MergeMode::ALL[usize::from(a + r) % 4];
                s = if kind == 0 {
                    s.add(
                        Lstm::new(u)
                            .return_sequences(rs)
                            .use_bias(bias)
                            .activation(act(a))
                            .recurrent_activation(act(r)),
                    )
                } else if kind == 3 {
                    s.add(
                        Bidirectional::new(
                            Lstm::new(u)
                                .return_sequences(rs)
                                .use_bias(bias)
                                .activation(act(a))
                                .recurrent_activation(act(r)),
                        )
                        .merge_mode(mode),
                    )
                } else if kind == 4 {
                    s.add(
                        Bidirectional::new(
                            Gru::new(u)
                                .return_sequences(rs)
                                .use_bias(bias)
                                .activation(act(a))
                                .recurrent_activation(act(r))
                                .reset_after(bias),
                        )
                        .merge_mode(mode),
                    )
                } else {
                    s.add(
                        Gru::new(u)
                            .return_sequences(rs)
                            .use_bias(bias)
                            .activation(act(a))
                            .recurrent_activation(act(r))
                            .reset_after(kind == 1),
                    )
                };
            }
            if let Some((u, a, bias)) = dense {
                let a = if a == 5 { Activation::Softmax } else { act(a) };
                s = s.add(Dense::new(u).activation(a).use_bias(bias));
            }
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn save_load_predict_is_bit_identical(spec in arb_spec(), b in 1usize..4, t in 1usize..5) {
        let model = spec.build().expect("build");
        let t = model.input_shape().0.unwrap_or(t);
        let f = model.input_shape().1;
        let x = Array3::from_shape_fn((b, t, f), |(i, j, k)| ((i * 7 + j * 3 + k) as f32 * 0.37).sin());
        let bytes = native::to_bytes(&model, None, None).expect("to_bytes");
        let again = native::from_bytes(&bytes, "mem").expect("from_bytes");
        prop_assert_eq!(again.model.spec(), model.spec());
        let (y0, y1) = (model.predict(&x).expect("p"), again.model.predict(&x).expect("p"));
        prop_assert_eq!(bits(&y0), bits(&y1));
        for (w0, w1) in model.get_weights().iter().zip(again.model.get_weights()) {
            prop_assert_eq!(bits(w0), bits(&w1));
        }
    }
}

/// GRU models (both reset modes, every option that changes the spec or the weights) saved
/// to a native file and loaded back: same spec, bit-identical weights and predictions.
#[test]
fn gru_native_round_trip_is_bit_identical() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for reset_after in [true, false] {
        let mut model = Sequential::new()
            .input_shape(5, 3)
            .add(
                Gru::new(6)
                    .return_sequences(true)
                    .reset_after(reset_after)
                    .dropout(0.2)
                    .recurrent_dropout(0.1),
            )
            .add(
                Gru::new(4)
                    .return_sequences(true)
                    .reset_after(reset_after)
                    .activation(Activation::Relu)
                    .recurrent_activation(Activation::HardSigmoid)
                    .name("encoder"),
            )
            .add(
                Gru::new(3)
                    .use_bias(false)
                    .reset_after(!reset_after)
                    .return_sequences(true)
                    .trainable(false),
            )
            .add(Dense::new(2))
            .seed(7)
            .build()
            .expect("build");
        // Non-zero biases (Keras initialises them to zero).
        let weights: Vec<ArrayD<f32>> = model
            .get_weights()
            .into_iter()
            .enumerate()
            .map(|(k, w)| w.mapv(|v| v + 0.01 * (k as f32 + 1.0)))
            .collect();
        model.set_weights(&weights).expect("set_weights");
        let path = tmp.path().join(format!("gru_{reset_after}.safetensors"));
        model.save(&path).expect("save");
        let again = load_model(&path, None).expect("load");
        assert_eq!(again.format, ModelFormat::Native);
        assert_eq!(again.model.spec(), model.spec());
        for (w0, w1) in model.get_weights().iter().zip(again.model.get_weights()) {
            assert_eq!(w0.shape(), w1.shape());
            assert_eq!(bits(w0), bits(&w1));
        }
        let x = Array3::from_shape_fn((4, 5, 3), |(i, j, k)| {
            ((i * 7 + j * 3 + k) as f32 * 0.37).sin()
        });
        let (a, b) = (
            model.predict(&x).expect("predict"),
            again.model.predict(&x).expect("predict"),
        );
        assert_eq!(a.shape(), &[4, 5, 2]);
        assert_eq!(bits(&a), bits(&b));
    }
}

/// Masked models (a `Masking` layer with a non-zero mask value, an `Embedding` with
/// `mask_zero`) saved to a native file and loaded back: same spec, the mask still applied.
#[test]
fn masked_native_round_trip_keeps_the_mask() {
    use stacklstm::layers::masking::Masking;
    let tmp = tempfile::tempdir().expect("tempdir");
    let masking = Sequential::new()
        .input_shape(6, 2)
        .add(Masking::new(-1.0))
        .add(Lstm::new(4).return_sequences(true))
        .add(Dense::new(1))
        .seed(3)
        .build()
        .expect("build");
    let embedding = Sequential::new()
        .input_shape(6, 1)
        .add(Embedding::new(9, 3).mask_zero(true))
        .add(Gru::new(4))
        .add(Dense::new(2))
        .seed(4)
        .build()
        .expect("build");
    // Row 0 padded at the end (mask value -1, id 0), row 1 not padded.
    let x = Array3::from_shape_fn((2, 6, 2), |(i, j, k)| {
        if i == 0 && j >= 3 {
            -1.0
        } else {
            ((i * 7 + j * 3 + k) as f32 * 0.37).sin()
        }
    });
    let ids = Array3::from_shape_fn((2, 6, 1), |(i, j, _)| {
        if i == 0 && j >= 3 {
            0.0
        } else {
            (1 + (i * 5 + j) % 8) as f32
        }
    });
    for (name, model, x) in [("masking", masking, x), ("embedding", embedding, ids)] {
        let path = tmp.path().join(format!("{name}.safetensors"));
        model.save(&path).expect("save");
        let again = load_model(&path, None).expect("load").model;
        assert_eq!(again.spec(), model.spec());
        assert!(again.has_mask(), "{name}: the mask is lost");
        let (a, b) = (model.predict(&x).unwrap(), again.predict(&x).unwrap());
        assert_eq!(bits(&a), bits(&b), "{name}");
    }
}

/// Bidirectional layers (every merge mode, LSTM and GRU inside, the options that change
/// the spec or the weights) saved to a native file and loaded back: same spec,
/// bit-identical weights and predictions; the copies' weights are stored as
/// `<layer>/forward/<weight>` and `<layer>/backward/<weight>`.
#[test]
fn bidirectional_native_round_trip_is_bit_identical() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (k, mode) in MergeMode::ALL.into_iter().enumerate() {
        let mut model = Sequential::new()
            .input_shape(5, 3)
            .add(
                Bidirectional::new(
                    Lstm::new(4)
                        .return_sequences(true)
                        .dropout(0.2)
                        .recurrent_dropout(0.1),
                )
                .merge_mode(mode),
            )
            .add(
                Bidirectional::new(
                    Gru::new(3)
                        .return_sequences(true)
                        .reset_after(k % 2 == 0)
                        .use_bias(k < 2)
                        .activation(Activation::Relu),
                )
                .merge_mode(MergeMode::ALL[(k + 1) % 4])
                .name("encoder")
                .trainable(false),
            )
            .add(Bidirectional::new(Lstm::new(2)))
            .add(Dense::new(2))
            .seed(7)
            .build()
            .expect("build");
        let weights: Vec<ArrayD<f32>> = model
            .get_weights()
            .into_iter()
            .enumerate()
            .map(|(k, w)| w.mapv(|v| v + 0.01 * (k as f32 + 1.0)))
            .collect();
        model.set_weights(&weights).expect("set_weights");
        let path = tmp.path().join(format!("bidirectional_{mode}.safetensors"));
        model.save(&path).expect("save");
        let again = load_model(&path, None).expect("load");
        assert_eq!(again.format, ModelFormat::Native);
        assert_eq!(again.model.spec(), model.spec());
        assert_eq!(
            again.model.trainable_param_count(),
            model.trainable_param_count()
        );
        for (w0, w1) in model.get_weights().iter().zip(again.model.get_weights()) {
            assert_eq!(w0.shape(), w1.shape());
            assert_eq!(bits(w0), bits(&w1));
        }
        let x = Array3::from_shape_fn((4, 5, 3), |(i, j, k)| {
            ((i * 7 + j * 3 + k) as f32 * 0.37).sin()
        });
        let (a, b) = (
            model.predict(&x).expect("predict"),
            again.model.predict(&x).expect("predict"),
        );
        assert_eq!(a.shape(), &[4, 2]);
        assert_eq!(bits(&a), bits(&b));
        let names: Vec<String> = model
            .spec()
            .weight_shapes()
            .expect("shapes")
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert!(
            names.contains(&"encoder/backward/recurrent_kernel".to_string()),
            "{names:?}"
        );
        assert!(
            names.contains(&"bidirectional/forward/kernel".to_string()),
            "{names:?}"
        );
    }
}

fn small_model() -> Model {
    Sequential::new()
        .name("small")
        .input_shape(4, 2)
        .add(Lstm::new(3).return_sequences(true))
        .add(Lstm::new(2))
        .add(Dense::new(1))
        .seed(7)
        .build()
        .expect("build")
}

#[test]
fn checkpoint_round_trips_preprocessing_and_training_state() {
    let model = small_model();
    let pre = json!({"scaler": {"kind": "minmax", "min": [0.1, -3.5], "max": [1e30, 2.0]},
                     "vocab": ["a", "b", "<unk>"]});
    let training = TrainingState {
        json: json!({"optimizer": {"type": "adam", "learning_rate": 0.001, "beta_1": 0.9},
                     "step": 20, "epoch": 2, "rng": [1234567890123u64, 42]}),
        tensors: vec![
            (
                "lstm/kernel/m".into(),
                vec![2, 12],
                (0..24).map(|i| i as f32 * 1e-3).collect(),
            ),
            (
                "lstm/kernel/v".into(),
                vec![2, 12],
                vec![f32::MIN_POSITIVE; 24],
            ),
            ("scalar".into(), vec![], vec![-0.0]),
        ],
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = tmp.path().join("ckpt.safetensors");
    native::save_checkpoint(&p, &model, Some(&pre), Some(&training)).expect("save");
    let back = load_model(&p, None).expect("load");
    assert_eq!(back.preprocessing.as_ref(), Some(&pre));
    let got = back.training.expect("training state");
    assert_eq!(got.json, training.json);
    assert_eq!(got.tensors.len(), training.tensors.len());
    for (a, b) in got.tensors.iter().zip(&training.tensors) {
        assert_eq!((&a.0, &a.1), (&b.0, &b.1));
        let (x, y): (Vec<u32>, Vec<u32>) = (
            a.2.iter().map(|v| v.to_bits()).collect(),
            b.2.iter().map(|v| v.to_bits()).collect(),
        );
        assert_eq!(x, y, "{}", a.0);
    }
    for (w0, w1) in model.get_weights().iter().zip(back.model.get_weights()) {
        assert_eq!(bits(w0), bits(&w1));
    }
    // A plain model file has neither.
    let p2 = tmp.path().join("m.safetensors");
    model.save(&p2).expect("save");
    let plain = load_model(&p2, None).expect("load");
    assert!(plain.preprocessing.is_none() && plain.training.is_none());
}

/// Rebuilds a native file with its metadata document edited.
fn edit_doc(bytes: &[u8], f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let (h, data) = safetensors::parse_bytes(bytes, "mem").expect("parse");
    let mut doc: serde_json::Value =
        serde_json::from_str(&h.metadata[native::METADATA_KEY]).expect("doc");
    f(&mut doc);
    let mut meta = h.metadata.clone();
    meta.insert(native::METADATA_KEY.into(), doc.to_string());
    let vals: Vec<(String, Vec<usize>, Vec<f32>)> = h
        .tensors
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.shape.clone(),
                safetensors::tensor_data(t, data),
            )
        })
        .collect();
    let refs: Vec<(String, Vec<usize>, &[f32])> = vals
        .iter()
        .map(|(n, s, v)| (n.clone(), s.clone(), v.as_slice()))
        .collect();
    safetensors::to_bytes(&refs, &meta).expect("to_bytes")
}

fn load_err(bytes: &[u8]) -> String {
    match native::from_bytes(bytes, "bad.safetensors") {
        Ok(_) => panic!("hostile file loaded"),
        Err(e) => {
            let s = e.to_string();
            assert!(
                s.contains("bad.safetensors"),
                "error does not name the file: {s}"
            );
            s
        }
    }
}

#[test]
fn hostile_native_files_are_clear_errors() {
    let model = small_model();
    let good = native::to_bytes(&model, Some(&json!({"k": 1})), None).expect("bytes");
    assert!(native::from_bytes(&good, "good").is_ok());

    // Every truncation, and every single-byte corruption of the header region.
    for n in 0..good.len() {
        let _ = load_err(&good[..n]);
    }
    for at in 0..good.len().min(600) {
        let mut b = good.clone();
        b[at] ^= 0x5a;
        let _ = native::from_bytes(&b, "flip");
    }
    // A header length that lies.
    let mut b = good.clone();
    b[..8].copy_from_slice(&(good.len() as u64).to_le_bytes());
    assert!(load_err(&b).contains("header length"));

    // Config contradicting the tensors, absurd sizes, future versions.
    let msg = load_err(&edit_doc(&good, |d| {
        d["model"]["layers"][0]["units"] = json!(4)
    }));
    assert!(msg.contains("lstm/kernel"), "{msg}");
    let msg = load_err(&edit_doc(&good, |d| {
        d["model"]["layers"][0]["units"] = json!(1_000_000_000_000u64)
    }));
    assert!(msg.contains("too large"), "{msg}");
    let msg = load_err(&edit_doc(&good, |d| {
        d["model"]["input_shape"] = json!([4, 3])
    }));
    assert!(msg.contains("lstm/kernel"), "{msg}");
    let msg = load_err(&edit_doc(&good, |d| d["format_version"] = json!(99)));
    assert!(
        msg.contains("format_version 99") && msg.contains("newer"),
        "{msg}"
    );
    let msg = load_err(&edit_doc(&good, |d| d["format_version"] = json!("1")));
    assert!(msg.contains("format_version"), "{msg}");
    let msg = load_err(&edit_doc(&good, |d| d["model"] = json!({"layers": 3})));
    assert!(msg.contains("model config"), "{msg}");
    let msg = load_err(&edit_doc(&good, |d| {
        d["training"] = json!({"state": {}, "tensors": ["ghost"]})
    }));
    assert!(msg.contains("ghost"), "{msg}");
    // Non-finite weights.
    let mut vals: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    for l in model.layers() {
        for w in l.weights() {
            vals.push((
                format!("{}/{}", l.name(), w.name),
                w.shape.to_vec(),
                w.values.to_vec(),
            ));
        }
    }
    vals[0].2[0] = f32::NAN;
    let (h, _) = safetensors::parse_bytes(&good, "m").expect("parse");
    let refs: Vec<(String, Vec<usize>, &[f32])> = vals
        .iter()
        .map(|(n, s, v)| (n.clone(), s.clone(), v.as_slice()))
        .collect();
    let nan = safetensors::to_bytes(&refs, &h.metadata).expect("bytes");
    assert!(load_err(&nan).contains("non-finite"));
    // An extra tensor.
    let extra = [1.0f32];
    let mut refs2 = refs.clone();
    refs2[0].2 = &vals[0].2[..];
    refs2.push(("intruder".into(), vec![1], &extra[..]));
    let b = safetensors::to_bytes(&refs2, &h.metadata).expect("bytes");
    assert!(load_err(&b).contains("intruder"));
    // A safetensors file without our metadata and no LSTM tensors.
    let b = safetensors::to_bytes(&[("w".into(), vec![1], &extra[..])], &BTreeMap::new())
        .expect("bytes");
    assert!(matches!(
        native::from_bytes(&b, "x"),
        Err(Error::UnsupportedFormat { .. })
    ));
}

#[test]
fn unknown_files_are_clear_errors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = tmp.path().join("garbage.safetensors");
    std::fs::write(&p, b"hello, this is not a model").expect("write");
    let e = load_model(&p, None).unwrap_err().to_string();
    assert!(e.contains("not a model file"), "{e}");
    let e = load_model(tmp.path().join("missing.keras"), None).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
}

/// A child process saving in a loop is killed at several moments; the file must always load,
/// as the old model or the new one.
#[test]
fn killed_saves_never_corrupt_the_previous_file() {
    if let Some(path) = std::env::var_os("STACKLSTM_TEST_SAVE_LOOP") {
        // The child: alternate between two models until killed.
        let a = big_model(1);
        let b = big_model(2);
        for i in 0.. {
            let m = if i % 2 == 0 { &a } else { &b };
            m.save(&path).expect("save");
        }
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("m.safetensors");
    let a = big_model(1);
    let b = big_model(2);
    a.save(&path).expect("save");
    let exe = std::env::current_exe().expect("current_exe");
    for (round, delay_ms) in [30u64, 75, 140, 260, 410].into_iter().enumerate() {
        let mut child = std::process::Command::new(&exe)
            .args([
                "--exact",
                "killed_saves_never_corrupt_the_previous_file",
                "--test-threads=1",
            ])
            .env("STACKLSTM_TEST_SAVE_LOOP", &path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().expect("kill");
        child.wait().expect("wait");
        let m = load_model(&path, None)
            .unwrap_or_else(|e| panic!("round {round}: file corrupted by a killed save: {e}"))
            .model;
        let w = bits(&m.get_weights()[0]);
        assert!(
            w == bits(&a.get_weights()[0]) || w == bits(&b.get_weights()[0]),
            "round {round}: neither model"
        );
    }
}

fn big_model(seed: u64) -> Model {
    Sequential::new()
        .input_shape(8, 64)
        .add(Lstm::new(256).return_sequences(true))
        .add(Lstm::new(256))
        .add(Dense::new(4))
        .seed(seed)
        .build()
        .expect("build")
}

#[test]
fn failed_save_leaves_previous_file_intact() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = small_model();
    // The target is a directory: the rename fails, the directory and its content survive.
    let dir_target = tmp.path().join("occupied");
    std::fs::create_dir(&dir_target).expect("mkdir");
    std::fs::write(dir_target.join("keep"), b"x").expect("write");
    assert!(matches!(model.save(&dir_target), Err(Error::Io { .. })));
    assert_eq!(std::fs::read(dir_target.join("keep")).expect("read"), b"x");
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

// ---------------------------------------------------------------------------------------------
// PyTorch: synthetic state_dicts.

struct Lcg(u64);
impl Lcg {
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                self.0 = self
                    .0
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((self.0 >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }
}

fn transpose(v: &[f32], r: usize, c: usize) -> Vec<f32> {
    let mut out = vec![0.0; v.len()];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = v[i * c + j];
        }
    }
    out
}

/// A state_dict of `rnn = nn.LSTM(3, 4, num_layers=2)` and `head = nn.Linear(4, 2)`, with the
/// equivalent Keras-layout weights.
fn multilayer_state_dict() -> (Vec<u8>, Vec<ArrayD<f32>>) {
    let mut r = Lcg(99);
    let (f, u, o) = (3usize, 4usize, 2usize);
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut keras = Vec::new();
    for (k, input) in [(0, f), (1, u)] {
        let (w_ih, w_hh, b_ih, b_hh) = (
            r.vec(4 * u * input),
            r.vec(16 * u),
            r.vec(4 * u),
            r.vec(4 * u),
        );
        keras.push(
            ArrayD::from_shape_vec(IxDyn(&[input, 4 * u]), transpose(&w_ih, 4 * u, input)).unwrap(),
        );
        keras.push(ArrayD::from_shape_vec(IxDyn(&[u, 4 * u]), transpose(&w_hh, 4 * u, u)).unwrap());
        let bias: Vec<f32> = b_ih.iter().zip(&b_hh).map(|(a, b)| a + b).collect();
        keras.push(ArrayD::from_shape_vec(IxDyn(&[4 * u]), bias).unwrap());
        tensors.push((format!("rnn.weight_ih_l{k}"), vec![4 * u, input], w_ih));
        tensors.push((format!("rnn.weight_hh_l{k}"), vec![4 * u, u], w_hh));
        tensors.push((format!("rnn.bias_ih_l{k}"), vec![4 * u], b_ih));
        tensors.push((format!("rnn.bias_hh_l{k}"), vec![4 * u], b_hh));
    }
    let (w, b) = (r.vec(o * u), r.vec(o));
    keras.push(ArrayD::from_shape_vec(IxDyn(&[u, o]), transpose(&w, o, u)).unwrap());
    keras.push(ArrayD::from_shape_vec(IxDyn(&[o]), b.clone()).unwrap());
    tensors.push(("head.weight".into(), vec![o, u], w));
    tensors.push(("head.bias".into(), vec![o], b));
    let refs: Vec<(String, Vec<usize>, &[f32])> = tensors
        .iter()
        .map(|(n, s, v)| (n.clone(), s.clone(), v.as_slice()))
        .collect();
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    (safetensors::to_bytes(&refs, &meta).unwrap(), keras)
}

#[test]
fn torch_multilayer_lstm_is_expanded() {
    let (bytes, keras) = multilayer_state_dict();
    let expected = Sequential::new()
        .input_features(3)
        .add(Lstm::new(4).return_sequences(true))
        .add(Lstm::new(4))
        .add(Dense::new(2))
        .build_with_weights(&keras)
        .expect("reference");
    let x = Array3::from_shape_fn((2, 5, 3), |(i, j, k)| {
        (i as f32 - j as f32 * 0.3 + k as f32 * 0.1).cos()
    });
    let want = expected.predict(&x).expect("predict");

    // Inferred.
    let got = stacklstm::io::load_model_bytes(&bytes, "sd", None).expect("infer");
    assert_eq!(got.format, ModelFormat::Torch);
    assert_eq!(bits(&got.model.predict(&x).expect("p")), bits(&want));

    // Explicit, with module names.
    let arch = Arch::from_json(
        r#"{"input_shape": [5, 3], "layers": [
            {"type": "lstm", "units": 4, "return_sequences": true, "from": "rnn"},
            {"type": "lstm", "units": 4, "from": "rnn"},
            {"type": "dense", "units": 2, "activation": "linear", "from": "head"}]}"#,
        "arch",
    )
    .expect("arch");
    let got = stacklstm::io::load_model_bytes(&bytes, "sd", Some(&arch)).expect("explicit");
    assert_eq!(got.model.input_shape(), (Some(5), 3));
    assert_eq!(bits(&got.model.predict(&x).expect("p")), bits(&want));

    // An explicit mapping that does not fit names the problem.
    let bad = Arch::from_json(
        r#"{"input_shape": [5, 3], "layers": [
            {"type": "lstm", "units": 4, "from": "rnn"},
            {"type": "dense", "units": 2, "from": "head"}]}"#,
        "arch",
    )
    .expect("arch");
    let e = stacklstm::io::load_model_bytes(&bytes, "sd", Some(&bad)).unwrap_err();
    assert!(e.to_string().contains("not used"), "{e}");
    let bad = Arch::from_json(
        r#"{"input_shape": [5, 3], "layers": [{"type": "lstm", "units": 4, "from": "nope"}]}"#,
        "arch",
    )
    .expect("arch");
    let e = stacklstm::io::load_model_bytes(&bytes, "sd", Some(&bad)).unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
}

#[test]
fn torch_unsupported_tensors_are_listed() {
    let v = [0.0f32; 8];
    let b = safetensors::to_bytes(
        &[
            ("rnn.weight_hr_l0".into(), vec![8, 1], &v[..]),
            ("norm.running_mean".into(), vec![8], &v[..]),
        ],
        &BTreeMap::new(),
    )
    .unwrap();
    let e = stacklstm::io::load_model_bytes(&b, "sd", None).unwrap_err();
    let s = e.to_string();
    assert!(matches!(e, Error::UnsupportedFormat { .. }), "{s}");
    assert!(
        s.contains("rnn.weight_hr_l0") && s.contains("running_mean"),
        "{s}"
    );
}

/// Whether the architecture a PyTorch import infers (see `io::torch`) is the fixture's
/// `model`: LSTM, GRU (`reset_after`) and Bidirectional (`concat`) layers returning
/// sequences but the last, then linear Dense layers.
fn inferred_architecture_is(model: &serde_json::Value) -> bool {
    let layers = model["layers"].as_array().cloned().unwrap_or_default();
    let rnn: Vec<&serde_json::Value> = layers.iter().take_while(|l| l["type"] != "dense").collect();
    let dense = &layers[rnn.len()..];
    let cell_ok = |l: &serde_json::Value, rs: bool| {
        matches!(l["type"].as_str(), Some("lstm" | "gru"))
            && l["return_sequences"].as_bool().unwrap_or(false) == rs
            && (l["type"] == "lstm" || l["reset_after"].as_bool().unwrap_or(true))
    };
    !rnn.is_empty()
        && rnn.iter().enumerate().all(|(i, l)| {
            let rs = i + 1 < rnn.len();
            match l["type"].as_str() {
                Some("bidirectional") => {
                    l["merge_mode"].as_str().unwrap_or("concat") == "concat"
                        && cell_ok(&l["layer"], rs)
                }
                _ => cell_ok(l, rs),
            }
        })
        && dense.iter().all(|l| {
            l["type"] == "dense" && l["activation"].as_str().unwrap_or("linear") == "linear"
        })
}

/// The PyTorch files of the GRU and Bidirectional fixtures (`nn.GRU` and `nn.LSTM` modules,
/// bidirectional ones included, and `nn.Linear` heads) reproduce Keras' output within 1e-5:
/// with the architecture given as the case's spec and as the fixture's `model` object as it
/// is, and inferred where the inference gives that model (elsewhere, as for `bigru_sum`'s
/// `sum` merge into a per-timestep head, it is an error asking for the architecture or a
/// different model).
#[test]
fn torch_rnn_fixtures_reproduce_keras_output() {
    let mut fails = Vec::new();
    let mut checked = Vec::new();
    let mut inferred = Vec::new();
    for dir in rnn_case_dirs() {
        let path = dir.join("torch.safetensors");
        if !path.is_file() {
            continue;
        }
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let case = load_case(&dir).expect("case.json");
        let want = tensor(&case.json["output"]).expect("output");
        #[cfg(feature = "data")]
        {
            let y: ArrayD<f32> = stacklstm::data::read_npy(dir.join("y.npy")).expect("y.npy");
            assert_eq!(y.shape(), want.shape(), "{name}");
            assert!(
                max_abs_diff(&y, &want) == 0.0,
                "{name}: y.npy is the case's output"
            );
        }
        let spec_arch = Arch::from(case.model.spec().clone());
        let model_arch = Arch::from_json(&case.json["model"].to_string(), "model").expect("arch");
        let mut runs = vec![
            ("case spec", Some(&spec_arch)),
            ("fixture model object", Some(&model_arch)),
        ];
        if inferred_architecture_is(&case.json["model"]) {
            runs.push(("inferred", None));
            inferred.push(name.clone());
        } else {
            match load_model(&path, None) {
                Err(e) => assert!(e.to_string().contains("--arch"), "{name}: {e}"),
                Ok(l) => {
                    let got = l.model.predict(&case.x).expect("predict");
                    assert!(
                        got.shape() != want.shape() || max_abs_diff(&got, &want) > 1e-5,
                        "{name}: the inferred architecture reproduces the output; \
                         inferred_architecture_is should say so"
                    );
                }
            }
        }
        for (how, arch) in runs {
            let loaded = match load_model(&path, arch) {
                Ok(l) => l,
                Err(e) => {
                    fails.push(format!("{name} ({how}): {e}"));
                    continue;
                }
            };
            assert_eq!(loaded.format, ModelFormat::Torch);
            assert_eq!(
                loaded.model.param_count(),
                case.model.param_count(),
                "{name} ({how})"
            );
            let got = loaded.model.predict(&case.x).expect("predict");
            let d = max_abs_diff(&got, &want);
            if got.shape() != want.shape() || d > 1e-5 {
                fails.push(format!("{name} ({how}): max abs diff {d:e}"));
            }
        }
        checked.push(name);
    }
    assert!(fails.is_empty(), "{}", fails.join("\n"));
    for must in ["gru_basic", "gru_stack", "bilstm_concat_stack", "bigru_sum"] {
        assert!(
            checked.iter().any(|c| c == must),
            "{must} not checked: {checked:?}"
        );
    }
    for must in ["gru_basic", "gru_stack", "bilstm_concat_stack"] {
        assert!(
            inferred.iter().any(|c| c == must),
            "{must}: inferred architecture not checked"
        );
    }
    eprintln!(
        "PyTorch files checked: {} (inferred too: {})",
        checked.join(", "),
        inferred.join(", ")
    );
}

/// PyTorch's GRU equations (gate order r, z, n) in float64, on the state_dict's own tensors:
/// `r = σ(W_ir x + b_ir + W_hr h + b_hr)`, `z = σ(W_iz x + b_iz + W_hz h + b_hz)`,
/// `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`, `h' = (1 − z) ⊙ n + z ⊙ h`.
fn torch_gru_reference(
    x: &[f64],
    t: usize,
    d: usize,
    u: usize,
    w_ih: &[f32],
    w_hh: &[f32],
    b: Option<(&[f32], &[f32])>,
) -> Vec<f64> {
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let mut h = vec![0.0f64; u];
    let mut out = Vec::with_capacity(t * u);
    for s in 0..t {
        let xt = &x[s * d..(s + 1) * d];
        let gi = |row: usize| {
            b.map_or(0.0, |b| f64::from(b.0[row]))
                + (0..d)
                    .map(|j| f64::from(w_ih[row * d + j]) * xt[j])
                    .sum::<f64>()
        };
        let gh = |row: usize, h: &[f64]| {
            b.map_or(0.0, |b| f64::from(b.1[row]))
                + (0..u)
                    .map(|j| f64::from(w_hh[row * u + j]) * h[j])
                    .sum::<f64>()
        };
        let next: Vec<f64> = (0..u)
            .map(|k| {
                let r = sig(gi(k) + gh(k, &h));
                let z = sig(gi(u + k) + gh(u + k, &h));
                let n = (gi(2 * u + k) + r * gh(2 * u + k, &h)).tanh();
                (1.0 - z) * n + z * h[k]
            })
            .collect();
        h = next;
        out.extend_from_slice(&h);
    }
    out
}

/// `rnn = nn.GRU(3, 4, num_layers=2, bias)` and `head = nn.Linear(4, 2)`, against PyTorch's
/// equations computed here on the file's tensors (not through the Keras conversion), with and
/// without biases.
#[test]
fn torch_gru_state_dicts_match_pytorch_equations() {
    let (d, u, o, t, b) = (3usize, 4usize, 2usize, 5usize, 3usize);
    for bias in [true, false] {
        let mut r = Lcg(if bias { 7 } else { 8 });
        let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
        for (k, input) in [(0, d), (1, u)] {
            tensors.push((
                format!("rnn.weight_ih_l{k}"),
                vec![3 * u, input],
                r.vec(3 * u * input),
            ));
            tensors.push((
                format!("rnn.weight_hh_l{k}"),
                vec![3 * u, u],
                r.vec(3 * u * u),
            ));
            if bias {
                tensors.push((format!("rnn.bias_ih_l{k}"), vec![3 * u], r.vec(3 * u)));
                tensors.push((format!("rnn.bias_hh_l{k}"), vec![3 * u], r.vec(3 * u)));
            }
        }
        tensors.push(("head.weight".into(), vec![o, u], r.vec(o * u)));
        tensors.push(("head.bias".into(), vec![o], r.vec(o)));
        let refs: Vec<(String, Vec<usize>, &[f32])> = tensors
            .iter()
            .map(|(n, s, v)| (n.clone(), s.clone(), v.as_slice()))
            .collect();
        let bytes = safetensors::to_bytes(&refs, &BTreeMap::new()).unwrap();
        let get = |name: &str| -> &[f32] { &tensors.iter().find(|x| x.0 == name).expect(name).2 };

        let x = Array3::from_shape_fn((b, t, d), |(i, j, k)| {
            ((i * 7 + j * 3 + k) as f32 * 0.37).sin() * 1.5
        });
        let mut want = Vec::new();
        for i in 0..b {
            let mut seq: Vec<f64> = x
                .slice(ndarray::s![i, .., ..])
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let mut width = d;
            for k in 0..2 {
                let biases = bias.then(|| {
                    (
                        get(&format!("rnn.bias_ih_l{k}")),
                        get(&format!("rnn.bias_hh_l{k}")),
                    )
                });
                seq = torch_gru_reference(
                    &seq,
                    t,
                    width,
                    u,
                    get(&format!("rnn.weight_ih_l{k}")),
                    get(&format!("rnn.weight_hh_l{k}")),
                    biases,
                );
                width = u;
            }
            let last = &seq[(t - 1) * u..];
            let (w, hb) = (get("head.weight"), get("head.bias"));
            for c in 0..o {
                let v = f64::from(hb[c])
                    + (0..u)
                        .map(|j| f64::from(w[c * u + j]) * last[j])
                        .sum::<f64>();
                want.push(v as f32);
            }
        }
        let want = ArrayD::from_shape_vec(IxDyn(&[b, o]), want).unwrap();

        let m = stacklstm::io::load_model_bytes(&bytes, "sd", None).expect("load");
        let kinds: Vec<&str> = m.model.layers().iter().map(|l| l.kind()).collect();
        assert_eq!(kinds, ["GRU", "GRU", "Dense"]);
        let got = m.model.predict(&x).expect("predict");
        let diff = max_abs_diff(&got, &want);
        assert!(diff <= 1e-5, "bias {bias}: max abs diff {diff:e}");
        assert_eq!(
            m.model.layers()[0].weights().len(),
            if bias { 3 } else { 2 }
        );
    }
}

/// PyTorch's LSTM equations (gate order i, f, g, o) in float64, on the state_dict's own
/// tensors: `i = σ(W_ii x + b_ii + W_hi h + b_hi)`, `f`, `o` likewise, `g = tanh(...)`,
/// `c' = f ⊙ c + i ⊙ g`, `h' = o ⊙ tanh(c')`.
fn torch_lstm_reference(
    x: &[f64],
    t: usize,
    d: usize,
    u: usize,
    w_ih: &[f32],
    w_hh: &[f32],
    b: Option<(&[f32], &[f32])>,
) -> Vec<f64> {
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let (mut h, mut c) = (vec![0.0f64; u], vec![0.0f64; u]);
    let mut out = Vec::with_capacity(t * u);
    for s in 0..t {
        let xt = &x[s * d..(s + 1) * d];
        let gate = |row: usize, h: &[f64]| {
            b.map_or(0.0, |b| f64::from(b.0[row]) + f64::from(b.1[row]))
                + (0..d)
                    .map(|j| f64::from(w_ih[row * d + j]) * xt[j])
                    .sum::<f64>()
                + (0..u)
                    .map(|j| f64::from(w_hh[row * u + j]) * h[j])
                    .sum::<f64>()
        };
        let mut next = vec![0.0f64; u];
        for k in 0..u {
            let i = sig(gate(k, &h));
            let f = sig(gate(u + k, &h));
            let g = gate(2 * u + k, &h).tanh();
            let o = sig(gate(3 * u + k, &h));
            c[k] = f * c[k] + i * g;
            next[k] = o * c[k].tanh();
        }
        h = next;
        out.extend_from_slice(&h);
    }
    out
}

/// Rows `[t, w]` of `seq` in reverse time order.
fn reverse_steps(seq: &[f64], t: usize, w: usize) -> Vec<f64> {
    (0..t)
        .rev()
        .flat_map(|s| seq[s * w..(s + 1) * w].iter().copied())
        .collect()
}

/// `rnn = nn.LSTM / nn.GRU(3, 4, num_layers=2, bidirectional=True, bias)` and
/// `head = nn.Linear(8, 2)`, against PyTorch's equations computed here on the file's
/// tensors (each direction run on its own, the backward one over the reversed sequence, the
/// directions concatenated between the sub-layers), not through the Keras conversion: with
/// the inferred architecture (the head on `h_n` of both directions), with an explicit one
/// (both sub-layers returning sequences into a per-timestep head), and without the head
/// with the last sub-layer merged by `sum`, `mul` or `ave`, returning sequences or not.
#[test]
fn torch_bidirectional_state_dicts_match_pytorch_equations() {
    let (d, u, o, t, b) = (3usize, 4usize, 2usize, 5usize, 3usize);
    let mut checked = 0;
    for (lstm, bias) in [(true, true), (true, false), (false, true), (false, false)] {
        let g = if lstm { 4 * u } else { 3 * u };
        let mut r = Lcg(40 + u64::from(lstm) * 2 + u64::from(bias));
        let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
        for (k, input) in [(0, d), (1, 2 * u)] {
            for dir in ["", "_reverse"] {
                tensors.push((
                    format!("rnn.weight_ih_l{k}{dir}"),
                    vec![g, input],
                    r.vec(g * input),
                ));
                tensors.push((format!("rnn.weight_hh_l{k}{dir}"), vec![g, u], r.vec(g * u)));
                if bias {
                    tensors.push((format!("rnn.bias_ih_l{k}{dir}"), vec![g], r.vec(g)));
                    tensors.push((format!("rnn.bias_hh_l{k}{dir}"), vec![g], r.vec(g)));
                }
            }
        }
        tensors.push(("head.weight".into(), vec![o, 2 * u], r.vec(o * 2 * u)));
        tensors.push(("head.bias".into(), vec![o], r.vec(o)));
        let file = |with_head: bool| {
            let refs: Vec<(String, Vec<usize>, &[f32])> = tensors
                .iter()
                .filter(|(n, _, _)| with_head || !n.starts_with("head."))
                .map(|(n, s, v)| (n.clone(), s.clone(), v.as_slice()))
                .collect();
            safetensors::to_bytes(&refs, &BTreeMap::new()).unwrap()
        };
        let get = |name: &str| -> &[f32] { &tensors.iter().find(|x| x.0 == name).expect(name).2 };
        let x = Array3::from_shape_fn((b, t, d), |(i, j, k)| {
            ((i * 5 + j * 3 + k) as f32 * 0.41).cos() * 1.5
        });

        // Per row: sub-layer 0's output [t, 2u], and sub-layer 1's two directions [t, u]
        // each in input time order.
        let mut last = Vec::new();
        for i in 0..b {
            let mut seq: Vec<f64> = x
                .slice(ndarray::s![i, .., ..])
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let mut width = d;
            let mut dirs = (Vec::new(), Vec::new());
            for k in 0..2 {
                let run = |dir: &str, input: &[f64]| {
                    let key = |p: &str| format!("rnn.{p}_l{k}{dir}");
                    let biases = bias.then(|| (get(&key("bias_ih")), get(&key("bias_hh"))));
                    let f = if lstm {
                        torch_lstm_reference
                    } else {
                        torch_gru_reference
                    };
                    f(
                        input,
                        t,
                        width,
                        u,
                        get(&key("weight_ih")),
                        get(&key("weight_hh")),
                        biases,
                    )
                };
                let fwd = run("", &seq);
                let bwd = reverse_steps(&run("_reverse", &reverse_steps(&seq, t, width)), t, u);
                seq = (0..t)
                    .flat_map(|s| {
                        fwd[s * u..(s + 1) * u]
                            .iter()
                            .chain(&bwd[s * u..(s + 1) * u])
                            .copied()
                    })
                    .collect();
                width = 2 * u;
                dirs = (fwd, bwd);
            }
            last.push((seq, dirs));
        }
        let (w, hb) = (get("head.weight"), get("head.bias"));
        let head = |v: &[f64]| -> Vec<f32> {
            (0..o)
                .map(|c| {
                    (f64::from(hb[c])
                        + (0..2 * u)
                            .map(|j| f64::from(w[c * 2 * u + j]) * v[j])
                            .sum::<f64>()) as f32
                })
                .collect()
        };
        let check = |what: &str, bytes: &[u8], arch: Option<&Arch>, want: ArrayD<f32>| {
            let m = stacklstm::io::load_model_bytes(bytes, "sd", arch)
                .unwrap_or_else(|e| panic!("lstm {lstm}, bias {bias}, {what}: {e}"));
            let kinds: Vec<&str> = m.model.layers().iter().map(|l| l.kind()).collect();
            assert_eq!(kinds[..2], ["Bidirectional", "Bidirectional"], "{what}");
            let got = m.model.predict(&x).expect("predict");
            assert_eq!(got.shape(), want.shape(), "{what}");
            let diff = max_abs_diff(&got, &want);
            assert!(
                diff <= 1e-5,
                "lstm {lstm}, bias {bias}, {what}: max abs diff {diff:e}"
            );
        };

        // Inferred: the head reads h_n of both directions, [forward at t - 1 | backward at 0].
        let mut want = Vec::new();
        for (seq, _) in &last {
            let mut h_n = seq[(t - 1) * 2 * u..(t - 1) * 2 * u + u].to_vec();
            h_n.extend_from_slice(&seq[u..2 * u]);
            want.extend(head(&h_n));
        }
        let want = ArrayD::from_shape_vec(IxDyn(&[b, o]), want).unwrap();
        check("inferred", &file(true), None, want);

        // Explicit: every step through the head.
        let cell = if lstm { "lstm" } else { "gru" };
        let arch = Arch::from_json(
            &format!(
                r#"{{"input_shape": [null, {d}], "layers": [
                {{"type": "bidirectional", "from": "rnn",
                  "layer": {{"type": "{cell}", "units": {u}, "use_bias": {bias}, "return_sequences": true}}}},
                {{"type": "bidirectional", "from": "rnn",
                  "layer": {{"type": "{cell}", "units": {u}, "use_bias": {bias}, "return_sequences": true}}}},
                {{"type": "dense", "units": {o}, "from": "head"}}]}}"#
            ),
            "arch",
        )
        .expect("arch");
        let want: Vec<f32> = last
            .iter()
            .flat_map(|(seq, _)| (0..t).flat_map(|s| head(&seq[s * 2 * u..(s + 1) * 2 * u])))
            .collect();
        let want = ArrayD::from_shape_vec(IxDyn(&[b, t, o]), want).unwrap();
        check("per-timestep head", &file(true), Some(&arch), want);

        // No head: the last sub-layer's merge mode and return_sequences from the
        // architecture.
        for merge in ["sum", "mul", "ave"] {
            for rs in [true, false] {
                let arch = Arch::from_json(
                    &format!(
                        r#"{{"input_shape": [{t}, {d}], "layers": [
                        {{"type": "bidirectional",
                          "layer": {{"type": "{cell}", "units": {u}, "use_bias": {bias}, "return_sequences": true}}}},
                        {{"type": "bidirectional", "merge_mode": "{merge}",
                          "layer": {{"type": "{cell}", "units": {u}, "use_bias": {bias}, "return_sequences": {rs}}}}}]}}"#
                    ),
                    "arch",
                )
                .expect("arch");
                let combine = |f: f64, g: f64| match merge {
                    "sum" => f + g,
                    "mul" => f * g,
                    _ => (f + g) / 2.0,
                };
                let mut want = Vec::new();
                for (_, (fwd, bwd)) in &last {
                    let steps: Vec<(usize, usize)> = if rs {
                        (0..t).map(|s| (s, s)).collect()
                    } else {
                        vec![(t - 1, 0)]
                    };
                    for (sf, sb) in steps {
                        want.extend(
                            (0..u).map(|k| combine(fwd[sf * u + k], bwd[sb * u + k]) as f32),
                        );
                    }
                }
                let shape: &[usize] = if rs { &[b, t, u] } else { &[b, u] };
                let want = ArrayD::from_shape_vec(IxDyn(shape), want).unwrap();
                check(
                    &format!("{merge}, return_sequences {rs}"),
                    &file(false),
                    Some(&arch),
                    want,
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 4 * 6);
}

#[cfg(feature = "keras")]
#[test]
fn keras_dropout_embedding_and_stateful_map_onto_the_engine() {
    use stacklstm::io::keras::{parse_keras_config, to_spec};
    let config = |lstm_extra: &str| {
        format!(
            r#"{{"class_name": "Sequential", "config": {{"name": "m", "layers": [
            {{"class_name": "InputLayer", "config": {{"name": "in", "batch_shape": [null, 4]}}}},
            {{"class_name": "Embedding", "config": {{"name": "embedding", "input_dim": 10, "output_dim": 2}}}},
            {{"class_name": "LSTM", "config": {{"name": "lstm", "units": 3, "dropout": 0.25, "stateful": true{lstm_extra}}}}},
            {{"class_name": "Dropout", "config": {{"name": "dropout", "rate": 0.5}}}},
            {{"class_name": "Dense", "config": {{"name": "dense", "units": 10, "activation": "softmax"}}}}]}}}}"#
        )
    };
    let model = parse_keras_config(&config(""), "m.json").expect("parse");
    assert_eq!(model.input_shape, (Some(4), 1));
    let spec = to_spec(&model);
    let built = spec.build().expect("build");
    let kinds: Vec<&str> = built.layers().iter().map(|l| l.kind()).collect();
    assert_eq!(kinds, ["Embedding", "LSTM", "Dropout", "Dense"]);
    assert!(built.is_stateful());
    let names: Vec<String> = spec
        .weight_shapes()
        .unwrap()
        .into_iter()
        .map(|w| w.0)
        .collect();
    assert_eq!(names[0], "embedding/embeddings");
    // Native round trip of such a model.
    let bytes = native::to_bytes(&built, None, None).expect("bytes");
    let again = native::from_bytes(&bytes, "mem").expect("load");
    assert_eq!(again.model.spec(), built.spec());
    // return_state cannot run in a Sequential: listed as unsupported.
    let e = parse_keras_config(&config(r#", "return_state": true"#), "m.json").unwrap_err();
    assert!(matches!(e, Error::UnsupportedFormat { .. }), "{e:?}");
    assert!(e.to_string().contains("return_state"), "{e}");
}
