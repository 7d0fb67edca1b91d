#!/usr/bin/env bash
# The project's test command: every test of the workspace, in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --workspace
