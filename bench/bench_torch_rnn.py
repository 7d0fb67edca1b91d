"""PyTorch peer for the project's recurrent workloads (bench/workloads-rnn.json): GRU stacks,
bidirectional layers and variable-length rows, in the shared peers' harness and record format.

  $PEERS_VENV/bin/python bench/bench_torch_rnn.py --out /tmp/t.json --workloads ts-gru,charrnn-gru
  $PEERS_VENV/bin/python bench/bench_torch_rnn.py --no-mkldnn --out /tmp/t.json

The model is one nn.LSTM or nn.GRU(num_layers=N, batch_first=True, bidirectional=...) and an
nn.Linear head, as the shared bench_torch.py builds for the LSTM workloads. Rows with
`input.lengths` go through pack_padded_sequence(enforce_sorted=False): the padding is
skipped, and a last-state head reads h_n (the forward state after each row's last valid
step, the backward state after step 0). Training: zero_grad, forward, F.mse_loss /
F.cross_entropy, backward, Adam(lr=1e-3).

Timing, the contention guard, the record format and the run loop are the shared peers'
`common.py`, imported from the shared peers folder (`PEERS_DIR`, else shared/bench/peers
found next to the repository or above it, as bench/compare.py finds it). Its two
schema-dependent functions, the FLOP count and the synthetic batch, are replaced here by
versions that read the table's extensions (`cell`, `bidirectional`, `input.lengths`; see
the table's conventions) and agree with common's on tables without them. The table is
`WORKLOADS_JSON` (default: bench/workloads-rnn.json of this repository).
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare  # noqa: E402  (only for find_up: where the shared peers folder is)

PEERS_DIR = os.environ.get("PEERS_DIR") or compare.find_up(os.path.join("shared", "bench", "peers"))
sys.path.insert(0, PEERS_DIR)
os.environ.setdefault("WORKLOADS_JSON", os.path.join(HERE, "workloads-rnn.json"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

import common  # noqa: E402

GATES = {"lstm": 4, "gru": 3}
MERGES = ("concat",)
# The fields a model is made of: an unknown one (a misspelt "cel") would otherwise be ignored
# and another model than the table's measured.
INPUT_FIELDS = {"kind", "timesteps", "features", "vocab", "embedding_dim", "sample", "lengths"}
LAYER_FIELDS = {"units", "return_sequences", "cell", "bidirectional"}


def check(w):
    """Refuses fields of the input and the recurrent layers that this script does not know."""
    unknown = set(w["input"]) - INPUT_FIELDS
    for layer in w["lstm"]:
        unknown |= set(layer) - LAYER_FIELDS
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))} in the workload's input or layers")


def cell(layer):
    c = layer.get("cell", "lstm")
    if c not in GATES:
        raise ValueError(f"unknown cell '{c}' (expected one of {', '.join(GATES)})")
    return c


def directions(layer):
    merge = layer.get("bidirectional")
    if merge is None:
        return 1
    if merge not in MERGES:
        raise ValueError(f"bidirectional '{merge}' is not supported (expected one of {', '.join(MERGES)})")
    return 2


def forward_flops_per_sample(w):
    """common.forward_flops_per_sample, with the extensions: 3 gate blocks for a GRU, both
    directions of a bidirectional layer (2*units wide output), and the mean length
    (min+max)/2 for the recurrent layers of an input with lengths."""
    check(w)
    t = w["input"]["timesteps"]
    lengths = w["input"].get("lengths")
    t2 = lengths["min"] + lengths["max"] if lengths else 2 * t
    width = common.input_width(w)
    flops = 0
    for layer in w["lstm"]:
        u = layer["units"]
        flops += 2 * GATES[cell(layer)] * u * (width + u) * t2 // 2 * directions(layer)
        width = u * directions(layer)
    d = w.get("dense")
    if d:
        flops += 2 * width * d["units"] * (t if d["per_timestep"] else 1)
    return flops


def row_lengths(w, batch, seed):
    """The table's lengths for a batch: a + floor(i*(b-a)/(B-1)), in a random order."""
    lengths = w["input"].get("lengths")
    if not lengths:
        return None
    a, b = lengths["min"], lengths["max"]
    if not 1 <= a <= b <= w["input"]["timesteps"]:
        raise ValueError(f"input.lengths {lengths} must satisfy 1 <= min <= max <= timesteps")
    v = np.array([b if batch == 1 else a + i * (b - a) // (batch - 1) for i in range(batch)], dtype=np.int64)
    return np.random.default_rng(seed + 1).permutation(v)


class Padded:
    """A batch with row lengths: x [B, T, F] zero after each row's length, lengths [B]."""

    def __init__(self, x, lengths):
        self.x, self.lengths = x, lengths


def make_batch(w, batch, seed=0):
    """common.make_batch, with the extensions: class ids [B] for cross-entropy on a
    last-state head, and rows with lengths (zero padding) returned as `Padded`."""
    x, y = _common_make_batch(w, batch, seed)
    d = w.get("dense")
    per_t = d["per_timestep"] if d else w["lstm"][-1]["return_sequences"]
    if w.get("loss") == "softmax_cross_entropy" and not per_t:
        y = np.ascontiguousarray(y[:, 0])
    lengths = row_lengths(w, batch, seed)
    if lengths is None:
        return x, y
    if w["input"]["kind"] != "dense":
        raise ValueError("input.lengths is for dense inputs only")
    x = x.copy()
    for i, n in enumerate(lengths):
        x[i, n:, :] = 0.0
    return Padded(x, lengths), y


_common_make_batch = common.make_batch
# run_suite and record look these up in common at call time.
common.forward_flops_per_sample = forward_flops_per_sample
common.make_batch = make_batch


class StackedRNN(nn.Module):
    def __init__(self, w):
        super().__init__()
        check(w)
        inp = w["input"]
        layers = w["lstm"]
        kinds = {cell(layer) for layer in layers}
        units = {layer["units"] for layer in layers}
        dirs = {directions(layer) for layer in layers}
        if len(kinds) != 1 or len(units) != 1 or len(dirs) != 1:
            raise ValueError("num_layers stacking needs one cell, one width and one direction setting")
        if not all(layer["return_sequences"] for layer in layers[:-1]):
            raise ValueError("every recurrent layer but the last must return sequences")
        self.kind, self.units, self.bidirectional = kinds.pop(), units.pop(), dirs.pop() == 2
        self.emb = nn.Embedding(inp["vocab"], inp["embedding_dim"]) if inp["kind"] == "tokens" else None
        rnn = nn.GRU if self.kind == "gru" else nn.LSTM
        self.rnn = rnn(common.input_width(w), self.units, num_layers=len(layers), batch_first=True,
                       bidirectional=self.bidirectional)
        self.timesteps = inp["timesteps"]
        self.last_seq = layers[-1]["return_sequences"]
        d = w.get("dense")
        self.dense = nn.Linear(self.units * (2 if self.bidirectional else 1), d["units"]) if d else None

    def last_state(self, hidden):
        h_n = hidden[0] if self.kind == "lstm" else hidden  # [num_layers * dirs, B, H]
        return torch.cat([h_n[-2], h_n[-1]], dim=1) if self.bidirectional else h_n[-1]

    def forward(self, x, lengths=None):
        if self.emb is not None:
            x = self.emb(x)
        if lengths is None:
            y, hidden = self.rnn(x)
            if not self.last_seq:
                # One direction: the last step's output is the last state (as bench_torch.py);
                # the backward direction's last state is at step 0, so read h_n.
                y = self.last_state(hidden) if self.bidirectional else y[:, -1, :]
        else:
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, hidden = self.rnn(packed)
            if self.last_seq:
                y, _ = pad_packed_sequence(out, batch_first=True, total_length=self.timesteps)
            else:
                y = self.last_state(hidden)  # h_n is returned in the rows' original order
        if self.dense is not None:
            y = self.dense(y)
        return y


def tensors(x):
    """(x tensor, lengths tensor or None) of a batch from make_batch."""
    if isinstance(x, Padded):
        return torch.from_numpy(x.x), torch.from_numpy(x.lengths)
    return torch.from_numpy(x), None


class TorchRnnAdapter:
    def __init__(self, mkldnn):
        self.mkldnn = mkldnn
        self.name = "torch" if mkldnn else "torch-nomkldnn"
        self.kernels = {}

    def build(self, w, name):
        torch.manual_seed(0)
        model = StackedRNN(w)
        model.loss_kind = w.get("loss")
        model.opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        self.kernels[name] = self._kernels(model, w)
        return model

    def _step(self, model, x, lengths, y):
        model.opt.zero_grad(set_to_none=True)
        out = model(x, lengths)
        if model.loss_kind == "softmax_cross_entropy":
            loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        else:
            loss = F.mse_loss(out, y)
        loss.backward()
        model.opt.step()

    def train_seconds(self, model, x, y, steps):
        model.train()
        (xt, lt), yt = tensors(x), torch.from_numpy(y)
        return common.time_block(lambda: self._step(model, xt, lt, yt), steps)

    def infer_seconds(self, model, x, calls):
        model.eval()
        xt, lt = tensors(x)
        with torch.inference_mode():
            return common.time_block(lambda: model(xt, lt), calls)

    def latency_fns(self, model, x1):
        model.eval()
        xt, lt = tensors(x1)

        def predict():  # what a user writes: numpy in, no autograd, numpy out
            with torch.inference_mode():
                a, n = tensors(x1)
                return model(a, n).numpy()

        def direct():  # plain module call on a prepared tensor (autograd recording on)
            return model(xt, lt)

        return {"predict": predict, "direct": direct}

    def _kernels(self, model, w):
        """Recurrent op names seen by the profiler in one forward and one training step."""
        from torch.profiler import profile, ProfilerActivity

        def rnn_ops(p):
            return sorted({e.key for e in p.key_averages()
                           if any(k in e.key.lower() for k in ("lstm", "gru", "rnn", "pack"))})
        x, y = make_batch(w, 2)
        (xt, lt), yt = tensors(x), torch.from_numpy(y)
        out = {}
        with profile(activities=[ProfilerActivity.CPU]) as p:
            with torch.inference_mode():
                model.eval()
                model(xt, lt)
        out["inference"] = rnn_ops(p)
        if w.get("loss"):
            model.train()
            with profile(activities=[ProfilerActivity.CPU]) as p:
                self._step(model, xt, lt, yt)
            out["training"] = rnn_ops(p)
        return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(ap)
    ap.add_argument("--no-mkldnn", action="store_true", help="disable oneDNN (torch.backends.mkldnn)")
    args = ap.parse_args()
    torch.set_num_threads(common.THREADS)
    torch.set_num_interop_threads(1)
    torch.backends.mkldnn.enabled = not args.no_mkldnn
    adapter = TorchRnnAdapter(mkldnn=not args.no_mkldnn)
    meta = {
        "versions": {"torch": torch.__version__, "numpy": np.__version__},
        "threads": {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()},
        "mkldnn_available": torch.backends.mkldnn.is_available(),
        "mkldnn_enabled": torch.backends.mkldnn.enabled,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "blas": "MKL" if torch.backends.mkl.is_available() else "other",
        "workloads_file": os.path.abspath(common.WORKLOADS_PATH),
        "kernels_seen": adapter.kernels,
        "paths": {
            "model": "nn.LSTM / nn.GRU(num_layers=N, batch_first=True, bidirectional=...) + nn.Linear; "
                     "rows with lengths: pack_padded_sequence(enforce_sorted=False), h_n for a last-state head",
            "train": "zero_grad; forward; F.mse_loss / F.cross_entropy; backward; Adam.step",
            "infer_throughput": "model.eval(); torch.inference_mode(); model(x_tensor)",
            "infer_latency_predict": "torch.inference_mode(); model(torch.from_numpy(x)).numpy()",
            "infer_latency_direct": "model(x_tensor) with autograd recording on",
        },
    }
    common.run_suite(adapter, args, meta)


if __name__ == "__main__":
    main()
