#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh machine and runs it:
#   - a Python venv at .venv with pycocotools + numpy (reference implementations for the
#     evaluation parity tests; nothing else uses Python at test time);
#   - the whole workspace's tests, built once in the release profile.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tools/requirements-ci.txt
export PVT_TEST_PYTHON="$PWD/.venv/bin/python"
cargo test --release --workspace "$@"
