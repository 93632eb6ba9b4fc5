#!/bin/bash
# Session 13, run 1: the Hopper planner's programs (stage 1's first search over warp-specialised
# sketches, qimeng_serve/generate/hopper_planner.py) against the measured programs of kernels_src/tl,
# dense and paged prefill, D 64 / 128 / 256, bf16, same run. plan-tl/ holds the planned programs as
# timed (renamed *_v_planD). registry-plan/ from
#   python scripts/sm90_planned.py --out registry-plan --ptxas-feedback (cost model 1, at 3942d4e; dense
#   D 64: ptxas spilled the first choice, 128 x 192, 20 / 52 B, so the feedback step took 128 x 176), and
#   python scripts/sm90_variants.py --out registry-plan --only none --baseline-from registry-var13 \
#     --baseline qm_{dense,paged}_prefill_sm90_attn_bf16_hd{64,128,256}
# The planner's choices (all persistent, ping-pong):
#   dense D 64 128 x 176 pinned 24 / 240 (measured: 192 x 96 overlap=softmax, no ping-pong, 32 / 160)
#   dense D 128 128 x 128 pinned, 3 stages, 24 / 240 (measured: the same at 40 / 232)
#   dense D 256 128 x 64 pinned, 2 stages, 24 / 240 (measured: 128 x 80 overlap=softmax, no ping-pong)
#   paged D 64 128 x 128 pinned, 4 stages, 56 / 224 (measured: 192 x 96 overlap=softmax, no ping-pong)
#   paged D 128 128 x 128 pinned, 3 stages (measured: overlap=softmax)
#   paged D 256 128 x 80 overlap=gemms (measured: no overlap, no ping-pong)
# Predicted (planner over measured): dense D 128 level (+-2%); dense D 64 -2 to -8% at L >= 2k, level at 1k
# (session 7 timed 128 x 176 pinned + ping-pong at 0.92-0.98x); paged D 64 -5 to -12% (session 10: 192 x 96
# +8-12% over 128 x 128); paged D 128 level to +2%; paged D 256 0 to +3% (session 12's pg256_ppg);
# dense D 256 -3 to -8% (the cost model says +2.4%: 64-key tiles pay the per-tile costs over fewer keys).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-plan --dtypes bf16 --bench-dtypes bf16 --flex none \
  --lengths 1024,2048,8192,16384 --budget-s 420 \
  --sanitize qm_dense_prefill_sm90_v_plan256_attn_bf16_hd256 \
  --out "$OUT/plan" > /tmp/plan.log 2>&1
grep -E "^\[|FAIL|rror|hazard|ERROR SUMMARY" /tmp/plan.log | grep -v "\[ok\]" | tail -30
cp /tmp/plan.log "$OUT/"
