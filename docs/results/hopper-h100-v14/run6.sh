#!/bin/bash
# Session 16, run 6: run 5 cleared the producer (d0s, the shipped producer loop, no spills: 0.87 of the
# shipped kernel, as d0). What is left on the consumers' path each KV step is the slot's tag, read after
# the full barrier and broadcast, for K and for V. d0snt: d0spp with no tag read (every item of the
# simple producer is for both warpgroups). Predicted: d0snt 0.95-1.0 of the shipped kernel if the tag
# reads are the cost; otherwise what remains is the per-warpgroup Q and the sub-tile bookkeeping.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
A=.device/ab16
timeout 150 python3 scripts/ab_sm90.py --rounds 3 --masks full --lengths 2048,16384 --out "$OUT/ab.jsonl" \
  --kernel ship=$A/ship:qm_dense_prefill_sm90_attn_bf16_hd128 \
  --kernel st_d0spp=$A/st-d0spp:qm_stagger_attn_bf16_hd128 --kernel st_d0snt=$A/st-d0snt:qm_stagger_attn_bf16_hd128 \
  2>&1 | tee "$OUT/ab-full.txt"
