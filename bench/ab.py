#!/usr/bin/env python3
"""Two builds of stacklstm (before and after a change) and a peer framework, on the same
workloads, alternating in one run: the check that a change does not cost speed.

Each round runs the three in a rotating order with one repeat each; the table gives the median
over rounds, the after/before ratio and each build's ratio against the peer (> 1: stacklstm
faster).

  cargo build --release && cp target/release/stacklstm /tmp/stacklstm-after
  python3 bench/ab.py --before /tmp/stacklstm-before --after /tmp/stacklstm-after \\
      --peer torch --workloads ts,deep4,charrnn --rounds 3

Peers, workloads and the Python environment are found as by bench/compare.py; with
--workloads-json bench/workloads-rnn.json (GRU, bidirectional, variable-length workloads) the
peer is the project's bench/bench_torch_rnn.py, as there. A binary from before
`--workloads-json` is run with its own flags.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="stacklstm binary before the change")
    ap.add_argument("--after", required=True, help="stacklstm binary after the change")
    ap.add_argument("--peer", choices=sorted(compare.PEERS), default="torch")
    ap.add_argument("--workloads", default="ts,deep4,charrnn")
    ap.add_argument("--metrics", default="train", help="comma-separated metrics to report ('' for all)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--peers-dir", default=compare.find_up(os.path.join("shared", "bench", "peers")))
    ap.add_argument("--workloads-json", default=compare.find_up(os.path.join("shared", "bench", "workloads.json")),
                    help="the workload table (default: the shared one)")
    ap.add_argument("--python", default=os.path.join(
        os.environ.get("PEERS_VENV", os.path.expanduser("~/.cache/peers-venv")), "bin", "python"))
    args = ap.parse_args()
    args.workloads_json = os.path.abspath(args.workloads_json)
    args.peers_dir = os.path.abspath(args.peers_dir)
    metrics = [m for m in args.metrics.split(",") if m]
    with open(args.workloads_json) as f:
        args.peer_script = compare.peer_script(args.peer, args.peers_dir, json.load(f))

    def ours(binary):
        def run(a, name, tmp):
            a.stacklstm = binary
            return compare.run_ours(a, name, tmp)
        return run

    runners = [("before", ours(args.before)), ("after", ours(args.after)), ("peer", compare.run_peer)]
    recs, errors = {}, {}
    with tempfile.TemporaryDirectory(prefix="ab-") as tmp:
        for name in [n for n in args.workloads.split(",") if n]:
            for r in range(args.rounds):
                order = runners[r % 3:] + runners[:r % 3]
                for who, fn in order:
                    compare.log(f"[ab] {name} round {r + 1}/{args.rounds}: {who}")
                    d = fn(args, name, tmp)
                    for e in d.get("errors", []):
                        errors.setdefault((name, who), e["error"])
                    for rec in d["records"]:
                        if not metrics or rec["metric"] in metrics:
                            recs.setdefault((name, rec["metric"]), {}).setdefault(who, []).append(rec)

    print(f"| workload | metric | unit | before | after | {args.peer} | after/before | "
          f"before vs {args.peer} | after vs {args.peer} |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for (name, metric), by in recs.items():
        if not all(k in by for k in ("before", "after", "peer")):
            continue
        med = {k: statistics.median(r["median"] for r in v) for k, v in by.items()}
        unit = by["after"][0]["unit"]
        faster = (lambda a, b: b / a) if unit == "ms" else (lambda a, b: a / b)
        print(f"| {name} | {metric} | {unit} | {med['before']:,.0f} | {med['after']:,.0f} | "
              f"{med['peer']:,.0f} | {faster(med['after'], med['before']):.3f} | "
              f"{faster(med['before'], med['peer']):.2f}x | {faster(med['after'], med['peer']):.2f}x |")
    for (name, who), e in errors.items():
        print(f"- {name}: {who} failed: {e}")


if __name__ == "__main__":
    main()
