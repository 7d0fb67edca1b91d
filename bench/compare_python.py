#!/usr/bin/env python3
"""stacklstm's Python API against Keras/JAX and PyTorch, in the same run, alternating.

Each round runs every framework once on each workload (the order rotates per round):
`stacklstm-py` (bench/bench_python.py, through the Python package), the peers' Keras/JAX and
PyTorch scripts, and the `stacklstm` binary's own bench (the engine without Python, to
measure what the Python layer adds per call). The table gives the median over rounds, the
speed-ups of the Python API over each peer, and the Python overhead per `predict` call
(`seed` latency through Python minus the binary's).

  python3 bench/compare_python.py --py target/py-venv/bin/python \\
      --keras-python /path/to/keras-jax-venv/bin/python --rounds 3

Build first: `bash scripts/python-tests.sh` (installs the package into target/py-venv) and
`cargo build --release`. The contention guard is the peers' (BENCH_* variables); every
record keeps `others_cpu_frac`, the share of the CPUs other processes used while it ran.
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bench"))
from compare import find_up  # noqa: E402


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def run(cmd, out, env=None):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=env)
    with open(out) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", default="seed,ts")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--py", default=os.path.join(REPO, "target", "py-venv", "bin", "python"),
                    help="a Python with the stacklstm package installed")
    ap.add_argument("--keras-python", required=True, help="a Python with keras and jax")
    ap.add_argument("--torch-python", default=os.path.join(
        os.environ.get("PEERS_VENV", os.path.expanduser("~/.cache/peers-venv")), "bin", "python"))
    ap.add_argument("--stacklstm", default=os.path.join(REPO, "target", "release", "stacklstm"))
    ap.add_argument("--peers-dir", default=find_up(os.path.join("shared", "bench", "peers")))
    ap.add_argument("--workloads-json",
                    default=find_up(os.path.join("shared", "bench", "workloads.json")))
    ap.add_argument("--json", help="write every record and the table's numbers here")
    ap.add_argument("--render", help="print the table of a run saved with --json (runs nothing)")
    args = ap.parse_args()
    if args.render:
        with open(args.render) as f:
            saved = json.load(f)
        recs = {tuple(k.split("/", 2)): v for k, v in saved["records"].items()}
        print(render(recs, saved["meta"], saved["names"], saved["rounds"], saved["scale"],
                     saved["date"])[0])
        return
    peers = os.path.abspath(args.peers_dir)
    wl = os.path.abspath(args.workloads_json)
    env = dict(os.environ, WORKLOADS_JSON=wl, PEERS_DIR=peers, PYTHONDONTWRITEBYTECODE="1",
               TF_CPP_MIN_LOG_LEVEL="2")
    common = ["--repeats", "1", "--scale", str(args.scale)]
    frameworks = {
        "stacklstm-py": lambda w, out: run(
            [args.py, os.path.join(REPO, "bench", "bench_python.py"), "--out", out,
             "--workloads", w, *common], out, env),
        "keras-jax": lambda w, out: run(
            [args.keras_python, os.path.join(peers, "bench_keras.py"), "--backend", "jax",
             "--out", out, "--workloads", w, *common], out, dict(env, KERAS_BACKEND="jax")),
        "torch": lambda w, out: run(
            [args.torch_python, os.path.join(peers, "bench_torch.py"), "--out", out,
             "--workloads", w, *common], out, env),
        "stacklstm": lambda w, out: run(
            [args.stacklstm, "bench", "--workloads", w, "--workloads-json", wl, "--repeats", "1",
             "--scale", str(args.scale), "--json", "--out", out], out, env),
    }
    names = [n for n in args.workloads.split(",") if n]
    recs, meta = {}, {}
    with tempfile.TemporaryDirectory(prefix="compare-py-") as tmp:
        for r in range(args.rounds):
            order = list(frameworks)
            order = order[r % len(order):] + order[:r % len(order)]
            for name in names:
                for fw in order:
                    log(f"[compare-python] round {r + 1}/{args.rounds} {name}: {fw}")
                    d = frameworks[fw](name, os.path.join(tmp, f"{fw}.json"))
                    meta[fw] = d.get("meta")
                    for rec in d["records"]:
                        recs.setdefault((fw, rec["workload"], rec["metric"]), []).append(rec)

    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    text, rows, overhead = render(recs, meta, names, args.rounds, args.scale, date)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": date, "names": names, "rounds": args.rounds, "scale": args.scale,
                       "rows": rows, "python_overhead_us": overhead, "meta": meta,
                       "records": {"/".join(k): v for k, v in recs.items()}}, f, indent=1)


def render(recs, meta, names, rounds, scale, date):
    """The markdown table of a run: medians over rounds, speed-ups, Python overhead."""
    frameworks = ("stacklstm-py", "keras-jax", "torch", "stacklstm")

    def med(fw, w, m):
        rs = recs.get((fw, w, m))
        return statistics.median(x["median"] for x in rs) if rs else None

    def others(fw, w, m):
        vals = [o for x in recs.get((fw, w, m), []) for o in (x.get("others_cpu_frac") or [])
                if o is not None]
        return max(vals) if vals else None

    versions = {fw: (meta.get(fw) or {}).get("versions", {}) for fw in frameworks}
    head = (f"stacklstm {versions['stacklstm-py'].get('stacklstm')} Python API vs keras-jax "
            f"(keras {versions['keras-jax'].get('keras')}, jax {versions['keras-jax'].get('jax')}) "
            f"and torch ({versions['torch'].get('torch')}); {date}; {os.cpu_count()} logical "
            f"CPUs; {rounds} alternating rounds, medians; scale {scale}")
    lines = [head, "",
             "| workload | metric | unit | stacklstm-py | keras-jax | torch | vs keras-jax | "
             "vs torch | engine alone | others' CPU share (max) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    rows = []
    keys = sorted({(w, m) for fw, w, m in recs if fw == "stacklstm-py"},
                  key=lambda k: (names.index(k[0]) if k[0] in names else 99, k[1]))
    for w, m in keys:
        o = med("stacklstm-py", w, m)
        unit = recs[("stacklstm-py", w, m)][0]["unit"]
        peers_v = {p: med(p, w, m) for p in ("keras-jax", "torch")}
        ratio = {p: (None if v is None else (v / o if unit == "ms" else o / v))
                 for p, v in peers_v.items()}
        share = max([s for s in (others(fw, w, m) for fw in frameworks) if s is not None],
                    default=None)
        fmt = (lambda v: "-" if v is None else f"{v:.4g}") if unit == "ms" else \
            (lambda v: "-" if v is None else f"{v:,.0f}")
        rf = (lambda v: "-" if v is None else f"**{v:.2f}x**")
        lines.append(f"| {w} | {m} | {unit} | {fmt(o)} | {fmt(peers_v['keras-jax'])} | "
                     f"{fmt(peers_v['torch'])} | {rf(ratio['keras-jax'])} | {rf(ratio['torch'])} | "
                     f"{fmt(med('stacklstm', w, m))} | {'-' if share is None else f'{share:.0%}'} |")
        rows.append({"workload": w, "metric": m, "unit": unit, "stacklstm-py": o, **peers_v,
                     "vs": ratio, "others_cpu_frac_max": share})
    py_lat = med("stacklstm-py", "seed", "infer_latency_predict")
    rs_lat = med("stacklstm", "seed", "infer_latency_predict")
    overhead = None
    if py_lat is not None and rs_lat is not None:
        overhead = (py_lat - rs_lat) * 1e3
        lines += ["", f"Python overhead per `predict` call (seed, batch 1): {py_lat * 1e3:.2f} µs "
                  f"through `model.predict(x, verbose=0)` against {rs_lat * 1e3:.2f} µs for the "
                  f"engine's own `Model::predict` (the `stacklstm` binary): **{overhead:.2f} µs**."]
    return "\n".join(lines), rows, overhead


if __name__ == "__main__":
    main()
