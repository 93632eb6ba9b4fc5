#!/bin/bash
# Session 11, run 5: the shipped paged set rebuilt with 32-bit gather strides (run 4 timed D 128 / 256 bf16
# level with run 3's cubins; their SASS is run 4's pgs128 / pgs256 by md5): all 6 kernels validated again,
# bf16 and f16, no timing. registry-sm90a/ from build_sm90_kernels(..., programs=[("paged_prefill_sm90.tl",
# None, None)]).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-sm90a --no-bench --budget-s 150 \
  --sanitize qm_paged_prefill_sm90_attn_f16_hd64 --out "$OUT/shipped" > /tmp/shipped.log 2>&1
grep -E "^\[|FAIL|rror|hazard|ERROR SUMMARY" /tmp/shipped.log | grep -v "\[ok\]" | tail -30
cp /tmp/shipped.log "$OUT/"
