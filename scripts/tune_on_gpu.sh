#!/usr/bin/env bash
# The planner's --tune on a GPU machine: for each kernel of this GPU's arch, the planner's best
# candidates (cost model + interpreter) are compiled, validated and timed here; the fastest that
# validates is built into the registry, and every measurement goes into the bundle manifests.
#
#   scripts/tune_on_gpu.sh            (env: OUT, ARCH, FAMILIES, HEAD_DIMS, DTYPES, TOP, REG)
#
# Needs on that machine: python3 with a CUDA torch, cuda-python, safetensors, numpy, typer, rich, lark
# and the nvidia-cutlass headers (carried in: put them on PYTHONPATH, e.g. `pip install --target
# .device/pydeps lark nvidia-cutlass` here and carry .device/pydeps; or set QIMENG_CUTLASS_INCLUDE),
# and nvcc (CUDA 12.8+). Nothing is downloaded.
# Time: about 1-2 minutes per kernel (4 candidates: parallel nvcc, ~45 validation checks, 4 timed shapes).
# A run cut short resumes: plans and compiles are cached in .qimeng/cache (ignored by git), so run it
# again, or split the work with FAMILIES="paged_decode" HEAD_DIMS="128" and so on.
# Results in $OUT: tune.log, tune-summary.json (per kernel: every candidate measured, the model's
# prediction beside it, the winner), validate.log, registry.tgz (the tuned bundles with manifests).
set -uo pipefail
cd "$(dirname "$0")/.."
PYDEPS=${QIMENG_PYDEPS:-$PWD/.device/pydeps}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}$([ -d "$PYDEPS" ] && echo ":$PYDEPS")" PYTHONUNBUFFERED=1
export QIMENG_CACHE_DIR=${QIMENG_CACHE_DIR:-$PWD/.qimeng/cache}
OUT=${OUT:-tune-results}
REG=${REG:-$PWD/.qimeng/registry-tuned}
PY=${PYTHON:-python3}
mkdir -p "$OUT" "$REG"
ARCH=${ARCH:-$($PY -c "import torch; m, n = torch.cuda.get_device_capability(); print(f'sm_{m}{n}')" 2>/dev/null)} || {
  echo "no CUDA GPU visible to torch: --tune measures on a GPU" | tee "$OUT/tune.log"; exit 2; }
FAMILIES=${FAMILIES:-paged_decode paged_prefill dense_prefill}
TOP=${TOP:-4}
args=(--arch "$ARCH" --tune --tune-top "$TOP" --registry "$REG" --no-validate)
for d in ${DTYPES:-f16}; do args+=(--dtype "$d"); done
for h in ${HEAD_DIMS:-}; do args+=(--head-dim "$h"); done
{ nvidia-smi -L; nvcc --version | tail -1; $PY -c "import torch; print('torch', torch.__version__)"; } 2>&1 | tee "$OUT/tune.log"
status=0
for family in $FAMILIES; do
  echo "== $family ($ARCH, top $TOP) $(date -u +%H:%M:%S)" | tee -a "$OUT/tune.log"
  $PY -m qimeng_serve.cli build "${args[@]}" --family "$family" 2>&1 | tee -a "$OUT/tune.log" || status=1
  $PY - "$REG" "$OUT/tune-summary.json" <<'EOF' 2>&1 | tee -a "$OUT/tune.log"
import json, sys
from pathlib import Path
from qimeng_serve.build.bundle import read_manifest

rows = []
for bundle in sorted(Path(sys.argv[1]).glob("sm_*/*/*.safetensors")):
    for name, k in read_manifest(bundle)["kernels"].items():
        record = k["tl"].get("record") or {}
        tuned = [a for a in record.get("attempts", []) if a["stage"] == "tune"]
        if k["role"] == "combine" or not tuned:
            continue
        chosen = record["details"]["chosen"]
        rows.append({"kernel": name, "bundle": bundle.name, "chosen": f"{chosen['sketch']} | {chosen['params']}",
                     "measured_ms": chosen["measured_ms"], "predicted_us": chosen["estimate"]["score_us"],
                     "candidates": tuned})
        print(f"{name}: {chosen['params']} measured {chosen['measured_ms']} ms; "
              + "; ".join(f"{a['summary'].split(' | ')[-1]} -> {a['score']} ms" for a in tuned))
Path(sys.argv[2]).write_text(json.dumps(rows, indent=1))
EOF
done
$PY -m qimeng_serve.cli validate --registry "$REG" --arch "$ARCH" 2>&1 | tee "$OUT/validate.log" || status=1
tar czf "$OUT/registry.tgz" -C "$REG" . && echo "tuned registry: $OUT/registry.tgz"
exit $status
