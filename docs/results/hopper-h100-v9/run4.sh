#!/bin/bash
# Session 11, run 4: the consumers' registers. With the persistent loop and the panel lanes, the gathering
# producer at 40 registers spills only in its per-tile block-table lookup (48 B at D 128, 36 B at D 256;
# no local load or store among the copies), and the consumers at 232 no longer spill with dense's
# softmax schedules. registry-var5/ from
#   python scripts/sm90_variants.py --out registry-var5 --only pgs128,pgs256,pgr40o2,pgr40_256o1 \
#     --baseline qm_paged_prefill_sm90_attn_bf16_hd128,qm_paged_prefill_sm90_attn_bf16_hd256
# pgs128 / pgs256: the shipped params rebuilt with 32-bit gather strides (run 3's cubins beside them);
# pgr40o2: D 128 at 40 / 232 with the pinned softmax (OVERLAP = 2, dense's); pgr40_256o1: D 256 at 40 / 232
# with the overlapped loop (OVERLAP = 1; shipped: 0). Predicted: pgs* level with run 3's cubins (within 1%);
# pgr40o2 +2-4% at 8k-16k (dense's pinned schedule over OVERLAP 1), pgr40_256o1 +4-8% (dense D 256's overlap).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var5 --dtypes bf16 --bench-dtypes bf16 --flex none \
  --lengths 2048,8192,16384 --budget-s 200 \
  --sanitize qm_paged_prefill_sm90_v_pgr40o2_attn_bf16_hd128 \
  --out "$OUT/var" > /tmp/var.log 2>&1
grep -E "^\[|FAIL|rror|hazard|ERROR SUMMARY" /tmp/var.log | grep -v "\[ok\]" | tail -30
cp /tmp/var.log "$OUT/"
