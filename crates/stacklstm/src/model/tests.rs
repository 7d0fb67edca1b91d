//! Tests of the model: build, shapes, summary, inference.

use ndarray::Array3;

use super::*;
use crate::init::Rng;
use crate::{Dense, Lstm};

#[test]
fn param_counts_equal_keras() {
    let m = Sequential::new()
        .input_shape(3, 1)
        .add(Lstm::new(1))
        .build()
        .unwrap();
    assert_eq!(m.param_count(), 12);
    let m = Sequential::new()
        .input_shape(3, 1)
        .add(Lstm::new(50))
        .build()
        .unwrap();
    assert_eq!(m.param_count(), 10_400);
    let m = Sequential::new()
        .input_shape(30, 1)
        .add(Lstm::new(50).return_sequences(true))
        .add(Lstm::new(50))
        .add(Dense::new(1))
        .build()
        .unwrap();
    assert_eq!(m.param_count(), 10_400 + 20_200 + 51);
    let s = m.summary();
    assert!(
        s.contains("lstm (LSTM)") && s.contains("lstm_1 (LSTM)") && s.contains("dense (Dense)"),
        "{s}"
    );
    assert!(
        s.contains("(None, 30, 50)") && s.contains("(None, 50)") && s.contains("(None, 1)"),
        "{s}"
    );
    assert!(s.contains("Total params: 30,651"), "{s}");
}

#[test]
fn stacking_after_a_flat_output_names_both_layers() {
    let err = Sequential::new()
        .input_shape(5, 2)
        .add(Lstm::new(4))
        .add(Lstm::new(3))
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("'lstm_1'") && err.contains("'lstm'"), "{err}");
    assert!(err.contains("return_sequences(true) on 'lstm'"), "{err}");
    // Through a Dense in between, the fix still points at the LSTM.
    let err = Sequential::new()
        .input_shape(5, 2)
        .add(Lstm::new(4).name("encoder"))
        .add(Dense::new(3))
        .add(Lstm::new(3))
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("'dense'") && err.contains("on 'encoder'"),
        "{err}"
    );
}

#[test]
fn configuration_errors_are_clear() {
    let e = |s: Sequential| s.build().unwrap_err().to_string();
    assert!(e(Sequential::new().add(Lstm::new(2))).contains("input_shape"));
    assert!(e(Sequential::new().input_shape(3, 1)).contains("no layers"));
    assert!(e(Sequential::new().input_shape(0, 1).add(Lstm::new(2))).contains("timesteps"));
    assert!(e(Sequential::new().input_shape(3, 0).add(Lstm::new(2))).contains("features"));
    assert!(e(Sequential::new().input_shape(3, 1).add(Lstm::new(0)))
        .contains("units must be at least 1"));
    assert!(e(Sequential::new()
        .input_shape(3, 1)
        .add(Lstm::new(1_000_000_000_000)))
    .contains("too large"));
    assert!(e(Sequential::new()
        .input_shape(3, 1)
        .add(Lstm::new(2).return_state(true)))
    .contains("return_state"));
    assert!(e(Sequential::new()
        .input_shape(3, 1)
        .add(Lstm::new(2).name("a"))
        .add(Dense::new(1).name("a")))
    .contains("unique"));
}

#[test]
fn predict_validates_input() {
    let m = Sequential::new()
        .input_shape(3, 2)
        .add(Lstm::new(2))
        .build()
        .unwrap();
    let err = m
        .predict(&Array3::zeros((1, 3, 1)))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("[batch, 3, 2]") && err.contains("[1, 3, 1]"),
        "{err}"
    );
    let err = m
        .predict(&Array3::zeros((1, 4, 2)))
        .unwrap_err()
        .to_string();
    assert!(err.contains("[1, 4, 2]"), "{err}");
    let mut x = Array3::zeros((2, 3, 2));
    x[[1, 0, 1]] = f32::INFINITY;
    let err = m.predict(&x).unwrap_err().to_string();
    assert!(err.contains("[1, 0, 1]"), "{err}");
    // Variable-length models accept any timesteps >= 1, but not 0.
    let v = Sequential::new()
        .input_features(2)
        .add(Lstm::new(2))
        .build()
        .unwrap();
    assert_eq!(
        v.predict(&Array3::zeros((1, 7, 2))).unwrap().shape(),
        &[1, 2]
    );
    assert!(v.predict(&Array3::zeros((1, 0, 2))).is_err());
}

