#!/bin/bash
# Session 13, run 7 (prepared, not run: the session's device time ran out): the Hopper planner's picks
# under cost model 2 against the measured programs, bf16, same run. Model 2 agrees with the measured
# programs on warpgroup counts and D 128 / 256 tiles and differs in what was never timed apart:
#   dense D 64: 192 x 128 on 3 warpgroups, overlap=gemms + ping-pong, 4 stages (measured: 192 x 96, softmax)
#   dense D 256: 128 x 80 softmax + ping-pong (measured: the same without ping-pong)
#   paged D 64: 192 x 112, gemms + ping-pong, 4 stages (measured: 192 x 96, softmax)
#   paged D 128: 128 x 128 pinned + ping-pong (run 1: level with the measured softmax + ping-pong)
# (dense D 128 and paged D 256 are the measured schedules.) All compile without spills or C7512 / C7518
# (offline, session 13); the D 64 KV loops hold 859 (dense) / 770 (paged) instructions for 128 / 112 keys.
# registry-plan4/ from `python scripts/sm90_planned.py --out registry-plan4` (cost model 2; nothing
# spilled, so no ptxas feedback step), then
#   python scripts/sm90_variants.py --out registry-plan4 --only none --baseline-from registry-var13 \
#     --baseline qm_dense_prefill_sm90_attn_bf16_hd64,qm_dense_prefill_sm90_attn_bf16_hd256,qm_paged_prefill_sm90_attn_bf16_hd64,qm_paged_prefill_sm90_attn_bf16_hd128
# Predicted (cost model 2: a KV tile's cycles over its scores): dense D 64 +8 to +18% at L >= 4k (the
# range is KAPPA for gemms + ping-pong, which is assumed, from 2.88 to 2.45); paged D 64 about the same
# less the gather; dense D 256 level (tensor-bound: ping-pong changes nothing in the model); paged
# D 128 level. A miss at D 64 calibrates KAPPA["gemms"] and PINGPONG_KAPPA.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-plan4 --dtypes bf16 --bench-dtypes bf16 --flex none \
  --lengths 1024,2048,4096,8192,16384 --budget-s 420 \
  --sanitize qm_dense_prefill_sm90_v_plan64_attn_bf16_hd64 \
  --out "$OUT/plan4" > /tmp/plan4.log 2>&1
grep -E "^\[|FAIL|rror|hazard|ERROR SUMMARY" /tmp/plan4.log | grep -v "\[ok\]" | tail -30
cp /tmp/plan4.log "$OUT/"
