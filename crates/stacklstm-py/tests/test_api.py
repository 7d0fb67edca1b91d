"""Keras' calling conventions and what a Python user expects: weights in Keras' layout,
fit/History/evaluate, callbacks, save/load, pickling, the GIL, Ctrl-C."""

import os
import pickle
import signal
import threading
import time

import numpy as np
import pytest

import stacklstm
from stacklstm import callbacks, layers, optimizers
from stacklstm.models import Sequential
from conftest import keras_weights, load_case, tensor


def sine(n=64, t=12):
    s = np.sin(0.3 * np.arange(n + t + 1)).astype(np.float32)
    x = np.stack([s[i:i + t] for i in range(n)])[..., None]
    y = s[t:t + n, None]
    return x, y


def small_model(seed=3):
    stacklstm.utils.set_random_seed(seed)
    return Sequential([stacklstm.Input(shape=(12, 1)), layers.LSTM(8, return_sequences=True),
                       layers.LSTM(6), layers.Dense(1)])


def test_keras_layout_weights_round_trip_into_predict():
    # Weights written in Keras' layout (as Keras' get_weights() returns them) go in as they
    # are and give Keras' output.
    case = load_case("seed_stack2")
    model = Sequential()
    model.add(layers.LSTM(4, return_sequences=True, input_shape=(3, 1)))
    model.add(layers.LSTM(3))
    model.add(layers.Dense(1))
    keras_w = keras_weights(case["weights"])
    assert [w.shape for w in model.get_weights()] == [w.shape for w in keras_w]
    model.set_weights(keras_w)
    for a, b in zip(model.get_weights(), keras_w):
        np.testing.assert_array_equal(a, b)
    y = model.predict(tensor(case["input"]), verbose=0)
    assert np.max(np.abs(y - tensor(case["output"]))) <= 1e-5
    # A layer's own slice, in its Keras order.
    k, rk, b = model.layers[0].get_weights()
    assert k.shape == (1, 16) and rk.shape == (4, 16) and b.shape == (16,)
    model.layers[2].set_weights([np.zeros((3, 1), np.float32), np.full(1, 0.5, np.float32)])
    np.testing.assert_allclose(model.predict(tensor(case["input"]), verbose=0), 0.5)


def test_input_forms_build_the_same_model():
    x, _ = sine(4)
    a = small_model(1)
    stacklstm.utils.set_random_seed(1)
    b = Sequential()
    b.add(layers.LSTM(8, return_sequences=True, input_shape=(12, 1)))
    b.add(layers.LSTM(6))
    b.add(layers.Dense(1))
    stacklstm.utils.set_random_seed(1)
    c = Sequential([layers.LSTM(8, return_sequences=True), layers.LSTM(6), layers.Dense(1)])
    assert not c.built
    yc = c.predict(x, verbose=0)  # built from the data's shape
    np.testing.assert_array_equal(a.predict(x, verbose=0), b.predict(x, verbose=0))
    np.testing.assert_array_equal(a.predict(x, verbose=0), yc)
    assert [layer.name for layer in a.layers] == ["lstm", "lstm_1", "dense"]
    assert a.output_shape == (None, 1) and a.input_shape == (None, 12, 1)
    assert a.count_params() == 4 * 8 * (1 + 8 + 1) + 4 * 6 * (8 + 6 + 1) + 7


def test_predict_dtypes_and_layouts():
    model = small_model()
    x, _ = sine(5)
    want = model.predict(x, verbose=0)
    assert want.dtype == np.float32 and want.shape == (5, 1)
    np.testing.assert_array_equal(model.predict(x.astype(np.float64), verbose=0), want)
    np.testing.assert_array_equal(model.predict(x.tolist(), verbose=0), want)
    np.testing.assert_array_equal(model(x), want)
    # Not C-contiguous, and read-only: read in place all the same.
    fortran = np.asfortranarray(x)
    np.testing.assert_array_equal(model.predict(fortran, verbose=0), want)
    ro = x.copy()
    ro.setflags(write=False)
    np.testing.assert_array_equal(model.predict(ro, verbose=0), want)
    np.testing.assert_array_equal(model.predict(x, batch_size=2, verbose=0), want)
    ints = np.arange(24).reshape(2, 12, 1)
    assert model.predict(ints, verbose=0).shape == (2, 1)


