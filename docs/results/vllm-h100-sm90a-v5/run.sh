#!/bin/bash
# Session 15: the product path with this session's Hopper programs (dense D 64 192 x 128 gemms + ping-pong;
# causal tiles padded at the front in dense and paged prefill). The sm_90 f16 bundle was built here with
# `qimeng-serve build --arch sm_90 --dtype f16 --head-dim 64 --head-dim 128 --registry .device/reg-s15 -j 2`
# (2 min 51 s on the 2-core build machine) and carried with vLLM 0.26's payload. On the H100:
# `qimeng-serve validate` (every kernel of the bundle through KernelSet against the fp32 reference),
# then the vLLM plugin's correctness, end-to-end generation and forward benchmark (scripts/vllm_gpu).
# Predicted: every kernel and case passes; prefill figures as v4 (D 128's paged kernel has no padding
# at 4096 tokens: level), decode unchanged.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
# shellcheck disable=SC1091
source scripts/device_env.sh
timeout 200 python3 -m qimeng_serve validate --registry .device/reg-s15 --arch sm_90 > "$OUT/validate.log" 2>&1
echo "validate rc=$?" >> "$OUT/validate.log"
tail -30 "$OUT/validate.log"
QIMENG_REGISTRY=.device/reg-s15 OUT=$OUT/vllm STEPS="correctness e2e bench" timeout 330 bash scripts/vllm_gpu/run_all.sh
echo "vllm rc=$?"
