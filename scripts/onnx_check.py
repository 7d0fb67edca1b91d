#!/usr/bin/env python3
"""Run an ONNX model with onnxruntime (CPU) for the stacklstm export parity test.

Usage:
    onnx_check.py MODEL.onnx IN.npy OUT.npy [IN2.npy OUT2.npy ...] [--checker]

Feeds each IN.npy (float32 [batch, T, F]) to the model's single input and writes the model's
single output to the matching OUT.npy. Prints one JSON line describing the model's input and
output (names, shapes with symbolic dims as strings). With --checker it also runs
onnx.checker.check_model(full_check=True) when the `onnx` package is installed (a dev check;
the parity test does not need it) and reports "checker": "ok" | "skipped", plus "roundtrip":
"identical" | "differs" (whether onnx re-serializes the file to the same bytes).
"""
import json
import sys

import numpy as np
import onnxruntime as ort


def main(argv):
    checker = "--checker" in argv
    args = [a for a in argv if a != "--checker"]
    if len(args) < 3 or len(args) % 2 == 0:
        print(__doc__, file=sys.stderr)
        return 2
    model, pairs = args[0], list(zip(args[1::2], args[2::2]))

    info = {}
    if checker:
        try:
            import onnx
        except ImportError:
            info["checker"] = "skipped"
        else:
            proto = onnx.load(model)
            onnx.checker.check_model(proto, full_check=True)
            info["checker"] = "ok"
            # The reference serializer writes fields in field-number order, as the exporter
            # does, so a re-serialization must give back the very same bytes.
            with open(model, "rb") as fh:
                same = proto.SerializeToString() == fh.read()
            info["roundtrip"] = "identical" if same else "differs"

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    ins, outs = sess.get_inputs(), sess.get_outputs()
    if len(ins) != 1 or len(outs) != 1:
        raise SystemExit(f"expected one input and one output, got {len(ins)} and {len(outs)}")
    info["input"] = {"name": ins[0].name, "shape": [d for d in ins[0].shape]}
    info["output"] = {"name": outs[0].name, "shape": [d for d in outs[0].shape]}
    info["ort_version"] = ort.__version__

    for src, dst in pairs:
        x = np.load(src)
        if x.dtype != np.float32:
            raise SystemExit(f"{src}: expected float32, got {x.dtype}")
        (y,) = sess.run(None, {ins[0].name: x})
        np.save(dst, np.ascontiguousarray(y, dtype=np.float32))
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