#[test]
fn predict_reuses_its_buffers_without_changing_results() {
    let m = Sequential::new()
        .input_features(3)
        .add(Lstm::new(40).return_sequences(true))
        .add(Lstm::new(40))
        .add(Dense::new(2))
        .seed(4)
        .build()
        .unwrap();
    let mut rng = Rng::new(1);
    let mut x = |b, t| Array3::from_shape_fn((b, t, 3), |_| rng.uniform(-1.0, 1.0) as f32);
    let (big, small, long) = (x(40, 30), x(1, 5), x(3, 50));
    let fresh: Vec<_> = [&big, &small, &long]
        .iter()
        .map(|x| m.predict_with(x.view(), &mut Workspace::default()).unwrap())
        .collect();
    // Any order of calls through the kept buffers gives the fresh results, bit for bit.
    for order in [[0, 1, 2], [2, 0, 1], [1, 2, 0], [0, 0, 1]] {
        for k in order {
            let x = [&big, &small, &long][k];
            assert_eq!(m.predict(x).unwrap(), fresh[k], "input {k}");
        }
    }
}

#[test]
fn batch_split_inference_matches_one_thread_and_is_deterministic() {
    let m = Sequential::new()
        .input_shape(30, 3)
        .add(Lstm::new(40).return_sequences(true))
        .add(Lstm::new(40))
        .add(Dense::new(2))
        .seed(4)
        .build()
        .unwrap();
    let mut rng = Rng::new(6);
    let x = Array3::from_shape_fn((33, 30, 3), |_| rng.uniform(-1.0, 1.0) as f32);
    assert!(crate::kernels::threads() < 2 || m.split_batch(33, 30));
    let mut ws = Workspace::default();
    let split = m.predict_with(x.view(), &mut ws).unwrap();
    assert_eq!(m.predict_with(x.view(), &mut ws).unwrap(), split);
    // Row by row (never split) gives the same values.
    for i in [0, 16, 17, 32] {
        let one = m
            .predict(&x.slice(ndarray::s![i..=i, .., ..]).to_owned())
            .unwrap();
        for (a, b) in one.iter().zip(split.slice(ndarray::s![i, ..]).iter()) {
            assert!((a - b).abs() <= 1e-6, "row {i}: {a} vs {b}");
        }
    }
}

#[test]
fn many_threads_predict_at_once_with_the_same_results() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Model>();
    send_sync::<crate::Trainer>();
    send::<crate::Fit>();
    let m = Sequential::new()
        .input_shape(12, 3)
        .add(Lstm::new(16).return_sequences(true))
        .add(Lstm::new(16))
        .add(Dense::new(2))
        .seed(11)
        .build()
        .unwrap();
    let mut rng = Rng::new(2);
    let inputs: Vec<Array3<f32>> = (1..=6)
        .map(|b| Array3::from_shape_fn((b * 5, 12, 3), |_| rng.uniform(-1.0, 1.0) as f32))
        .collect();
    let alone: Vec<_> = inputs.iter().map(|x| m.predict(x).unwrap()).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|k| {
                let (m, inputs) = (&m, &inputs);
                s.spawn(move || {
                    // Each thread walks the inputs in its own order, many times.
                    (0..20)
                        .map(|r| (k + r) % inputs.len())
                        .map(|i| (i, m.predict(&inputs[i]).unwrap()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            for (i, y) in h.join().unwrap() {
                assert_eq!(y, alone[i], "input {i}");
            }
        }
    });
}

#[test]
fn frozen_layers_are_counted_and_saved() {
    let mut m = Sequential::new()
        .input_shape(4, 2)
        .add(Lstm::new(3).return_sequences(true))
        .add(Dense::new(1).trainable(false))
        .build()
        .unwrap();
    assert_eq!(m.trainable_param_count(), m.param_count() - 4);
    assert!(m.summary().contains(" Non-trainable params: 4 (16.00 B)"));
    m.set_trainable("dense", true).unwrap();
    m.set_trainable("lstm", false).unwrap();
    let json = serde_json::to_string(m.spec()).unwrap();
    let back: Sequential = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, m.spec());
    assert!(json.contains("\"trainable\":false"), "{json}");
    assert_eq!(back.build().unwrap().trainable_param_count(), 4);
}
