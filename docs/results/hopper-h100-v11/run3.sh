#!/bin/bash
# Session 13, run 3: paged D 256 with overlap=gemms + ping-pong (the Hopper planner's pick in run 1, and
# session 12's pg256_ppg) against the shipped program (no overlap, no ping-pong), bf16 and f16, same run,
# L 1k-16k; memcheck and racecheck on the f16 kernel (run 2 sanitised bf16). registry-plan2/ from
#   the variant pg256_ppg2 ({"PINGPONG": 1, "OVERLAP": 3} at D = 256, bf16 + f16, built by
#   scripts/sm90_variants.py's build()) and the shipped paged D 256 cubins of registry-sm90a (late claim).
# Predicted: +0 to +3% at L >= 2k in both dtypes (run 1: +0.3 to +2.1%; session 12: 0 to +3.4%), 1k +-3%.
# If it holds in both dtypes, the D = 256 params of paged_prefill_sm90.tl take OVERLAP = 3, PINGPONG = 1.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-plan2 --dtypes bf16,f16 --bench-dtypes bf16,f16 --flex none \
  --lengths 1024,2048,4096,8192,16384 --budget-s 300 \
  --sanitize qm_paged_prefill_sm90_v_pg256_ppg2_attn_f16_hd256 \
  --out "$OUT/pg256" > /tmp/pg256.log 2>&1
grep -E "^\[|FAIL|rror|hazard|ERROR SUMMARY" /tmp/pg256.log | tail -30
cp /tmp/pg256.log "$OUT/"
