#!/usr/bin/env bash
# The one script a GPU machine runs: validate every bundle of the registry on this GPU (and record
# the results in the bundles' manifests), then benchmark. Build the registry first on any machine
# with nvcc (`qimeng-serve build --arch sm_75` ...): the GPU machine needs only torch, cuda-python,
# safetensors and numpy. Results go to $OUT (default ./gpu-results).
#   usage: scripts/gpu_run.sh [registry-dir]
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT=${OUT:-gpu-results}
REG=${1:-${QIMENG_REGISTRY:-registry}}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
status=0
{ nvidia-smi -L; $PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"; } | tee "$OUT/device.txt"
if [ "${SKIP_VALIDATE:-0}" != 1 ]; then
  $PY -m qimeng_serve.cli validate --registry "$REG" ${VALIDATE_ARGS:-} 2>&1 | tee "$OUT/validate.log" || status=1
fi
$PY scripts/check_graphs.py "$REG" 2>&1 | tee "$OUT/graphs.log" || status=1
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  $PY -m qimeng_serve.cli bench --registry "$REG" --out "$OUT" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.log" || status=1
fi
# the bundles now carry validation and benchmark results in their manifests: bring those back
# (`python scripts/manifests.py import registry manifests.json` here), not the binaries
$PY scripts/manifests.py export "$REG" "$OUT/manifests.json" || status=1
exit $status
