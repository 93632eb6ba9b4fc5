#!/usr/bin/env bash
# The vLLM plugin on a GPU machine: correctness against SDPA, CUDA-graph replay, end-to-end generation
# against TRITON_ATTN, and a forward benchmark against TRITON_ATTN and FLASH_ATTN. Every step writes
# OUT/vllm_<step>.json (and a .log) and a failing step does not stop the next; the summary is
# OUT/vllm_summary.json. Exit status 0 only when every step that ran passed.
#
#   usage: bash scripts/vllm_gpu/run_all.sh [PAYLOAD_DIR]
#     PAYLOAD_DIR     vLLM 0.26 folder made here by /work/shared/tools/vllm-gpu-payload/prepare.sh
#                     (default .device/vllm-payload); its install_on_gpu.sh unpacks it once per machine
#     OUT             results folder (default gpu-results/vllm)
#     QIMENG_REGISTRY prebuilt registry carried along (default ./registry); registry_subset.py makes a
#                     smaller one that fits the carry limit beside the payload
#     STEPS           subset of: correctness correctness_sm75 graphs e2e bench (default: all). A device
#                     command may run 10 minutes: e.g. STEPS="correctness correctness_sm75 graphs", then
#                     STEPS=e2e, then STEPS=bench on the same warm machine (the unpacked vLLM stays)
#     EXTRA_WHEELS    wheels for what the plugin imports beyond the payload (jsonschema, for the
#                     registry index), installed only if missing (default .device/wheels)
#     BENCH_ARGS      extra arguments for bench.py, e.g. "--head-dims 64,128,256"
set -uo pipefail
cd "$(dirname "$0")/../.."
PAYLOAD=${1:-.device/vllm-payload}
OUT=${OUT:-gpu-results/vllm}
STEPS=${STEPS:-correctness correctness_sm75 graphs e2e bench}
EXTRA_WHEELS=${EXTRA_WHEELS:-.device/wheels}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
HERE=scripts/vllm_gpu

# shellcheck disable=SC1091
source "$PAYLOAD/install_on_gpu.sh" "${VLLM_SITE:-/tmp/vsite}" || { echo "error: could not install vLLM from $PAYLOAD"; exit 2; }
if ! python3 -c "import jsonschema" 2>/dev/null; then
  if ls "$EXTRA_WHEELS"/jsonschema-*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/qimeng-site "$EXTRA_WHEELS"/*.whl
    export PYTHONPATH="/tmp/qimeng-site:$PYTHONPATH"
  else
    echo "error: jsonschema is missing and $EXTRA_WHEELS has no wheel for it (pip download jsonschema there)"; exit 2
  fi
fi
EP=/tmp/qimeng-entry-points
python3 "$HERE/entry_points.py" "$EP" >/dev/null || exit 2
REGISTRY=$(cd "${QIMENG_REGISTRY:-registry}" 2>/dev/null && pwd) || { echo "error: no registry at ${QIMENG_REGISTRY:-registry}"; exit 2; }
export PYTHONPATH="$PWD:$EP:$PYTHONPATH" QIMENG_REGISTRY="$REGISTRY"
{ nvidia-smi -L; python3 -c "import torch, vllm; print('torch', torch.__version__, '| vllm', vllm.__version__, '|', torch.cuda.get_device_name())"
  python3 - <<'PY'
from qimeng_serve.vllm_plugin import artifacts, registration
print("backend name:", registration.cli_name(), "| registry:", __import__("os").environ["QIMENG_REGISTRY"])
cap = artifacts.device_capability()
for d in (64, 128, 256):
    try:
        print(f"  f16 D={d}:", artifacts.serving_artifact(cap, "f16", d).describe())
    except Exception as exc:
        print(f"  f16 D={d}: none ({str(exc).splitlines()[0]})")
PY
} 2>&1 | tee "$OUT/preflight.txt"

has_sm75=$(python3 -c "
import json, os; idx = json.load(open(os.path.join(os.environ['QIMENG_REGISTRY'], 'index.json')))
print(int(any(b['arch'] == 'sm_75' and b['dtype'] == 'f16' for b in idx['bundles'])))" 2>/dev/null || echo 0)

run_step() {  # name, then the command; its output goes to OUT/name.log
  local name=$1; shift
  echo "=== $name: $*"
  "$@" 2>&1 | tee "$OUT/$name.log"
  echo "=== $name: exit ${PIPESTATUS[0]}"
}
for step in $STEPS; do
  case $step in
    correctness) run_step correctness python3 $HERE/correctness.py --out "$OUT/vllm_correctness.json" ;;
    # the Turing (sm_75) kernels through their PTX on this GPU: correctness only, not Turing speed
    correctness_sm75) run_step correctness_sm75 env QIMENG_CAPABILITY=7.5 python3 $HERE/correctness.py --quick \
                        --allow-empty --out "$OUT/vllm_correctness_sm75.json" ;;
    graphs) run_step graphs python3 $HERE/graphs.py --out "$OUT/vllm_cudagraph.json" ;;
    e2e)
      python3 $HERE/make_tiny_llama.py /tmp/qimeng-tiny-llama >/dev/null
      runs=triton_eager,qimeng_eager,qimeng_graphs,qimeng_spawn
      [ "$has_sm75" = 1 ] && runs=$runs,qimeng_sm75_eager
      run_step e2e python3 $HERE/e2e.py --model /tmp/qimeng-tiny-llama --runs "$runs" --out "$OUT/vllm_e2e.json" ;;
    bench) run_step bench python3 $HERE/bench.py --out "$OUT/vllm_bench.json" ${BENCH_ARGS:-} ;;
    *) echo "unknown step '$step' (use: correctness correctness_sm75 graphs e2e bench)"; exit 2 ;;
  esac
done
echo "=== summary"
python3 $HERE/summary.py "$OUT"
