#!/bin/bash
# Session 21 (H200; was hopper-h200-v19 run 7): the vLLM 0.26 plugin on this session's kernels (the sm_90 f16 bundle of run 6, whose
# sm90a paged prefill has rescale=lazy): correctness against SDPA through the backend's forward, end-to-end
# generation against TRITON_ATTN on a tiny Llama, and the forward benchmark (scripts/vllm_gpu). Predicted: every
# case passes; prefill 1-3% over session 15's H100 figures (the lazy paged kernel), decode unchanged.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
QIMENG_REGISTRY=.device/reg-s21v OUT=$OUT/vllm STEPS="correctness e2e bench" timeout 470 bash scripts/vllm_gpu/run_all.sh
echo "vllm rc=$?"
for f in "$OUT"/vllm/*.log; do echo "== $f"; tail -6 "$f"; done
