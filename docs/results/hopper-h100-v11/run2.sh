#!/bin/bash
# Session 13, run 2: the Hopper planner's programs through the product path. An sm_90 bf16 bundle built
# with `qimeng-serve build --arch sm_90 --dtype bf16 --head-dim 64 --head-dim 256 --family dense_prefill
# --family paged_prefill --hopper-generator planner --registry .device/reg-plan` (its sm90a kernels: the
# planner's 128-row tiles at D 64, where the measured programs run 192 rows) goes through
# `qimeng-serve validate`: KernelSet launches each kernel from its manifest (tile counter, threads,
# shared memory) against the fp32 reference. Then memcheck and racecheck on the planner's paged D 256
# kernel (overlap=gemms + ping-pong, +0-2% in run 1: the one pick that was not slower).
# Predicted: every kernel passes; both sanitizers clean.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
# shellcheck disable=SC1091
source scripts/device_env.sh
python3 -m qimeng_serve validate --registry .device/reg-plan --arch sm_90 > "$OUT/validate.log" 2>&1
echo "validate rc=$?" >> "$OUT/validate.log"
python3 scripts/hopper_check.py --kernels registry-plan --no-validate --no-bench \
  --sanitize qm_paged_prefill_sm90_v_plan256_attn_bf16_hd256 --out "$OUT/sanitize" > "$OUT/sanitize.log" 2>&1
tail -25 "$OUT/validate.log"; grep -E "^\[|ERROR SUMMARY|hazard" "$OUT/sanitize.log" | tail
