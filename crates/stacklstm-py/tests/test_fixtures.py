"""Every golden Keras case of ../shared/fixtures through the Python API: the model made with
the Keras-named layers, the fixture's weights set with set_weights, the output, ten
train_on_batch steps with Adam and with SGD (losses and get_weights against the fixture's
trained weights), and the case's model.keras read with load_model.

Tolerances are the fixtures' own (their README): output 1e-5 absolute, losses 1e-4
relative, final weights 1e-4 absolute.
"""

import numpy as np
import pytest

import stacklstm
from stacklstm import layers, losses, optimizers
from conftest import FIXTURES, fixture_cases, keras_weights, load_case, tensor

CASES = fixture_cases()


def build(case):
    m = case["model"]
    model = stacklstm.Sequential([stacklstm.Input(shape=tuple(m["input_shape"]))])
    for spec in m["layers"]:
        if spec["type"] == "lstm":
            model.add(layers.LSTM(
                spec["units"], return_sequences=spec["return_sequences"],
                activation=spec["activation"],
                recurrent_activation=spec["recurrent_activation"],
                use_bias=spec["use_bias"], unit_forget_bias=spec["unit_forget_bias"]))
        elif spec["type"] == "dense":
            model.add(layers.Dense(spec["units"], activation=spec["activation"]))
        else:
            raise AssertionError(f"unknown layer {spec}")
    model.set_weights(keras_weights(case["weights"]))
    return model


def loss_of(case):
    t = case["loss"]["type"]
    if t == "sparse_categorical_crossentropy_from_logits":
        return losses.SparseCategoricalCrossentropy(from_logits=True)
    return t  # "mse", "categorical_crossentropy": Keras' names


def optimizer_of(cfg):
    if cfg["type"] == "adam":
        return optimizers.Adam(learning_rate=cfg["learning_rate"], beta_1=cfg["beta_1"],
                               beta_2=cfg["beta_2"], epsilon=cfg["epsilon"])
    assert cfg["type"] == "sgd"
    return optimizers.SGD(learning_rate=cfg["learning_rate"], momentum=cfg["momentum"])


def test_every_fixture_case_is_here():
    assert len(CASES) >= 8, CASES


@pytest.mark.parametrize("name", CASES)
def test_output(name):
    case = load_case(name)
    model = build(case)
    y = model.predict(tensor(case["input"]), verbose=0)
    want = tensor(case["output"])
    assert y.shape == want.shape and y.dtype == np.float32
    assert np.max(np.abs(y - want)) <= 1e-5


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("run", ["train", "train_sgd"])
def test_ten_train_on_batch_steps(name, run):
    case = load_case(name)
    rec = case[run]
    model = build(case)
    model.compile(optimizer=optimizer_of(rec["optimizer"]), loss=loss_of(case))
    x, target = tensor(case["input"]), tensor(case["loss"]["target"])
    got = [model.train_on_batch(x, target) for _ in range(rec["steps"])]
    for k, (a, b) in enumerate(zip(got, rec["losses"])):
        assert abs(a - b) <= 1e-4 * abs(b), f"step {k + 1}: loss {a}, Keras {b}"
    want = keras_weights(rec["final_weights"])
    have = model.get_weights()
    assert len(have) == len(want)
    for i, (a, b) in enumerate(zip(have, want)):
        assert a.shape == b.shape and a.dtype == np.float32
        assert np.max(np.abs(a - b)) <= 1e-4, f"weight {i}"


@pytest.mark.parametrize("name", CASES)
def test_keras_file_loads_and_predicts(name):
    case = load_case(name)
    model = stacklstm.load_model(FIXTURES / name / "model.keras")
    y = model.predict(np.load(FIXTURES / name / "x.npy"), verbose=0)
    assert np.max(np.abs(y - np.load(FIXTURES / name / "y.npy"))) <= 1e-5
    # The same weights, in the same Keras layout and order, as the case lists them.
    for a, b in zip(model.get_weights(), keras_weights(case["weights"])):
        np.testing.assert_array_equal(a, b)
    assert [layer.name for layer in model.layers][0] == "lstm"


@pytest.mark.parametrize("name", CASES)
def test_keras_weights_h5_loads_into_the_same_architecture(name):
    case = load_case(name)
    model = build(case)
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    model.load_weights(FIXTURES / name / "model.weights.h5")
    y = model.predict(tensor(case["input"]), verbose=0)
    assert np.max(np.abs(y - tensor(case["output"]))) <= 1e-5
