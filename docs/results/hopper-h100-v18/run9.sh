#!/bin/bash
# Session 20, run 9: a long-sequence D 128 kernel without spills. n160p24 (runs 5-6) spills 20 / 52 B (four
# loop-invariant words of the consumers, reloaded per tile): 72 B, past the build's 64 B limit. n144p24: the same at
# 144 keys a KV tile, no spill, KV loop 1025 instructions per 144 keys (7.1 a key against 7.3 at 128 and 7.0 at 160).
# Predicted: n144p24 between the shipped `_full` kernel and n160p24: +1-1.5% at 16k, level at 8k, -1 to -2% at 2k-4k.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
timeout 90 python3 scripts/hopper_check.py --kernels .device/n144all --no-bench --budget-s 80 --out "$OUT/check" \
  --sanitize qm_dense_prefill_sm90_v_n144p24_attn_bf16_hd128 > "$OUT/check.txt" 2>&1
echo "check rc=$?"; grep -E "^\[|done in" "$OUT/check.txt" | tail -8
S=.device/ship18; N=.device/n144all; E=qm_dense_prefill_sm90
timeout 200 python3 scripts/ab_sm90.py --rounds 5 --masks full --lengths 2048,4096,8192,16384 --out "$OUT/ab-full-bf16.jsonl" \
  --kernel ship=$S:${E}_full_attn_bf16_hd128 --kernel n144=$N:${E}_v_n144p24_attn_bf16_hd128 \
  --kernel n160=$N:${E}_v_n160p24_attn_bf16_hd128 2>&1 | tee "$OUT/ab-full-bf16.txt" | grep -E "^dense|rror"
timeout 120 python3 scripts/ab_sm90.py --rounds 5 --masks full --lengths 8192,16384 --out "$OUT/ab-full-f16.jsonl" \
  --kernel ship=$S:${E}_full_attn_f16_hd128 --kernel n144=$N:${E}_v_n144p24_attn_f16_hd128 \
  --kernel n160=$N:${E}_v_n160p24_attn_f16_hd128 2>&1 | tee "$OUT/ab-full-f16.txt" | grep -E "^dense|rror"
timeout 120 python3 scripts/ab_sm90.py --rounds 5 --masks causal --lengths 8192,16384 --out "$OUT/ab-causal.jsonl" \
  --kernel ship=$S:${E}_attn_bf16_hd128 --kernel n144=$N:${E}_v_n144p24_attn_bf16_hd128 \
  --kernel n160=$N:${E}_v_n160p24_attn_bf16_hd128 2>&1 | tee "$OUT/ab-causal.txt" | grep -E "^dense|rror"
