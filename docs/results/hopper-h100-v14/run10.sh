#!/bin/bash
# Session 16, run 10: what the last wave costs the shipped D 128 at the sweep's own shapes (run 9's
# 33-head shape changed more than the wave count). skiptail128 (scripts/sm90_variants.py) is the
# shipped program with QM_SM90_DIAG_SKIP_TAIL: the counter hands out whole waves only, dropping the
# last count % 132 tiles, same KV loop SASS (938 instructions). Timing only: its output is incomplete,
# so ab_sm90's check reports an error for it, by design. Its TFLOPS count the full shape's FLOPs, so
# skiptail / ship is the time saved by not running the last wave.
# Predicted, if the last wave costs one whole tile time: skiptail / ship 1.067 at 1k and 2k (2048
# tiles: 16 waves -> 15), 1.032 at 4k (32 -> 31), 1.016 at 8k (63 -> 62), 1.008 at 16k. A split of
# the leftover tiles would then gain that less R / 132 of a tile: +3.1% at 2k and 4k, +1.5% at 8k.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
A=.device/ab16
timeout 200 python3 scripts/ab_sm90.py --rounds 5 --masks full --lengths 1024,2048,4096,8192,16384 \
  --out "$OUT/ab.jsonl" --kernel ship=$A/ship:qm_dense_prefill_sm90_attn_bf16_hd128 \
  --kernel skiptail=$A/skiptail:qm_dense_prefill_sm90_v_skiptail128_attn_bf16_hd128 2>&1 | tee "$OUT/ab-tail.txt"
