#!/bin/bash
# Session 7, run 4: the shipped set after this session (registry-sm90a/: dense with the packed tile
# word and, at D 128, the pinned softmax; paged unchanged), bf16 + f16, FlexAttention at D 128,
# memcheck + racecheck on dense D 128 bf16 and D 64 f16; beside it, D 64 on D 128's schedule
# (128 x 128 and 128 x 176, two consumer warpgroups, pinned) against D 64's 192 x 96.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var --bench-dtypes bf16,f16 --flex d128 --budget-s 560 --out "$OUT/bench" \
  --sanitize qm_dense_prefill_sm90_attn_bf16_hd128,qm_dense_prefill_sm90_attn_f16_hd64 > "$OUT/bench.log" 2>&1
grep -E "^\[|FAIL|rror" "$OUT/bench.log" | grep -v "^\[ok\]" | tail
