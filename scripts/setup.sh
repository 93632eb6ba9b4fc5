#!/usr/bin/env bash
# Creates .venv and installs qimeng-serve with its test tools. Safe to re-run.
# torch 2.13.0 is pinned first: on the project's machines pip takes its CPU build from local disk,
# and an unpinned torch would pull a multi-GB CUDA build. On a GPU machine, install your CUDA torch first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install -q "torch==2.13.0"
fi
.venv/bin/python -m pip install -q -e ".[test]"
echo "setup done: $(.venv/bin/qimeng-serve --help >/dev/null && echo 'qimeng-serve ready') in .venv"
