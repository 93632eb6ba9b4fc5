#!/bin/bash
# Session 16, run 9: how much of the D 128 full gap at 2k-8k is the last wave, before anyone builds a
# split of it (perf-notes "fourteenth run", the last wave). The sweep's H 16 gives 2048 / 4096 / 8192 /
# 16384 tiles at 2k / 4k / 8k / 16k: 15.52 / 31.03 / 62.06 / 124.12 waves on 132 SMs. H 33 gives 4224
# tiles at every length: 32 whole waves. The shipped kernel beside cuDNN at both, same process.
# Predicted: if cuDNN's tail is as coarse as ours, ours / cuDNN the same at H 33 as at H 16; if
# cuDNN's is finer (64-row tiles per warpgroup), ours / cuDNN rises by up to our tail's share:
# +3.1% at 2k, +3.0% at 4k, +1.5% at 8k, +0.7% at 16k (session 9 saw +1.7 points at 2k).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
A=.device/ab16
for h in 16 33; do
  echo "== H $h"
  timeout 150 python3 scripts/ab_sm90.py --rounds 5 --masks full --lengths 2048,4096,8192,16384 --heads $h \
    --out "$OUT/ab.jsonl" --kernel ship=$A/ship:qm_dense_prefill_sm90_attn_bf16_hd128 2>&1
done | tee "$OUT/ab-waves.txt"
