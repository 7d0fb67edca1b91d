//! Training behaviour: real (small) learning problems, callbacks, dropout, embedding,
//! stateful equivalence, determinism and divergence.

use std::sync::{Arc, Mutex};

use ndarray::{Array3, ArrayD, Axis, IxDyn};
use stacklstm::optim::Schedule;
use stacklstm::train::{
    Callback, Control, EarlyStopping, EpochLogger, EpochLogs, ModelCheckpoint, ReduceLrOnPlateau,
};
use stacklstm::{
    Activation, Adam, Dense, Dropout, Embedding, Error, Fit, Loss, Lstm, Metric, Model, Sequential,
    Sgd, Trainer,
};

fn sine_data(n: usize, window: usize) -> (Array3<f32>, ArrayD<f32>) {
    let series: Vec<f32> = (0..n + window).map(|t| (0.1 * t as f32).sin()).collect();
    let x = Array3::from_shape_fn((n, window, 1), |(i, t, _)| series[i + t]);
    let y = ArrayD::from_shape_fn(IxDyn(&[n, 1]), |ix| series[ix[0] + window]);
    (x, y)
}

fn sine_model(seed: u64) -> Model {
    Sequential::new()
        .input_shape(20, 1)
        .add(Lstm::new(16).return_sequences(true))
        .add(Lstm::new(16))
        .add(Dense::new(1))
        .seed(seed)
        .build()
        .unwrap()
}

#[test]
fn next_step_sine_regression_learns() {
    // Persistence (predicting the last value) has MSE E[(sin(a+0.1) - sin a)^2] ≈ 0.1²/2 =
    // 0.005 on this series, and the series' variance is 0.5. Requiring 1e-3 — five times
    // better than persistence — means the model must have learnt the dynamics.
    let (x, y) = sine_data(300, 20);
    let m = sine_model(1);
    let mut m = m
        .compile_with_metrics(Loss::Mse, Adam::new(0.01), &[Metric::Mae])
        .unwrap();
    let h = m
        .fit(&x, &y, Fit::new().epochs(25).batch_size(32).seed(2))
        .unwrap();
    let losses = h.series("loss");
    assert_eq!(losses.len(), 25);
    let (tx, ty) = sine_data(60, 20);
    let e = m.evaluate(&tx, &ty, 64).unwrap();
    assert!(
        e.loss < 1e-3,
        "test MSE {} (first epoch {}, last {})",
        e.loss,
        losses[0],
        losses[24]
    );
    assert!(e.metrics["mae"] < 0.03, "{:?}", e.metrics);
}

#[test]
fn sequence_labelling_toy_reaches_full_accuracy() {
    // Label at step t = the symbol seen at step t-1 (step 0: itself): needs one step of
    // memory; 4 symbols one-hot.
    let (n, t, k) = (96, 8, 4);
    let mut rng = stacklstm::init::Rng::new(5);
    let sym: Vec<usize> = (0..n * t).map(|_| rng.below(k)).collect();
    let x = Array3::from_shape_fn((n, t, k), |(i, s, c)| {
        f32::from(u8::from(sym[i * t + s] == c))
    });
    let y = ArrayD::from_shape_fn(IxDyn(&[n, t]), |ix| {
        sym[ix[0] * t + ix[1].saturating_sub(1)] as f32
    });
    let m = Sequential::new()
        .input_shape(t, k)
        .add(Lstm::new(16).return_sequences(true))
        .add(Lstm::new(16).return_sequences(true))
        .add(Dense::new(k))
        .seed(3)
        .build()
        .unwrap();
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: true };
    let mut m = m
        .compile_with_metrics(loss, Adam::new(0.02), &[Metric::Accuracy])
        .unwrap();
    m.fit(&x, &y, Fit::new().epochs(60).batch_size(16)).unwrap();
    let e = m.evaluate(&x, &y, 32).unwrap();
    assert_eq!(e.metrics["accuracy"], 1.0, "{e:?}");
}

