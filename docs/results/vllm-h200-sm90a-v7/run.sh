#!/bin/bash
# Session 22 (H200): the vLLM 0.26 plugin on kernels whose tile counter the kernel leaves zero (RETIRING_ABI: one
# counter per stream, runtime/tile_counter.py). .device/reg-s22v: `qimeng-serve build --arch sm_90 --dtype f16
# --head-dim 128` (this session's code), the sm_90/f16 bundle alone (scripts/vllm_gpu/registry_subset.py).
# The e2e step runs with CUDA graphs (captured on vLLM's stream; warm-up runs make the stream's counter outside the
# capture) and eager. Predicted: correctness and e2e pass as in session 21; prefill figures within +-2% of v6.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
QIMENG_REGISTRY=.device/reg-s22v OUT=$OUT/vllm STEPS="correctness e2e bench" timeout 540 bash scripts/vllm_gpu/run_all.sh
echo "vllm rc=$?"
for f in "$OUT"/vllm/*.log; do echo "== $f"; tail -6 "$f"; done
