#!/usr/bin/env python3
"""Run stacklstm and one peer framework on the same workloads, alternating, in the same run,
and print the speed ratio per workload and metric.

Absolute times drift on shared machines; a ratio measured with both sides interleaved holds.
Each round runs ours then the peer (odd rounds: the peer first) with one repeat each; the
table gives the median over rounds and the ratio of medians (> 1: stacklstm is faster).

  python3 bench/compare.py --peer torch --workloads ts,deep4 --rounds 3
  python3 bench/compare.py --peer onnxruntime --workloads seed,ts --markdown results.md
  python3 bench/compare.py --peer torch --memory          # also peak training memory
  python3 bench/compare.py --peer torch --readme README.md  # refresh the README's table
  python3 bench/compare.py --peer torch --workloads-json bench/workloads-rnn.json \
      --workloads ts-gru,charrnn-gru                        # the project's GRU workloads

The peer scripts are used as they are from the shared peers folder (default
../shared/bench/peers from the repository root), run with the peers' virtual environment
(PEERS_VENV, default ~/.cache/peers-venv). A workload table that uses the project's
extensions of the schema (`cell`, `bidirectional`, `input.lengths`: bench/workloads-rnn.json)
is run by the PyTorch peer in this folder, bench/bench_torch_rnn.py, which reads them; the
shared scripts would ignore them. Build ours first: cargo build --release.
The contention guard of both harnesses is shared through the BENCH_* variables.
A workload that fails on one side is listed under the table with its error.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def find_up(rel):
    """`rel` next to the repository or any directory above it (the shared folder sits beside
    the checkout: ../shared from the repository root)."""
    d = REPO
    while True:
        p = os.path.join(d, rel)
        if os.path.exists(p):
            return p
        if os.path.dirname(d) == d:
            return os.path.join(REPO, "..", rel)
        d = os.path.dirname(d)
PEERS = {
    "torch": ["bench_torch.py"],
    "torch-nomkldnn": ["bench_torch.py", "--no-mkldnn"],
    "keras-tf": ["bench_keras.py", "--backend", "tensorflow"],
    "keras-jax": ["bench_keras.py", "--backend", "jax"],
    "onnxruntime": ["bench_ort.py"],
}
# The peers that read the project's extensions of the schema: scripts in this folder.
PEERS_EXTENDED = {
    "torch": ["bench_torch_rnn.py"],
    "torch-nomkldnn": ["bench_torch_rnn.py", "--no-mkldnn"],
}
EXTENSIONS = ("cell", "bidirectional", "lengths")


def extensions_used(spec):
    """The schema extensions a workload table uses (sorted)."""
    used = set()
    for w in spec["workloads"].values():
        if "lengths" in w.get("input", {}):
            used.add("lengths")
        for layer in w.get("lstm", []):
            used.update(k for k in ("cell", "bidirectional") if k in layer)
    return sorted(used)


def peer_script(peer, peers_dir, spec):
    """The peer's command (script path and arguments) for a workload table."""
    used = extensions_used(spec)
    if not used:
        script, *extra = PEERS[peer]
        return [os.path.join(peers_dir, script), *extra]
    if peer not in PEERS_EXTENDED:
        raise SystemExit(f"the workload table uses {', '.join(used)}, which only the peers "
                         f"{', '.join(sorted(PEERS_EXTENDED))} read; {peer} would run other models")
    script, *extra = PEERS_EXTENDED[peer]
    return [os.path.join(REPO, "bench", script), *extra]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


_TABLE_FLAG = {}


def table_flags(binary, table, workload):
    """`stacklstm bench` arguments naming the table and the workload. Builds before
    `--workloads-json` took `--workloads FILE --workload NAME` (bench/ab.py runs old ones)."""
    if binary not in _TABLE_FLAG:
        r = subprocess.run([binary, "bench", "--help"], capture_output=True, text=True)
        _TABLE_FLAG[binary] = "--workloads-json" in r.stdout
    if _TABLE_FLAG[binary]:
        return ["--workloads-json", table, "--workloads", workload]
    return ["--workloads", table, "--workload", workload]


def load_run(who, cmd, out, r):
    """The records a harness wrote, or an error payload when it wrote none. A workload
    that fails is in the payload's `errors` (both harnesses write the file anyway)."""
    if os.path.exists(out):
        with open(out) as f:
            d = json.load(f)
        os.remove(out)
        return d
    tail = (r.stderr or "").strip().splitlines()[-1:] or [f"exit code {r.returncode}"]
    raise SystemExit(f"[compare] {who}: {' '.join(cmd)} wrote no results: {tail[0]}")