#[test]
fn embedding_character_model_overfits_a_short_text() {
    let text = "the quick brown fox jumps over the lazy dog. ";
    // The ids a character vocabulary gives: distinct characters in code-point order.
    let chars: std::collections::BTreeSet<char> = text.chars().collect();
    let id = |c: char| chars.iter().position(|&d| d == c).unwrap() as f32;
    let ids: Vec<f32> = text.repeat(3).chars().map(id).collect();
    let (w, v) = (12, chars.len());
    let n = ids.len() - w;
    let x = Array3::from_shape_fn((n, w, 1), |(i, s, _)| ids[i + s]);
    let y = ArrayD::from_shape_fn(IxDyn(&[n, w]), |ix| ids[ix[0] + ix[1] + 1]);
    let m = Sequential::new()
        .input_shape(w, 1)
        .add(Embedding::new(v, 8))
        .add(Lstm::new(32).return_sequences(true))
        .add(Lstm::new(32).return_sequences(true))
        .add(Dense::new(v))
        .seed(4)
        .build()
        .unwrap();
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: true };
    let mut m = m
        .compile_with_metrics(
            loss,
            Adam::new(0.02),
            &[Metric::Accuracy, Metric::Perplexity],
        )
        .unwrap();
    let h = m.fit(&x, &y, Fit::new().epochs(40).batch_size(16)).unwrap();
    let last = h.epochs.last().unwrap();
    // Positions after the first few characters of a window are fully determined by the
    // text; the first ones are ambiguous ("the q" vs "the l"), so perfect accuracy is not
    // reachable, but a memorised text scores far above chance (1/28).
    assert!(last.metrics["accuracy"] > 0.9, "{last:?}");
    assert!(last.metrics["perplexity"] < 1.5, "{last:?}");
}

#[test]
fn embedding_gradients_match_finite_differences() {
    let m = Sequential::new()
        .input_shape(3, 1)
        .add(Embedding::new(5, 3))
        .add(Lstm::new(2))
        .add(Dense::new(1))
        .seed(8)
        .build()
        .unwrap();
    let x = Array3::from_shape_vec((2, 3, 1), vec![1.0, 4.0, 1.0, 0.0, 2.0, 4.0]).unwrap();
    let y = ArrayD::from_shape_vec(IxDyn(&[2, 1]), vec![0.5, -0.5]).unwrap();
    let mut m = m.compile(Loss::Mse, Sgd::new(1.0)).unwrap();
    m.loss_and_gradients(&x, &y).unwrap();
    let g = m.gradients()[0].clone();
    let w = m.get_weights();
    // Row 3 of the table is never looked up: its gradient is exactly zero.
    assert!(g.index_axis(Axis(0), 3).iter().all(|v| *v == 0.0));
    let eps = 5e-3f32;
    for i in 0..w[0].len() {
        let loss_at = |d: f32| {
            let mut w2 = w.clone();
            w2[0].as_slice_mut().unwrap()[i] += d;
            let mut m2 = m.clone();
            m2.set_weights(&w2).unwrap();
            m2.loss_and_gradients(&x, &y).unwrap().0
        };
        let fd = (loss_at(eps) - loss_at(-eps)) / (2.0 * f64::from(eps));
        let a = f64::from(g.as_slice().unwrap()[i]);
        assert!(
            (a - fd).abs() < 1e-3 + 1e-2 * fd.abs(),
            "table[{i}]: {a} vs {fd}"
        );
    }
    // Ids outside the vocabulary are errors, not panics.
    let bad = Array3::from_shape_vec((1, 3, 1), vec![1.0, 5.0, 0.0]).unwrap();
    assert!(m.predict(&bad).unwrap_err().to_string().contains("[0, 5)"));
}

#[test]
fn dropout_is_off_at_inference_and_masks_are_reused_across_timesteps() {
    let spec = Sequential::new()
        .input_shape(6, 3)
        .add(
            Lstm::new(4)
                .return_sequences(true)
                .dropout(0.5)
                .recurrent_dropout(0.5),
        )
        .add(Dropout::new(0.5))
        .add(Dense::new(1))
        .seed(9);
    let plain = Sequential {
        layers: vec![],
        ..spec.clone()
    }
    .add(Lstm::new(4).return_sequences(true))
    .add(Dense::new(1));
    let m = spec.build().unwrap();
    let mut p = plain.build().unwrap();
    p.set_weights(&m.get_weights()).unwrap();
    let x = Array3::from_shape_fn((2, 6, 3), |(a, b, c)| {
        ((a + 2 * b + 3 * c) as f32 * 0.37).sin()
    });
    // Inference ignores dropout entirely.
    assert_eq!(m.predict(&x).unwrap(), p.predict(&x).unwrap());
    // In training the masks are applied: the loss of a training step (dropout on) differs
    // from the same batch's loss with dropout off, and successive steps draw new masks.
    let mut m = m.compile(Loss::Mse, Sgd::new(1e-12)).unwrap();
    let y = ArrayD::zeros(IxDyn(&[2, 6, 1]));
    let off = m.clone().loss_and_gradients(&x, &y).unwrap().0;
    let on1 = m.train_on_batch(x.view(), y.view()).unwrap();
    let on2 = m.train_on_batch(x.view(), y.view()).unwrap();
    assert!(
        (on1 - off).abs() > 1e-6 && (on2 - on1).abs() > 1e-6,
        "{off} {on1} {on2}"
    );
}

