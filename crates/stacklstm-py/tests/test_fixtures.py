"""Every golden Keras case of ../shared/fixtures (and of ../shared/fixtures-rnn: GRU,
Bidirectional, Masking, Embedding) through the Python API: the model made with
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
from conftest import FIXTURES, RNN_FIXTURES, fixture_cases, keras_weights, load_case, tensor

CASES = fixture_cases()
RNN_CASES = fixture_cases(RNN_FIXTURES)
ALL = [(FIXTURES, c) for c in CASES] + [(RNN_FIXTURES, c) for c in RNN_CASES]
IDS = [f"{d.name}/{c}" for d, c in ALL]


def recurrent(spec):
    cls = {"lstm": layers.LSTM, "gru": layers.GRU}[spec["type"]]
    opts = {k: v for k, v in spec.items() if k not in ("type", "units")}
    return cls(spec["units"], **opts)


def make_layer(spec):
    t = spec["type"]
    if t in ("lstm", "gru"):
        return recurrent(spec)
    if t == "bidirectional":
        return layers.Bidirectional(recurrent(spec["layer"]), merge_mode=spec["merge_mode"])
    if t == "dense":
        return layers.Dense(spec["units"], activation=spec["activation"])
    if t == "masking":
        return layers.Masking(mask_value=spec["mask_value"])
    if t == "embedding":
        return layers.Embedding(spec["input_dim"], spec["output_dim"],
                                mask_zero=spec["mask_zero"])
    raise AssertionError(f"unknown layer {spec}")


def build(case):
    m = case["model"]
    model = stacklstm.Sequential([stacklstm.Input(shape=tuple(m["input_shape"]))])
    for spec in m["layers"]:
        model.add(make_layer(spec))
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
    assert len(RNN_CASES) >= 9, RNN_CASES


@pytest.mark.parametrize("folder, name", ALL, ids=IDS)
def test_output(folder, name):
    case = load_case(name, folder)
    model = build(case)
    y = model.predict(tensor(case["input"]), verbose=0)
    want = tensor(case["output"])
    assert y.shape == want.shape and y.dtype == np.float32
    assert np.max(np.abs(y - want)) <= 1e-5


@pytest.mark.parametrize("folder, name", ALL, ids=IDS)
@pytest.mark.parametrize("run", ["train", "train_sgd"])
def test_ten_train_on_batch_steps(folder, name, run):
    case = load_case(name, folder)
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


@pytest.mark.parametrize("folder, name", ALL, ids=IDS)
def test_keras_file_loads_and_predicts(folder, name):
    case = load_case(name, folder)
    model = stacklstm.load_model(folder / name / "model.keras")
    y = model.predict(np.load(folder / name / "x.npy"), verbose=0)
    assert np.max(np.abs(y - np.load(folder / name / "y.npy"))) <= 1e-5
    # The same weights, in the same Keras layout and order, as the case lists them.
    want = keras_weights(case["weights"])
    assert len(model.get_weights()) == len(want)
    for a, b in zip(model.get_weights(), want):
        np.testing.assert_array_equal(a, b)
    assert [layer._class_name for layer in model.layers] == [
        layer._class_name for layer in build(case).layers]


@pytest.mark.parametrize("folder, name", ALL, ids=IDS)
def test_keras_weights_h5_loads_into_the_same_architecture(folder, name):
    case = load_case(name, folder)
    model = build(case)
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    model.load_weights(folder / name / "model.weights.h5")
    y = model.predict(tensor(case["input"]), verbose=0)
    assert np.max(np.abs(y - tensor(case["output"]))) <= 1e-5
