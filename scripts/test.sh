#!/usr/bin/env bash
# The project's test command: every test of the workspace, in release mode, then the Python
# package's tests (scripts/python-tests.sh: builds and installs the package into
# target/py-venv, then runs pytest).
#
# The interop tests run the real onnxruntime and Python's safetensors; scripts/onnx-venv.sh
# creates (once, in target/onnx-venv) a virtual environment with the pinned packages, whose
# python the tests find in STACKLSTM_ONNX_PYTHON. An already exported STACKLSTM_ONNX_PYTHON
# is used as is.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${STACKLSTM_ONNX_PYTHON:-}" ]; then
    STACKLSTM_ONNX_PYTHON="$(bash scripts/onnx-venv.sh | tail -n1)"
    export STACKLSTM_ONNX_PYTHON
fi
cargo test --release --workspace
bash scripts/python-tests.sh