def test_fit_history_has_keras_keys_and_evaluate_matches():
    model = small_model()
    model.compile(optimizer=optimizers.Adam(learning_rate=0.01), loss="mse",
                  metrics=["mae", "mean_squared_error"])
    x, y = sine()
    h = model.fit(x, y, epochs=3, batch_size=16, validation_split=0.25, verbose=0)
    assert isinstance(h, callbacks.History) and h is model.history
    assert list(h.history) == ["loss", "mae", "mean_squared_error", "val_loss", "val_mae",
                               "val_mean_squared_error"]
    assert h.epoch == [0, 1, 2] and all(len(v) == 3 for v in h.history.values())
    assert h.params == {"verbose": 0, "epochs": 3, "steps": 3}
    # mse as a metric is the mse loss.
    np.testing.assert_allclose(h.history["val_loss"], h.history["val_mean_squared_error"],
                               rtol=1e-5)
    assert h.history["loss"][-1] < h.history["loss"][0]
    loss, mae, mse = model.evaluate(x[48:], y[48:], verbose=0)
    assert abs(loss - h.history["val_loss"][-1]) <= 1e-6 * max(1.0, loss)
    assert model.evaluate(x[48:], y[48:], verbose=0, return_dict=True)["mae"] == mae
    h2 = model.fit(x, y, epochs=2, validation_data=(x[:8], y[:8]), verbose=0)
    assert list(h2.history) == ["loss", "mae", "mean_squared_error", "val_loss", "val_mae",
                                "val_mean_squared_error"]


