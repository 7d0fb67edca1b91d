#!/usr/bin/env bash
# Creates (once) a Python venv with onnxruntime + numpy + safetensors for the interop tests
# (ONNX export parity in onnxruntime; native files read by Python's safetensors).
#
# Usage:  scripts/onnx-venv.sh            # venv in target/onnx-venv
#         STACKLSTM_ONNX_VENV=/some/dir scripts/onnx-venv.sh
#         STACKLSTM_ONNX_WITH_CHECKER=1 scripts/onnx-venv.sh   # also the `onnx` package (dev check)
# Prints the venv's python path as its last line; use it as STACKLSTM_ONNX_PYTHON:
#         export STACKLSTM_ONNX_PYTHON="$(scripts/onnx-venv.sh | tail -n1)"
# Idempotent: when the pinned packages are already importable it installs nothing.
set -euo pipefail

ORT_VERSION="1.32.0"
NUMPY_VERSION="2.4.6"
ONNX_VERSION="1.23.2"
SAFETENSORS_VERSION="0.8.0"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
venv="${STACKLSTM_ONNX_VENV:-$root/target/onnx-venv}"
py="$venv/bin/python"

if [ ! -x "$py" ]; then
    echo "creating venv $venv" >&2
    python3 -m venv "$venv"
fi

want=("onnxruntime==$ORT_VERSION" "numpy==$NUMPY_VERSION" "safetensors==$SAFETENSORS_VERSION")
if [ "${STACKLSTM_ONNX_WITH_CHECKER:-0}" = "1" ]; then
    want+=("onnx==$ONNX_VERSION")
fi

# Already there (right versions)? Then nothing to do.
if "$py" - "${want[@]}" >/dev/null 2>&1 <<'PY'
import sys
from importlib.metadata import version
for spec in sys.argv[1:]:
    name, ver = spec.split("==")
    if version(name) != ver:
        sys.exit(1)
import numpy, onnxruntime, safetensors  # noqa: F401  (import must work, not just metadata)
PY
then
    echo "venv $venv already has ${want[*]}" >&2
else
    "$py" -m pip install --disable-pip-version-check -q "${want[@]}" >&2
fi

echo "$py"