def run_ours(args, workload, tmp):
    out = os.path.join(tmp, "ours.json")
    cmd = [args.stacklstm, "bench", *table_flags(args.stacklstm, args.workloads_json, workload),
           "--repeats", "1", "--scale", str(args.scale), "--json", "--out", out]
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return load_run("stacklstm", cmd, out, r)


def run_peer(args, workload, tmp):
    out = os.path.join(tmp, "peer.json")
    cmd = [args.python, *args.peer_script, "--out", out,
           "--workloads", workload, "--repeats", "1", "--scale", str(args.scale)]
    env = dict(os.environ, WORKLOADS_JSON=args.workloads_json, PYTHONDONTWRITEBYTECODE="1",
               PEERS_DIR=args.peers_dir,
               TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    return load_run(args.peer, cmd, out, r)


PEER_MEMORY = r"""
import importlib, json, os, sys, torch
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, os.path.dirname(sys.argv[4]))
script = importlib.import_module(os.path.basename(sys.argv[4])[:-3])
import common
torch.set_num_threads(common.THREADS); torch.set_num_interop_threads(1)
def kib(field):
    for line in open('/proc/self/status'):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
spec = common.load_workloads(); w = spec['workloads'][sys.argv[2]]; c = w['measure']['train']
scale = float(sys.argv[3])
adapter = getattr(script, 'TorchRnnAdapter', None) or script.TorchAdapter
ad = adapter(mkldnn=True); model = ad.build(w, sys.argv[2])
x, y = common.make_batch(w, c['batch'])
open('/proc/self/clear_refs', 'w').write('5'); rss0 = kib('VmRSS:')
n = max(1, round(c['warmup_steps'] * scale)) + max(1, round(c['steps'] * scale))
ad.train_seconds(model, x, y, n)
peak = kib('VmHWM:')
print(json.dumps({'peak_rss_mib': peak / 2**20, 'rss_growth_mib': (peak - rss0) / 2**20}))
"""


def peer_memory(args, workload):
    env = dict(os.environ, WORKLOADS_JSON=args.workloads_json, PEERS_DIR=args.peers_dir)
    r = subprocess.run([args.python, "-c", PEER_MEMORY, args.peers_dir, workload, str(args.scale),
                        args.peer_script[0]], check=True, capture_output=True, text=True, env=env)
    return json.loads(r.stdout.strip().splitlines()[-1])


def update_readme(path, peer, text):
    begin, end = f"<!-- compare:{peer}:begin -->", f"<!-- compare:{peer}:end -->"
    with open(path) as f:
        readme = f.read()
    block = f"{begin}\n{text}\n{end}"
    if begin in readme and end in readme:
        readme = readme[:readme.index(begin)] + block + readme[readme.index(end) + len(end):]
    else:
        readme = readme.rstrip("\n") + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(readme)


def key(rec):
    return rec["workload"], rec["metric"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer", choices=sorted(PEERS), default="torch", help="the peer framework")
    ap.add_argument("--workloads", default="", help="comma-separated (default: every one the peer runs)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per workload")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply steps/calls (smoke tests)")
    ap.add_argument("--memory", action="store_true", help="also compare peak training memory (torch only)")
    ap.add_argument("--peers-dir", default=find_up(os.path.join("shared", "bench", "peers")))
    ap.add_argument("--workloads-json", default=find_up(os.path.join("shared", "bench", "workloads.json")),
                    help="the workload table (default: the shared one); bench/workloads-rnn.json "
                         "for the GRU, bidirectional and variable-length workloads")
    ap.add_argument("--python", default=os.path.join(
        os.environ.get("PEERS_VENV", os.path.expanduser("~/.cache/peers-venv")), "bin", "python"))
    ap.add_argument("--stacklstm", default=os.path.join(REPO, "target", "release", "stacklstm"))
    ap.add_argument("--json", help="write every record and the ratios to this file")
    ap.add_argument("--markdown", help="append the table (markdown) to this file")
    ap.add_argument("--readme", help="replace this peer's table in the README (between "
                    "<!-- compare:PEER:begin/end --> markers, added at the end when missing)")
    args = ap.parse_args()
    args.workloads_json = os.path.abspath(args.workloads_json)
    args.peers_dir = os.path.abspath(args.peers_dir)
    with open(args.workloads_json) as f:
        spec = json.load(f)
    args.peer_script = peer_script(args.peer, args.peers_dir, spec)
    names = [n for n in args.workloads.split(",") if n] or list(spec["workloads"])
    unknown = [n for n in names if n not in spec["workloads"]]
    if unknown:
        raise SystemExit(f"no workload named {', '.join(unknown)} in {args.workloads_json}; "
                         f"available: {', '.join(spec['workloads'])}")
    if args.peer == "onnxruntime":
        names = [n for n in names if any(k.startswith("infer") for k in spec["workloads"][n]["measure"])]

    ours, peer, meta = {}, {}, {}
    mem, errors = {}, {}
    with tempfile.TemporaryDirectory(prefix="compare-") as tmp:
        for name in names:
            for r in range(args.rounds):
                order = [("ours", run_ours), ("peer", run_peer)]
                if r % 2:
                    order.reverse()
                for who, fn in order:
                    log(f"[compare] {name} round {r + 1}/{args.rounds}: {who}")
                    d = fn(args, name, tmp)
                    meta[who] = {"meta": d.get("meta"), "machine": d.get("machine")}
                    for e in d.get("errors", []):
                        errors.setdefault((e["workload"], who), e["error"])
                        log(f"[compare] {name}: {who} failed: {e['error']}")
                    for rec in d["records"]:
                        (ours if who == "ours" else peer).setdefault(key(rec), []).append(rec)
                        if who == "ours" and rec["metric"] == "train":
                            mem.setdefault(name, {})["ours"] = rec.get("memory")
            if (args.memory and args.peer == "torch" and "train" in spec["workloads"][name]["measure"]
                    and (name, "peer") not in errors):
                log(f"[compare] {name}: peer training memory")
                mem.setdefault(name, {})["peer"] = peer_memory(args, name)

    rows = []
    for k in ours:
        if k[1] == "infer_latency_direct":
            pk = (k[0], "infer_latency_predict") if k not in peer else k
        else:
            pk = k
        if pk not in peer:
            continue
        o = statistics.median(r["median"] for r in ours[k])
        p = statistics.median(r["median"] for r in peer[pk])
        unit = ours[k][0]["unit"]
        speedup = p / o if unit == "ms" else o / p
        rows.append({"workload": k[0], "metric": k[1], "peer_metric": pk[1], "unit": unit,
                     "ours": o, "peer": p, "speedup": speedup,
                     "ours_rounds": [r["median"] for r in ours[k]],
                     "peer_rounds": [r["median"] for r in peer[pk]]})

    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    cpu = (meta.get("ours", {}).get("machine") or {}).get("cpu_model")
    versions = (meta.get("peer", {}).get("meta") or {}).get("versions", {})
    table = os.path.basename(args.workloads_json)
    head = (f"stacklstm {((meta.get('ours', {}).get('meta') or {}).get('versions') or {}).get('stacklstm')} vs "
            f"{args.peer} ({', '.join(f'{k} {v}' for k, v in versions.items())}); {date}; {cpu}, "
            f"{os.cpu_count()} logical CPUs; {args.rounds} alternating rounds, medians; scale {args.scale}"
            + ("" if table == "workloads.json" else f"; workloads from {table}"))
    lines = [head, "",
             "| workload | metric | unit | stacklstm | " + args.peer + " | speed-up (>1: stacklstm faster) |",
             "|---|---|---|---:|---:|---:|"]
    for r in rows:
        m = r["metric"] if r["metric"] == r["peer_metric"] else f"{r['metric']} (vs {r['peer_metric']})"
        fmtv = (lambda v: f"{v:.4g}") if r["unit"] == "ms" else (lambda v: f"{v:,.0f}")
        lines.append(f"| {r['workload']} | {m} | {r['unit']} | {fmtv(r['ours'])} | {fmtv(r['peer'])} | "
                     f"**{r['speedup']:.2f}x** |")
    mem_rows = []
    for name, m in mem.items():
        if "ours" in m and "peer" in m and m["ours"]:
            for f, label in (("peak_rss_mib", "process peak RSS"), ("rss_growth_mib", "growth during training")):
                o, p = m["ours"].get(f), m["peer"].get(f)
                if o is not None and p:
                    mem_rows.append(f"| {name} | {label} | {o:.1f} | {p:.1f} | {o / p:.2f} |")
    if mem_rows:
        lines += ["", "| workload | training memory | stacklstm MiB | " + args.peer + " MiB | ours / peer |",
                  "|---|---|---:|---:|---:|"] + mem_rows
    if errors:
        lines += [""] + [f"- {name}: {'stacklstm' if who == 'ours' else args.peer} failed: {e}"
                         for (name, who), e in errors.items()]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write(text + "\n\n")
    if args.readme:
        update_readme(args.readme, args.peer, text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"peer": args.peer, "date": date, "platform": platform.platform(), "rows": rows,
                       "workloads_json": args.workloads_json,
                       "errors": [{"workload": n, "side": w, "error": e} for (n, w), e in errors.items()],
                       "memory": mem, "meta": meta, "ours_records": [r for v in ours.values() for r in v],
                       "peer_records": [r for v in peer.values() for r in v]}, f, indent=1)


if __name__ == "__main__":
    main()
