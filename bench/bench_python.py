"""The shared peer benchmarks through stacklstm's Python API (framework `stacklstm-py`).

  python bench/bench_python.py --out raw/stacklstm-py.json --workloads seed,ts

The same model, data and measurement as the peers' Keras script (`bench_keras.py` in the
shared peers folder): `Sequential([Input, LSTM..., Dense])`, Adam(1e-3), training with
`model.fit` over exactly `steps` batches, inference with `model.predict`, single-sample
latency of `predict(x, verbose=0)`, `predict_on_batch(x)` and the direct call `model(x)`.
Records follow the peers' format (their `common.py`: contention guard, repeats, medians).
Run it with a Python that has the `stacklstm` package installed (`pip install .`).
"""

import argparse
import os
import sys


def find_up(rel):
    d = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    while True:
        p = os.path.join(d, rel)
        if os.path.exists(p):
            return p
        if os.path.dirname(d) == d:
            return rel
        d = os.path.dirname(d)


def parse_args():
    peers = os.environ.get("PEERS_DIR") or find_up(os.path.join("shared", "bench", "peers"))
    sys.path.insert(0, peers)
    import common
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(ap)
    return ap.parse_args()


args = parse_args()

import numpy as np  # noqa: E402

import common  # noqa: E402
import stacklstm  # noqa: E402
from stacklstm import layers, optimizers  # noqa: E402


def build_model(w):
    inp = w["input"]
    t = inp["timesteps"]
    model = [stacklstm.Input(shape=(t,) if inp["kind"] == "tokens" else (t, common.input_width(w)))]
    if inp["kind"] == "tokens":
        model.append(layers.Embedding(inp["vocab"], inp["embedding_dim"]))
    for layer in w["lstm"]:
        model.append(layers.LSTM(layer["units"], return_sequences=layer["return_sequences"]))
    d = w.get("dense")
    if d:
        model.append(layers.Dense(d["units"]))  # logits, as in the Keras peer
    return stacklstm.Sequential(model)


class Adapter:
    name = "stacklstm-py"

    def build(self, w, name):
        stacklstm.utils.set_random_seed(0)
        model = build_model(w)
        loss = w.get("loss")
        loss_fn = (stacklstm.losses.SparseCategoricalCrossentropy(from_logits=True)
                   if loss == "softmax_cross_entropy" else "mse")
        model.compile(optimizer=optimizers.Adam(learning_rate=1e-3), loss=loss_fn)
        return model

    def train_seconds(self, model, x, y, steps):
        xs, ys = common.tile_batches(x, y, steps)
        b = x.shape[0]
        return common.time_block(
            lambda: model.fit(xs, ys, batch_size=b, epochs=1, shuffle=False, verbose=0), 1)

    def infer_seconds(self, model, x, calls):
        xs = np.concatenate([x] * calls, axis=0)
        b = x.shape[0]
        return common.time_block(lambda: model.predict(xs, batch_size=b, verbose=0), 1)

    def latency_fns(self, model, x1):
        return {
            "predict": lambda: model.predict(x1, verbose=0),
            "predict_on_batch": lambda: model.predict_on_batch(x1),
            "direct": lambda: model(x1),
        }


def main():
    meta = {
        "versions": {"stacklstm": stacklstm.__version__, "numpy": np.__version__},
        "threads": {"engine": stacklstm.threads()},
        "paths": {
            "train": "model.fit(X, Y, batch_size=B, epochs=1, shuffle=False, verbose=0) over `steps` batches",
            "infer_throughput": "model.predict(X, batch_size=B, verbose=0) over `calls` batches",
            "infer_latency_predict": "model.predict(x, verbose=0)",
            "infer_latency_predict_on_batch": "model.predict_on_batch(x)",
            "infer_latency_direct": "model(x)",
        },
    }
    common.run_suite(Adapter(), args, meta)


if __name__ == "__main__":
    main()
