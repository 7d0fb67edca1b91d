"""The stacked-LSTM tutorial's four Keras models, with `keras` replaced by `stacklstm` in the
imports and nothing else changed, and the README's Python example."""

import re

import numpy as np
import pytest

from conftest import REPO

# The tutorial's code, as written for Keras.
TUTORIAL = {
    "output_layer": """
from keras.models import Sequential
from keras.layers import LSTM, Dense
from numpy import array
model = Sequential()
model.add(LSTM(1, input_shape=(3, 1)))
model.compile(optimizer='adam', loss='mse')
data = array([0.1, 0.2, 0.3]).reshape((1, 3, 1))
print(model.predict(data))
""",
    "return_sequences": """
from keras.models import Sequential
from keras.layers import LSTM
from numpy import array
model = Sequential()
model.add(LSTM(1, return_sequences=True, input_shape=(3, 1)))
model.compile(optimizer='adam', loss='mse')
data = array([0.1, 0.2, 0.3]).reshape((1, 3, 1))
print(model.predict(data))
""",
    "two_hidden": """
from keras.models import Sequential
from keras.layers import LSTM, Dense
from numpy import array
model = Sequential()
model.add(LSTM(50, return_sequences=True, input_shape=(3, 1)))
model.add(LSTM(50))
model.add(Dense(1))
model.compile(optimizer='adam', loss='mse')
data = array([0.1, 0.2, 0.3]).reshape((1, 3, 1))
print(model.predict(data))
""",
    "four_hidden": """
from keras.models import Sequential
from keras.layers import LSTM, Dense
from numpy import array
model = Sequential()
model.add(LSTM(20, return_sequences=True, input_shape=(3, 1)))
model.add(LSTM(20, return_sequences=True))
model.add(LSTM(20, return_sequences=True))
model.add(LSTM(20))
model.add(Dense(1))
model.compile(optimizer='adam', loss='mse')
data = array([0.1, 0.2, 0.3]).reshape((1, 3, 1))
print(model.predict(data))
""",
}
SHAPES = {"output_layer": (1, 1), "return_sequences": (1, 3, 1), "two_hidden": (1, 1),
          "four_hidden": (1, 1)}


def run(code):
    scope = {}
    exec(compile(code, "<tutorial>", "exec"), scope)
    return scope


@pytest.mark.parametrize("name", sorted(TUTORIAL))
def test_the_tutorial_runs_with_one_import_changed(name, capsys):
    keras_code = TUTORIAL[name]
    ours = keras_code.replace("from keras.", "from stacklstm.")
    # Only the imports differ.
    diff = [(a, b) for a, b in zip(keras_code.splitlines(), ours.splitlines()) if a != b]
    assert diff and all(a.startswith("from keras.") for a, _ in diff)
    scope = run(ours)
    out = capsys.readouterr().out
    model = scope["model"]
    y = model.predict(scope["data"], verbose=0)
    assert y.dtype == np.float32 and y.shape == SHAPES[name]
    assert np.all(np.isfinite(y)) and np.all(np.abs(y) < 1)
    # Keras' progress line, then the printed prediction.
    assert "1/1" in out and "step" in out
    printed = out.split("\n", 1)[1]
    assert np.allclose(np.array([float(v) for v in re.findall(r"-?\d+\.\d+(?:e-?\d+)?",
                                                             printed)]), y.ravel(), atol=1e-6)


def readme_python_blocks():
    text = (REPO / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_the_readme_python_examples_run(capsys, tmp_path, monkeypatch):
    blocks = readme_python_blocks()
    assert len(blocks) >= 2, "the README's Python section has its examples"
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        run(code)
    out = capsys.readouterr().out
    assert "[[" in out