#[test]
fn stateful_two_halves_equal_one_full_sequence() {
    let full = Sequential::new()
        .input_features(2)
        .add(Lstm::new(5).return_sequences(true))
        .add(Lstm::new(3).return_sequences(true))
        .add(Dense::new(2))
        .seed(11)
        .build()
        .unwrap();
    let mut st = Sequential::new()
        .input_features(2)
        .add(Lstm::new(5).return_sequences(true).stateful(true))
        .add(Lstm::new(3).return_sequences(true).stateful(true))
        .add(Dense::new(2))
        .seed(11)
        .build()
        .unwrap();
    let x = Array3::from_shape_fn((3, 8, 2), |(a, b, c)| {
        ((a * 7 + b * 3 + c) as f32 * 0.21).cos()
    });
    let y_full = full.predict(&x).unwrap();
    let h1 = st
        .predict_on_batch(x.slice(ndarray::s![.., ..4, ..]))
        .unwrap();
    let h2 = st
        .predict_on_batch(x.slice(ndarray::s![.., 4.., ..]))
        .unwrap();
    let joined = ndarray::concatenate(Axis(1), &[h1.view(), h2.view()]).unwrap();
    let diff = joined
        .iter()
        .zip(y_full.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        diff < 1e-6,
        "stateful halves differ from the full sequence by {diff}"
    );
    // After reset_states the model starts from zero again.
    st.reset_states();
    let again = st
        .predict_on_batch(x.slice(ndarray::s![.., ..4, ..]))
        .unwrap();
    assert_eq!(again, h1);
    // A different batch size than the carried state is a clear error.
    let err = st
        .predict_on_batch(x.slice(ndarray::s![..2, ..4, ..]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("reset_states"), "{err}");
    // Training carries state across train_on_batch calls too.
    st.reset_states();
    let mut st = st.compile(Loss::Mse, Adam::new(1e-3)).unwrap();
    let tgt = ArrayD::zeros(IxDyn(&[3, 4, 2]));
    let l1 = st
        .train_on_batch(x.slice(ndarray::s![.., ..4, ..]), tgt.view())
        .unwrap();
    assert!(l1.is_finite());
    // fit refuses to shuffle a stateful model.
    let xs = x.slice(ndarray::s![.., ..4, ..]).to_owned();
    let err = st.fit(&xs, &tgt, Fit::new()).unwrap_err().to_string();
    assert!(err.contains("shuffle(false)"), "{err}");
}

fn train_once(seed: u64) -> Vec<ArrayD<f32>> {
    let (x, y) = sine_data(64, 20);
    let m = Sequential::new()
        .input_shape(20, 1)
        .add(
            Lstm::new(8)
                .return_sequences(true)
                .dropout(0.2)
                .recurrent_dropout(0.2),
        )
        .add(Dropout::new(0.1))
        .add(Lstm::new(8))
        .add(Dense::new(1))
        .seed(seed)
        .build()
        .unwrap();
    let mut m = m.compile(Loss::Mse, Adam::new(0.01)).unwrap();
    m.fit(
        &x,
        &y,
        Fit::new()
            .epochs(3)
            .batch_size(16)
            .seed(seed)
            .validation_split(0.25),
    )
    .unwrap();
    m.get_weights()
}

#[test]
fn same_seed_gives_bit_identical_weights() {
    assert_eq!(train_once(21), train_once(21));
    assert_ne!(train_once(21), train_once(22));
}

#[test]
fn resuming_from_epoch_state_is_exact() {
    // Weights + optimizer state + epoch are all training depends on: 2 + 2 epochs equal 4.
    let (x, y) = sine_data(48, 20);
    let build = || {
        let m = Sequential::new()
            .input_shape(20, 1)
            .add(Lstm::new(6).dropout(0.2))
            .add(Dense::new(1))
            .seed(5)
            .build()
            .unwrap();
        m.compile(Loss::Mse, Adam::new(0.01)).unwrap()
    };
    let mut straight = build();
    straight
        .fit(&x, &y, Fit::new().epochs(4).batch_size(16).seed(1))
        .unwrap();
    let mut first = build();
    first
        .fit(&x, &y, Fit::new().epochs(2).batch_size(16).seed(1))
        .unwrap();
    // "Save": weights and optimizer state; "load" them into a fresh model.
    let weights = first.get_weights();
    let opt = first.optimizer().clone();
    let mut resumed = build();
    resumed.set_weights(&weights).unwrap();
    let lens: Vec<usize> = weights.iter().map(|w| w.len()).collect();
    resumed
        .optimizer_mut()
        .load_state(opt.iterations, &lens, &opt.state())
        .unwrap();
    resumed
        .fit(
            &x,
            &y,
            Fit::new().epochs(4).initial_epoch(2).batch_size(16).seed(1),
        )
        .unwrap();
    assert_eq!(resumed.get_weights(), straight.get_weights());
}

#[test]
fn an_overflowing_update_is_refused_and_leaves_the_weights_untouched() {
    let (x, y) = sine_data(64, 20);
    let y = y.mapv(|v| v * 1e30 + 1e30);
    let m = sine_model(3);
    // Finite loss (summed in f64) and gradients (~1e29), but w - lr * g overflows f32.
    let mut m = m.compile(Loss::Mse, Sgd::new(1e12)).unwrap();
    let before = m.get_weights();
    let err = m
        .train_on_batch(x.view(), y.view())
        .expect_err("the update must overflow");
    assert!(matches!(err, Error::Diverged { .. }), "{err}");
    assert!(err.to_string().contains("overflowed"), "{err}");
    assert_eq!(m.get_weights(), before, "no weight may change");
    // With a sane learning rate, training goes on from the same weights.
    // Re-compiling keeps the weights (Keras' model.compile again).
    let mut m = m.compile(Loss::Mse, Sgd::new(1e-40)).unwrap();
    assert_eq!(m.get_weights(), before);
    m.train_on_batch(x.view(), y.view()).unwrap();
    assert_ne!(m.get_weights(), before);
    assert!(m
        .get_weights()
        .iter()
        .all(|w| w.iter().all(|v| v.is_finite())));
}

#[test]
fn divergence_stops_with_epoch_and_step_and_keeps_finite_weights() {
    let (x, y) = sine_data(64, 20);
    let m = sine_model(3);
    let mut m = m.compile(Loss::Mse, Sgd::new(1e30)).unwrap();
    let err = m
        .fit(&x, &y, Fit::new().epochs(5).batch_size(16))
        .unwrap_err();
    match &err {
        Error::Diverged { epoch, step, .. } => assert!(*epoch >= 1 && *step >= 1),
        other => panic!("expected Diverged, got {other}"),
    }
    assert!(
        err.to_string().contains("epoch") && err.to_string().contains("step"),
        "{err}"
    );
    for w in m.get_weights() {
        assert!(
            w.iter().all(|v| v.is_finite()),
            "weights must stay finite after divergence"
        );
    }
    // NaN in the data is refused before training starts.
    let mut xn = x.clone();
    xn[[3, 2, 0]] = f32::NAN;
    let err = m.fit(&xn, &y, Fit::new()).unwrap_err().to_string();
    assert!(err.contains("[0, 2, 0]") || err.contains("NaN"), "{err}");
}

#[test]
fn early_stopping_stops_and_restores_best_weights() {
    struct Val(Arc<Mutex<Vec<f64>>>);
    impl Callback for Val {
        fn on_epoch_end(
            &mut self,
            _: &mut Trainer,
            logs: &EpochLogs,
        ) -> stacklstm::Result<Control> {
            self.0.lock().unwrap().push(logs.val_loss.unwrap());
            Ok(Control::Continue)
        }
    }
    let (x, y) = sine_data(64, 20);
    // Validation targets are noise: training improves the training loss, but validation
    // loss soon stops improving, which is what early stopping watches.
    let mut rng = stacklstm::init::Rng::new(12);
    let (vx, _) = sine_data(16, 20);
    let vy = ArrayD::from_shape_fn(IxDyn(&[16, 1]), |_| rng.uniform(-1.0, 1.0) as f32);
    let m = sine_model(4);
    let mut m = m.compile(Loss::Mse, Adam::new(0.01)).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let h = m
        .fit(
            &x,
            &y,
            Fit::new()
                .epochs(40)
                .batch_size(8)
                .validation_data(vx.clone(), vy.clone())
                .callback(Val(seen.clone()))
                .callback(
                    EarlyStopping::new("val_loss")
                        .patience(2)
                        .restore_best_weights(true),
                ),
        )
        .unwrap();
    let vals = seen.lock().unwrap().clone();
    assert!(
        h.epochs.len() < 40,
        "early stopping never stopped: {vals:?}"
    );
    let best = vals.iter().copied().fold(f64::INFINITY, f64::min);
    // After stopping, the model holds the best epoch's weights: re-evaluating gives the
    // best validation loss.
    let now = m.evaluate(&vx, &vy, 64).unwrap().loss;
    assert!(
        (now - best).abs() <= 1e-9 * best.max(1.0),
        "restored {now}, best {best}"
    );
    // ... and not the last epoch's (which was worse, or training would not have stopped).
    assert!(vals.last().copied().unwrap() > best);
}

#[test]
fn checkpoint_best_only_plateau_and_logger() {
    let dir = std::env::temp_dir().join(format!("stacklstm-train-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (x, y) = sine_data(64, 20);
    let m = sine_model(6);
    let mut m = m
        .compile_with_metrics(Loss::Mse, Adam::new(0.01), &[Metric::Rmse])
        .unwrap();
    let saves = Arc::new(Mutex::new(Vec::new()));
    let s2 = saves.clone();
    let ckpt = ModelCheckpoint::new(
        dir.join("best.json"),
        Box::new(move |m: &Trainer, p: &std::path::Path, _epochs: usize| {
            s2.lock().unwrap().push(m.param_count());
            std::fs::write(p, b"saved").map_err(|e| Error::io(p, e))
        }),
    )
    .monitor("loss")
    .save_best_only(true);
    let log = dir.join("log.csv");
    let plateau = ReduceLrOnPlateau::new("loss")
        .patience(0)
        .factor(0.5)
        .min_delta(1e9);
    let h = m
        .fit(
            &x,
            &y,
            Fit::new()
                .epochs(4)
                .batch_size(16)
                .callback(ckpt)
                .callback(EpochLogger::new(&log))
                .callback(plateau),
        )
        .unwrap();
    // min_delta 1e9: after the first epoch (which sets the reference) no epoch counts as an
    // improvement, so with patience 0 the rate halves after every later epoch. Each log
    // holds the rate the epoch trained with.
    let lrs: Vec<f32> = h.epochs.iter().map(|e| e.learning_rate).collect();
    assert_eq!(lrs, vec![0.01, 0.01, 0.005, 0.0025]);
    // best-only saves happen exactly on epochs whose loss was a new best.
    let losses = h.series("loss");
    let mut best = f64::INFINITY;
    let expected = losses.iter().filter(|l| {
        let b = **l < best;
        best = best.min(**l);
        b
    });
    assert_eq!(saves.lock().unwrap().len(), expected.count());
    assert!(dir.join("best.json").exists());
    let csv = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "epoch,loss,rmse,learning_rate");
    assert_eq!(lines.len(), 5, "{csv}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn schedules_and_clipping_through_compile() {
    let (x, y) = sine_data(32, 20);
    let m = sine_model(7);
    let sched = Schedule::StepDecay {
        step_size: 2,
        gamma: 0.5,
    };
    let mut m = m
        .compile(Loss::Mse, Adam::new(0.01).clipnorm(1.0).schedule(sched))
        .unwrap();
    let h = m.fit(&x, &y, Fit::new().epochs(2).batch_size(16)).unwrap();
    // 2 updates per epoch: after epoch 1 the rate is 0.005, after epoch 2 0.0025.
    assert_eq!(h.epochs[0].learning_rate, 0.005);
    assert_eq!(h.epochs[1].learning_rate, 0.0025);
    assert!(m
        .compile(Loss::Mse, Adam::new(0.01).clipnorm(1.0).clipvalue(1.0))
        .is_err());
    let _ = Activation::Tanh;
}

#[test]
fn predict_in_batches_of_any_size_equals_one_call() {
    let m = sine_model(13);
    let (x, _) = sine_data(37, 20);
    let whole = m.predict(&x).unwrap();
    for bs in [1, 5, 36, 37, 100] {
        let parts = m.predict_batched(&x, bs).unwrap();
        assert_eq!(parts.shape(), whole.shape());
        let d = parts
            .iter()
            .zip(whole.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        // Rows are independent; only the GEMM blocking of a different batch size may
        // change rounding.
        assert!(d < 1e-6, "batch size {bs}: max diff {d}");
    }
    assert!(m.predict_batched(&x, 0).is_err());
}

#[test]
fn on_epoch_begin_runs_before_each_epoch_and_can_set_the_learning_rate() {
    // Records the calls in order and halves the learning rate at every epoch start.
    struct Events(Arc<Mutex<Vec<String>>>);
    impl Callback for Events {
        fn on_epoch_begin(&mut self, t: &mut Trainer, epoch: usize) -> stacklstm::Result<()> {
            let lr = t.optimizer().config.learning_rate;
            t.optimizer_mut().set_learning_rate(lr / 2.0);
            self.0.lock().unwrap().push(format!("begin {epoch}"));
            Ok(())
        }
        fn on_batch_end(&mut self, epoch: usize, batch: usize, _: f64) -> stacklstm::Result<()> {
            self.0
                .lock()
                .unwrap()
                .push(format!("batch {epoch}.{batch}"));
            Ok(())
        }
        fn on_epoch_end(
            &mut self,
            _: &mut Trainer,
            logs: &EpochLogs,
        ) -> stacklstm::Result<Control> {
            self.0
                .lock()
                .unwrap()
                .push(format!("end {} lr {}", logs.epoch, logs.learning_rate));
            Ok(Control::Continue)
        }
    }
    let (x, y) = sine_data(16, 20);
    let mut m = sine_model(3).compile(Loss::Mse, Sgd::new(0.4)).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    m.fit(
        &x,
        &y,
        Fit::new()
            .epochs(3)
            .initial_epoch(1)
            .batch_size(8)
            .callback(Events(seen.clone())),
    )
    .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "begin 1",
            "batch 1.0",
            "batch 1.1",
            "end 1 lr 0.2",
            "begin 2",
            "batch 2.0",
            "batch 2.1",
            "end 2 lr 0.1",
        ]
    );
}

/// Keras 3's EarlyStopping rule: training stops at the `patience`-th epoch in a row without
/// improvement (Keras' `wait >= patience`), not one later; patience 0 stops at the first.
#[test]
fn early_stopping_stops_after_patience_epochs_without_improvement_as_keras() {
    use stacklstm::train::{Callback, Control, EpochLogs, TrainInfo};
    let m = sine_model(3);
    let mut trainer = m.compile(Loss::Mse, Adam::new(0.01)).unwrap();
    // val_loss improves at epochs 0 and 1, then never again.
    let vals = [1.0, 0.9, 0.95, 0.96, 0.97, 0.98, 0.99];
    for (patience, stop_at) in [(0usize, 2usize), (1, 2), (2, 3), (3, 4)] {
        let mut es = EarlyStopping::new("val_loss").patience(patience);
        let info = TrainInfo {
            epochs: vals.len(),
            initial_epoch: 0,
            batches: 1,
            samples: 1,
        };
        es.on_train_begin(&info).unwrap();
        let mut stopped = None;
        for (epoch, &v) in vals.iter().enumerate() {
            let logs = EpochLogs {
                epoch,
                loss: v,
                val_loss: Some(v),
                metrics: Default::default(),
                val_metrics: Default::default(),
                learning_rate: 0.01,
                seconds: 0.0,
            };
            if es.on_epoch_end(&mut trainer, &logs).unwrap() == Control::Stop {
                stopped = Some(epoch);
                break;
            }
        }
        assert_eq!(stopped, Some(stop_at), "patience {patience}");
        assert_eq!(es.stopped_epoch, Some(stop_at));
    }
}
