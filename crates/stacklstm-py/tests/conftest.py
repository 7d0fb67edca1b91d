"""Shared helpers of the Python package's tests."""

import json
import os
import pathlib

import numpy as np
import pytest

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[2]


def shared_dir(env, name):
    """`$env`, else `shared/<name>` beside the repository or above it."""
    if os.environ.get(env):
        return pathlib.Path(os.environ[env])
    d = REPO
    while True:
        p = d / "shared" / name
        if p.is_dir():
            return p
        if d.parent == d:
            return REPO.parent / "shared" / name
        d = d.parent


FIXTURES = shared_dir("STACKLSTM_FIXTURES", "fixtures")
RNN_FIXTURES = shared_dir("STACKLSTM_FIXTURES_RNN", "fixtures-rnn")


def fixture_cases(folder=FIXTURES):
    if not folder.is_dir():
        pytest.fail(f"golden fixtures not found at {folder} (set STACKLSTM_FIXTURES / "
                    "STACKLSTM_FIXTURES_RNN)")
    return sorted(p.name for p in folder.iterdir() if (p / "case.json").is_file())


def tensor(t):
    return np.asarray(t["data"], dtype=np.float32).reshape(t["shape"])


def load_case(name, folder=FIXTURES):
    with open(folder / name / "case.json") as f:
        return json.load(f)


def keras_weights(layers):
    """A fixture's per-layer weight dicts as a Keras get_weights() list."""
    out = []
    for w in layers:
        if "forward" in w:  # Bidirectional: the forward layer's, then the backward's
            out += keras_weights([w["forward"], w["backward"]])
            continue
        for key in ("embeddings", "kernel", "recurrent_kernel", "bias"):
            if key in w:
                out.append(tensor(w[key]))
    return out
