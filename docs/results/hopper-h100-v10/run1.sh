#!/bin/bash
# Session 12, run 1: the gathering producer claims its next tile once the current tile's copies are
# issued (late), not as the current tile is handed on (a whole tile ahead), beside the shipped kernels
# (early claim) and FA3's paged prefill, bf16, page 16, B x L = 16k. registry-var7/ from
#   python scripts/sm90_variants.py --out registry-var7 --only pg128,pg64,pg256 \
#     --baseline qm_paged_prefill_sm90_attn_bf16_hd128,qm_paged_prefill_sm90_attn_bf16_hd64,qm_paged_prefill_sm90_attn_bf16_hd256
# (the variants are the shipped programs lowered with the late claim; the baseline is the early-claim
# build of registry-sm90a). Why: session 11's run 7 timed the persistent D 256 kernel with a one-head
# L2 group (the grid's very tile order) 14% under the grid at 16k causal. A list-scheduling simulation
# with the claim a tile ahead (docs/perf-notes.md "tenth run") puts the early claim 6-10%
# over the ideal makespan at D 256 causal, the late claim 0.3-2.3%.
# Predicted, late over early: D 256 causal +4% (2k), +8-9% (8k, 16k); D 128 causal +1-2%; D 64 causal
# +0.5-1%; without a mask level (+-1%: every tile has the same work).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var7 --dtypes bf16 --bench-dtypes bf16 --flex none \
  --lengths 2048,8192,16384 --budget-s 300 --out "$OUT/var" > /tmp/var.log 2>&1
grep -E "^\[|FAIL|rror|hazard|ERROR SUMMARY" /tmp/var.log | grep -v "\[ok\]" | tail -30
cp /tmp/var.log "$OUT/"
