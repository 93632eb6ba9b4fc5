#!/bin/bash
# Session 11, run 3: the shipped paged set once paged_prefill_sm90.tl runs tiles=persistent at every head
# size and the gather's lanes run along 64-column panels by default (the SASS of D 128 / 64 / 256 is run
# 1's pgpp128 / pgpers64 / pgpp256, by md5): all 6 kernels validated (bf16 and f16), memcheck and
# racecheck on D 128 bf16, D 64 f16 and D 256 bf16, and the same-run table against FA3's paged prefill
# and cuDNN's dense SDPA. registry-sm90a/ from build_sm90_kernels(..., programs=[("paged_prefill_sm90.tl",
# None, None)]). Predicted: run 2's variant rows within 2%.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-sm90a --bench-dtypes bf16,f16 --flex none \
  --lengths 2048,8192,16384 --budget-s 500 \
  --sanitize qm_paged_prefill_sm90_attn_bf16_hd128,qm_paged_prefill_sm90_attn_f16_hd64,qm_paged_prefill_sm90_attn_bf16_hd256 \
  --out "$OUT/shipped" > /tmp/shipped.log 2>&1
grep -E "^\[|FAIL|rror|hazard|ERROR SUMMARY|FA3" /tmp/shipped.log | grep -v "\[ok\]" | tail -30
cp /tmp/shipped.log "$OUT/"
