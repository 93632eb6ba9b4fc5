#!/bin/bash
# Session 10, run 4: the shipped paged kernels once the grid takes its query blocks from the last
# (QM_SM90_GRID_HEAVY_FIRST = 1, run 3's variant; only grid-tiled kernels change, i.e. the paged ones:
# the dense kernels are persistent and their SASS is byte-identical to session 9's): all 6 paged kernels
# validated (bf16 and f16), memcheck and racecheck on D 128 bf16, and the same-run table against FA3's
# paged prefill and cuDNN's dense SDPA. Predicted: run 3's rev rows within noise (1-3%).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-paged-only --bench-dtypes bf16,f16 --flex none \
  --lengths 2048,8192,16384 --budget-s 330 --sanitize qm_paged_prefill_sm90_attn_bf16_hd128 \
  --out "$OUT/shipped" > /tmp/shipped.log 2>&1
grep -E "^\[|FAIL|rror|hazard|ERROR SUMMARY" /tmp/shipped.log | grep -v "\[ok\]" | tail -30
cp /tmp/shipped.log "$OUT/"
