#!/bin/bash
# Session 19, run 1 (the form timed here shared the whole walk out; run 2 replaced it in scheduler.cuh, so this
# script now times the hybrid): split=stream (scheduler.cuh StreamShare, split.cuh StreamTail), every CTA an equal run of the
# walk's KV steps without a mask, at dense D 128 (scripts/sm90_variants.py stream128 -> .device/stream; SPLIT = -1,
# CARRY = 0: one kernel for both masks, a causal launch takes the counter's claims). KV loop 935 instructions,
# R2UR 17, no spill (the shipped `_full` kernel: 938 / 17).
# 1. validate (48 cases + the split / stream shapes, bf16 and f16), memcheck and racecheck on bf16;
# 2. A/B without a mask against the shipped `_full` kernel (.device/ship18) and cuDNN, bf16 1k-16k, f16 1k-8k.
# Predicted: +2-2.5% at 2k-8k, +1.5-2% at 1k, +2.5-3% at 16k (the last wave's 3% less one more part per CTA:
# its store, 68 KB, and the owner's combine).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
timeout 200 python3 scripts/hopper_check.py --kernels .device/stream --no-bench --budget-s 190 --out "$OUT/check" \
  --sanitize qm_dense_prefill_sm90_v_stream128_attn_bf16_hd128 > "$OUT/check.txt" 2>&1
echo "check rc=$?"; grep -E "^\[|done in" "$OUT/check.txt" | tail -8
S=.device/ship18; N=.device/stream; E=qm_dense_prefill_sm90
timeout 200 python3 scripts/ab_sm90.py --rounds 5 --masks full --lengths 1024,2048,4096,8192,16384 --out "$OUT/ab-bf16.jsonl" \
  --kernel ship=$S:${E}_full_attn_bf16_hd128 --kernel stream=$N:${E}_v_stream128_attn_bf16_hd128 2>&1 | tee "$OUT/ab-bf16.txt" | grep -E "^dense|rror"
timeout 120 python3 scripts/ab_sm90.py --rounds 3 --masks full --lengths 1024,2048,4096,8192 --out "$OUT/ab-f16.jsonl" \
  --kernel ship=$S:${E}_full_attn_f16_hd128 --kernel stream=$N:${E}_v_stream128_attn_f16_hd128 2>&1 | tee "$OUT/ab-f16.txt" | grep -E "^dense|rror"