def test_fit_verbose_prints_keras_progress(capsys):
    model = small_model()
    model.compile(optimizer="adam", loss="mse")
    x, y = sine()
    model.fit(x, y, epochs=2, batch_size=32, verbose=1)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out
    assert "2/2" in out and "━" in out and "- loss:" in out
    model.fit(x, y, epochs=2, verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Epoch 1/2" and lines[1].startswith("2/2 - ") and "loss:" in lines[1]
    model.fit(x, y, epochs=1, verbose=0)
    assert capsys.readouterr().out == ""


class Recorder(callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.events = []

    def on_train_begin(self, logs=None):
        self.events.append("train_begin")

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(f"epoch_begin {epoch}")

    def on_epoch_end(self, epoch, logs=None):
        # The model can be read (and changed) at an epoch boundary.
        assert len(self.model.get_weights()) == 8
        self.events.append(f"epoch_end {epoch} {sorted(logs)}")

    def on_train_end(self, logs=None):
        self.events.append("train_end")


def test_python_callbacks_are_called_with_keras_logs():
    model = small_model()
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    x, y = sine()
    rec = Recorder()
    model.fit(x, y, epochs=2, validation_split=0.25, callbacks=[rec], verbose=0)
    assert rec.events == [
        "train_begin", "epoch_begin 0", "epoch_end 0 ['loss', 'mae', 'val_loss', 'val_mae']",
        "epoch_begin 1", "epoch_end 1 ['loss', 'mae', 'val_loss', 'val_mae']", "train_end"]
    assert rec.model is model


def test_batch_hooks_and_stop_training():
    model = small_model()
    model.compile(optimizer="adam", loss="mse")
    x, y = sine()
    seen = []

    class StopAfterTwoEpochs(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append((batch, logs["loss"]))

        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.model.stop_training = True

    h = model.fit(x, y, epochs=10, batch_size=16, callbacks=[StopAfterTwoEpochs()], verbose=0)
    assert h.epoch == [0, 1]
    assert [b for b, _ in seen] == [0, 1, 2, 3] * 2
    assert all(np.isfinite(v) for _, v in seen)


def test_a_callback_that_sets_weights_changes_training():
    model = small_model()
    model.compile(optimizer="sgd", loss="mse")
    x, y = sine()

    class Zero(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.set_weights([np.zeros_like(w) for w in self.model.get_weights()])

    model.fit(x, y, epochs=1, callbacks=[Zero()], verbose=0)
    assert all(not w.any() for w in model.get_weights())


def test_a_callback_exception_comes_out_of_fit_and_the_model_stays_usable():
    model = small_model()
    model.compile(optimizer="adam", loss="mse")
    x, y = sine()

    class Boom(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise ZeroDivisionError("from the callback")

    with pytest.raises(ZeroDivisionError, match="from the callback"):
        model.fit(x, y, epochs=3, callbacks=[Boom()], verbose=0)
    assert model.predict(x, verbose=0).shape == (64, 1)
    model.fit(x, y, epochs=1, verbose=0)


def test_early_stopping_restores_the_best_weights():
    model = small_model()
    model.compile(optimizer=optimizers.Adam(learning_rate=0.05), loss="mse", metrics=["mae"])
    x, y = sine()
    rng = np.random.default_rng(0)
    noise_y = rng.uniform(-1, 1, size=(16, 1)).astype(np.float32)
    es = callbacks.EarlyStopping(monitor="val_mae", patience=1, restore_best_weights=True)
    h = model.fit(x, y, epochs=40, batch_size=8, validation_data=(x[:16], noise_y),
                  callbacks=[es], verbose=0)
    assert len(h.epoch) < 40 and es.stopped_epoch == h.epoch[-1]
    best = min(h.history["val_mae"])
    got = model.evaluate(x[:16], noise_y, verbose=0, return_dict=True)["mae"]
    assert abs(got - best) <= 1e-6


def test_model_checkpoint_writes_compiled_checkpoints(tmp_path):
    model = small_model()
    model.compile(optimizer="adam", loss="mse")
    x, y = sine()
    cp = callbacks.ModelCheckpoint(str(tmp_path / "ckpt-{epoch:02d}.safetensors"),
                                   monitor="loss")
    model.fit(x, y, epochs=2, callbacks=[cp], verbose=0)
    assert sorted(os.listdir(tmp_path)) == ["ckpt-01.safetensors", "ckpt-02.safetensors"]
    loaded = stacklstm.load_model(tmp_path / "ckpt-02.safetensors")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.optimizer is not None and loaded.optimizer.iterations == 4
    # Training resumes from the optimizer state: one more step gives the same weights.
    model.train_on_batch(x[:8], y[:8])
    loaded.train_on_batch(x[:8], y[:8])
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_reduce_lr_on_plateau_lowers_the_rate():
    model = small_model()
    opt = optimizers.SGD(learning_rate=0.1)
    model.compile(optimizer=opt, loss="mse")
    x, y = sine()
    cb = callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=1e9)
    model.fit(x, y, epochs=3, callbacks=[cb], verbose=0)
    # The first epoch sets the best value; the two after it do not improve on it.
    assert abs(opt.learning_rate - 0.1 * 0.5 ** 2) < 1e-7
    opt.learning_rate = 0.2
    assert abs(model.optimizer.learning_rate - 0.2) < 1e-7


def test_save_load_and_pickle(tmp_path):
    model = small_model()
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    x, y = sine()
    model.fit(x, y, epochs=1, verbose=0)
    want = model.predict(x, verbose=0)
    path = tmp_path / "m.safetensors"
    model.save(path)
    loaded = stacklstm.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), want)
    assert loaded.metrics_names == ["loss", "mae"]
    bare = stacklstm.load_model(path, compile=False)
    assert bare.optimizer is None
    for obj in (model, loaded):
        clone = pickle.loads(pickle.dumps(obj))
        np.testing.assert_array_equal(clone.predict(x, verbose=0), want)
        clone.fit(x, y, epochs=1, verbose=0)
    unbuilt = Sequential([layers.LSTM(2), layers.Dense(1)])
    assert not pickle.loads(pickle.dumps(unbuilt)).built
    with pytest.raises(ValueError, match=r"\.safetensors"):
        model.save(tmp_path / "m.keras")


def test_summary_prints_the_keras_table(capsys):
    small_model().summary()
    out = capsys.readouterr().out
    assert out.startswith('Model: "sequential"')
    assert "│ lstm (LSTM)                     │ (None, 12, 8)          │           320 │" in out
    assert "Total params: 687 (2.68 KB)" in out


def test_float32_input_is_read_in_place():
    import tracemalloc
    model = Sequential([stacklstm.Input(shape=(200, 8)), layers.LSTM(4), layers.Dense(1)])
    x = np.random.default_rng(0).standard_normal((64, 200, 8)).astype(np.float32)
    model.predict(x, verbose=0)

    def peak(arr):
        tracemalloc.start()
        model.predict(arr, verbose=0)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top
    # NumPy reports its allocations to tracemalloc: a float64 input is converted once (a
    # float32 copy of x), a float32 one is not copied at all.
    assert peak(x.astype(np.float64)) >= x.nbytes
    assert peak(x) < x.nbytes // 8


def ticks_during(work):
    ticks = []
    done = threading.Event()

    def count():
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=count)
    t.start()
    time.sleep(0.01)
    start = time.perf_counter()
    work()
    end = time.perf_counter()
    done.set()
    t.join()
    return len([s for s in ticks if start < s < end]), end - start


def test_fit_releases_the_gil():
    model = Sequential([stacklstm.Input(shape=(100, 8)), layers.LSTM(64, return_sequences=True),
                        layers.LSTM(64), layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 100, 8)).astype(np.float32)
    y = rng.standard_normal((128, 1)).astype(np.float32)
    n, seconds = ticks_during(repeat_for(
        0.3, lambda: model.fit(x, y, epochs=1, batch_size=64, verbose=0)))
    assert n >= 0.25 * seconds * 1000, (n, seconds)  # as for predict, below


def repeat_for(seconds, call):
    """Calls `call` until `seconds` have passed (long enough to tell the GIL's holder)."""
    def work():
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            call()
    return work


def test_predict_releases_the_gil():
    model = Sequential([stacklstm.Input(shape=(200, 8)), layers.LSTM(64, return_sequences=True),
                        layers.LSTM(64), layers.Dense(1)])
    x = np.random.default_rng(0).standard_normal((64, 200, 8)).astype(np.float32)
    n, seconds = ticks_during(repeat_for(0.3, lambda: model.predict(x, verbose=0)))
    # The other thread ticks every ~1 ms (~0.85 ticks per ms measured). A C call of that
    # length holding the GIL (`sorted` of 100,000 floats) lets it tick ~0.08 times per ms.
    assert n >= 0.25 * seconds * 1000, (n, seconds)


def test_ctrl_c_stops_training_cleanly():
    model = Sequential([stacklstm.Input(shape=(50, 4)), layers.LSTM(64, return_sequences=True),
                        layers.LSTM(64), layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((512, 50, 4)).astype(np.float32)
    y = rng.standard_normal((512, 1)).astype(np.float32)
    # Python's own Ctrl-C handler, as in an interactive session (a process started in the
    # background inherits SIGINT ignored, and Python then installs no handler).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        start = time.perf_counter()
        with pytest.raises(KeyboardInterrupt):
            model.fit(x, y, epochs=100, batch_size=16, verbose=0)
        assert time.perf_counter() - start < 30
    finally:
        signal.signal(signal.SIGINT, previous)
    steps = model.optimizer.iterations
    assert 0 < steps < 100 * 32
    # The weights are those of the last finished batch: finite, and training goes on.
    assert all(np.isfinite(w).all() for w in model.get_weights())
    model.fit(x[:32], y[:32], epochs=1, verbose=0)
    assert model.optimizer.iterations == steps + 1


def test_embedding_takes_2d_token_ids_and_masking():
    stacklstm.utils.set_random_seed(0)
    model = Sequential([stacklstm.Input(shape=(None,)),
                        layers.Embedding(10, 4, mask_zero=True), layers.GRU(3),
                        layers.Dense(2, activation="softmax")])
    ids = np.array([[1, 2, 3, 0, 0], [4, 5, 6, 7, 8]])
    y = model.predict(ids, verbose=0)
    assert y.shape == (2, 2)
    np.testing.assert_allclose(y.sum(axis=1), 1, rtol=1e-6)
    # Padding after the sequence does not change its output.
    np.testing.assert_allclose(model.predict(ids[:1, :3], verbose=0)[0], y[0], rtol=1e-6)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    h = model.fit(ids, np.array([0, 1]), epochs=2, verbose=0)
    assert list(h.history) == ["loss", "accuracy"]
    masked = Sequential([layers.Masking(mask_value=0.0, input_shape=(4, 2)), layers.LSTM(3),
                         layers.Dropout(0.5), layers.Dense(1)])
    assert masked.predict(np.ones((1, 4, 2)), verbose=0).shape == (1, 1)
