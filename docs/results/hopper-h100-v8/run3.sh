#!/bin/bash
# Session 10, run 3: the shipped paged programs after runs 1-2 (segment gather, asynchronous stage
# arrival; D 64 on the 192 x 96 tile, D 256 on 128 x 80): all 6 paged kernels validated (bf16 and f16,
# pages 8 / 16 / 24 / 64 / 256, NaN-poisoned cache and output), memcheck and racecheck on D 128 bf16 and
# D 64 f16, and the same-run table against FA3's paged prefill and cuDNN's dense SDPA, bf16 and f16.
# (The dense kernels' SASS is byte-identical to run 7's of session 9: not rerun.) registry-paged-only/
# holds the paged entries of registry-sm90a/.
# Then registry-var12/: the grid's query blocks from the last (QM_SM90_GRID_HEAVY_FIRST, causal: longest
# tiles first), bf16, beside the shipped paged kernels. Predicted: causal +2-5% at D 128, full level.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-paged-only --bench-dtypes bf16,f16 --flex none \
  --lengths 2048,4096,8192,16384 --budget-s 360 \
  --sanitize qm_paged_prefill_sm90_attn_bf16_hd128,qm_paged_prefill_sm90_attn_f16_hd64 \
  --out "$OUT/shipped" > /tmp/shipped.log 2>&1
grep -E "^\[|FAIL|rror|hazard|ERROR SUMMARY" /tmp/shipped.log | grep -v "\[ok\]" | tail -30
bash scripts/hopper_device.sh --kernels registry-var12 --dtypes bf16 --bench-dtypes bf16 --flex none \
  --lengths 2048,8192,16384 --budget-s 180 --out "$OUT/rev" > /tmp/rev.log 2>&1
grep -E "^\[|FAIL|rror" /tmp/rev.log | grep -v "\[ok\]" | tail -10
cp /tmp/shipped.log /tmp/rev.log "$OUT/"
