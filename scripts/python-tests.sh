#!/usr/bin/env bash
# The Python package's tests: creates (once) target/py-venv with maturin, pytest and numpy
# from PyPI, builds and installs the `stacklstm` package from this checkout (`pip install .`:
# maturin, release build, the same path a user takes), then runs pytest on
# crates/stacklstm-py/tests.
#
# Usage:  scripts/python-tests.sh [pytest arguments]
#         STACKLSTM_PY_VENV=/some/dir scripts/python-tests.sh
set -euo pipefail
cd "$(dirname "$0")/.."

MATURIN_VERSION="1.16.0"
PYTEST_VERSION="9.2.0"
NUMPY_VERSION="2.4.6"

venv="${STACKLSTM_PY_VENV:-$PWD/target/py-venv}"
if [ ! -x "$venv/bin/python" ]; then
    echo "creating venv $venv" >&2
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --disable-pip-version-check -q \
    "maturin==$MATURIN_VERSION" "pytest==$PYTEST_VERSION" "numpy==$NUMPY_VERSION" >&2
# maturin's build backend runs the venv's `maturin`; --no-build-isolation uses it as is.
PATH="$venv/bin:$PATH" "$venv/bin/python" -m pip install --disable-pip-version-check -q \
    --no-build-isolation --no-deps --force-reinstall . >&2
exec "$venv/bin/python" -m pytest -q crates/stacklstm-py/tests "$@"
