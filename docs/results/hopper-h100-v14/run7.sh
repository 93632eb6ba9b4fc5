#!/bin/bash
# Session 16, run 7: the last 5-9% of run 6. d0snt's ring position started from the value handed at the
# join (`got.z`, a shuffled shared-memory word), and its KV loop needed each stage broadcast after the
# wait to keep the GMMA descriptors uniform. With the join taken out for the simple producer (both
# warpgroups join at item 0: the stage starts at the constant 0, as the shipped PipeState does), ptxas
# keeps them uniform with no broadcast: 948 instructions a KV step against the shipped 938, 19 R2UR.
# d0sntu is that build. Predicted: 0.98-1.0 of the shipped kernel at 2k-16k if the broadcasts on the
# path to the GEMM issue were the rest of the cost.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
A=.device/ab16
timeout 150 python3 scripts/ab_sm90.py --rounds 3 --masks full --lengths 2048,4096,16384 --out "$OUT/ab.jsonl" \
  --kernel ship=$A/ship:qm_dense_prefill_sm90_attn_bf16_hd128 --kernel st_d0sntu=$A/st-d0sntu:qm_stagger_attn_bf16_hd128 \
  2>&1 | tee "$OUT/ab-full.txt"
