"""Bad input gives the right Python exception with the engine's message, never a crash."""

import math

import numpy as np
import pytest

import stacklstm
from stacklstm import callbacks, layers, optimizers
from stacklstm.models import Sequential


def model():
    m = Sequential([stacklstm.Input(shape=(3, 2)), layers.LSTM(4), layers.Dense(1)])
    m.compile(optimizer="adam", loss="mse")
    return m


@pytest.mark.parametrize("x, match", [
    (np.zeros((3, 2), np.float32), r"expected a 3-D array \[batch, 3, 2\].*2-D array of shape \[3, 2\]"),
    (np.zeros((1, 1, 3, 2), np.float32), r"4-D array"),
    (np.zeros((1, 4, 2), np.float32), r"expected shape \[batch, 3, 2\], got \[1, 4, 2\]"),
    (np.zeros((1, 3, 5), np.float32), r"expected shape \[batch, 3, 2\], got \[1, 3, 5\]"),
])
def test_wrong_shape_is_a_value_error(x, match):
    with pytest.raises(ValueError, match=match):
        model().predict(x, verbose=0)


def test_nan_and_infinity_are_value_errors_naming_the_position():
    x = np.zeros((2, 3, 2), np.float32)
    x[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN at \[1, 2, 0\]"):
        model().predict(x, verbose=0)
    x[1, 2, 0] = np.inf
    # (in a training batch the position is the batch's)
    with pytest.raises(ValueError, match=r"inf at \[\d, 2, 0\]"):
        model().fit(x, np.zeros((2, 1)), verbose=0)
    with pytest.raises(ValueError, match="not finite"):
        model().train_on_batch(np.zeros((2, 3, 2)), np.array([[0.0], [np.nan]]))
    # Beyond float32's range becomes infinite, and is refused the same way.
    with pytest.raises(ValueError, match="inf"), np.errstate(over="ignore"):
        model().predict(np.full((1, 3, 2), 1e300), verbose=0)


@pytest.mark.parametrize("x", [
    np.array([[["a", "b"]] * 3]),
    np.zeros((1, 3, 2), np.complex64),
    np.array([[[object(), 1]] * 3], dtype=object),
    [[[1.0, 2.0], [3.0]]],
])
def test_wrong_dtype_is_a_value_error(x):
    with pytest.raises(ValueError):
        model().predict(x, verbose=0)


def test_missing_and_bad_files_are_os_and_value_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        stacklstm.load_model(tmp_path / "missing.safetensors")
    with pytest.raises(OSError):
        stacklstm.load_model(tmp_path)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(ValueError, match="not a model file"):
        stacklstm.load_model(bad)
    with pytest.raises(FileNotFoundError):
        model().save(tmp_path / "no" / "such" / "dir" / "m.safetensors")


def test_set_weights_checks_every_shape():
    m = model()
    w = m.get_weights()
    with pytest.raises(ValueError, match=r"lstm/recurrent_kernel: expected shape \[4, 16\], got \[16, 4\]"):
        m.set_weights([w[0], w[1].T, w[2], w[3], w[4]])
    with pytest.raises(ValueError, match="5 weight tensors, got 4"):
        m.set_weights(w[:4])
    with pytest.raises(ValueError, match="non-finite"):
        m.set_weights([w[0] * np.nan] + w[1:])
    for a, b in zip(m.get_weights(), w):
        np.testing.assert_array_equal(a, b)


def test_configuration_errors():
    with pytest.raises(ValueError, match=r"set return_sequences\(true\) on 'lstm'"):
        Sequential([stacklstm.Input(shape=(3, 1)), layers.LSTM(4), layers.LSTM(2)])
    with pytest.raises(ValueError, match="Unrecognized keyword arguments passed to LSTM"):
        layers.LSTM(4, bogus=1)
    with pytest.raises(ValueError, match="units"):
        layers.LSTM(0)
    with pytest.raises(RuntimeError, match="compile"):
        Sequential([stacklstm.Input(shape=(3, 1)), layers.Dense(1)]).fit(
            np.zeros((1, 3, 1)), np.zeros((1, 3, 1)), verbose=0)
    with pytest.raises(ValueError, match="target"):
        model().fit(np.zeros((4, 3, 2)), np.zeros((4, 7)), verbose=0)
    with pytest.raises(ValueError, match="validation_split"):
        model().fit(np.zeros((4, 3, 2)), np.zeros((4, 1)), validation_split=1.5, verbose=0)
    with pytest.raises(ValueError, match="learning_rate"):
        model().compile(optimizer=optimizers.Adam(learning_rate=-1.0), loss="mse")


@pytest.mark.parametrize("make, name", [
    (lambda: layers.LSTM(4, go_backwards=True), "go_backwards"),
    (lambda: layers.LSTM(4, kernel_regularizer="l2"), "kernel_regularizer"),
    (lambda: layers.LSTM(4, kernel_initializer="he_normal"), "kernel_initializer"),
    (lambda: layers.LSTM(4, activation="gelu"), "activation 'gelu'"),
    (lambda: layers.GRU(4, dtype="float16"), "float16"),
    (lambda: layers.Dropout(0.5, noise_shape=(None, 1, 4)), "noise_shape"),
    (lambda: layers.Bidirectional(layers.Dense(2)), "wrapping Dense"),
    (lambda: layers.Bidirectional(layers.LSTM(2), merge_mode=None), "merge_mode"),
    (lambda: optimizers.Adam(amsgrad=True), "amsgrad"),
    (lambda: optimizers.SGD(weight_decay=0.1), "weight_decay"),
    (lambda: model().compile(optimizer="nadam", loss="mse"), "nadam"),
    (lambda: model().compile(optimizer="adam", loss="poisson"), "poisson"),
    (lambda: model().compile(optimizer="adam", loss="mse", metrics=["auc"]), "auc"),
    (lambda: model().fit(np.zeros((2, 3, 2)), np.zeros((2, 1)), sample_weight=np.ones(2)),
     "sample_weight"),
    (lambda: callbacks.EarlyStopping(baseline=0.1), "baseline"),
    (lambda: callbacks.ModelCheckpoint("m-{val_loss:.2f}.safetensors"), "placeholder"),
])
def test_options_keras_has_and_we_do_not_are_named(make, name):
    with pytest.raises(NotImplementedError, match=name):
        make()


def test_divergence_is_a_runtime_error_and_keeps_finite_weights():
    m = Sequential([stacklstm.Input(shape=(3, 2)), layers.LSTM(4), layers.Dense(1)])
    m.compile(optimizer=optimizers.SGD(learning_rate=1e30), loss="mse")
    x = np.ones((8, 3, 2), np.float32)
    y = np.full((8, 1), 1e15, np.float32)
    with pytest.raises(RuntimeError, match="diverged"):
        m.fit(x, y, epochs=5, verbose=0)
    assert all(np.isfinite(w).all() for w in m.get_weights())
    assert not math.isnan(m.evaluate(x, np.zeros((8, 1)), verbose=0))


def test_layer_weights_before_build_are_a_value_error():
    layer = layers.LSTM(2)
    Sequential([layer])
    with pytest.raises(ValueError, match="no weights yet"):
        layer.get_weights()
    with pytest.raises(ValueError, match="not built"):
        Sequential([layers.LSTM(2)]).summary()
