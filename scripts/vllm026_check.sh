#!/usr/bin/env bash
# Check the vLLM plugin against vLLM 0.26 on this CPU machine (the GPU machines run 0.26; CI has 0.33).
# Downloads the 0.26.0 wheel once (about 300 MB, kept in the cache folder), unpacks its Python sources
# (not the CUDA libraries) and runs tests/vllm/test_vllm026_compat.py with them first on PYTHONPATH.
#   usage: bash scripts/vllm026_check.sh        cache: QIMENG_VLLM026_CACHE (default ~/.cache/qimeng-serve/vllm-0.26.0)
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${QIMENG_VLLM026_CACHE:-$HOME/.cache/qimeng-serve/vllm-0.26.0}
SITE="$CACHE/site"
if [ ! -f "$SITE/vllm/__init__.py" ]; then
  mkdir -p "$CACHE"
  echo "downloading vllm 0.26.0 (wheel only, about 300 MB)..." >&2
  .venv/bin/python -m pip download -q --no-deps --only-binary=:all: -d "$CACHE" "vllm==0.26.0"
  rm -rf "$SITE.tmp" && mkdir -p "$SITE.tmp"
  .venv/bin/python - "$CACHE" "$SITE.tmp" <<'PY'
import sys, zipfile, glob
wheel = glob.glob(f"{sys.argv[1]}/vllm-0.26.0-*.whl")[0]
with zipfile.ZipFile(wheel) as z:  # the Python sources and metadata: the tests import, never run CUDA code
    z.extractall(sys.argv[2], [n for n in z.namelist() if not n.endswith(".so") and "/vllm-rs" not in n])
PY
  mv "$SITE.tmp" "$SITE"
fi
QIMENG_VLLM026_SITE="$SITE" exec .venv/bin/python -m pytest -q tests/vllm/test_vllm026_compat.py "$@"
