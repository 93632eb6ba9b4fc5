#!/bin/bash
# Session 19, run 2: split=stream as Stream-K's hybrid (run 1 shared the whole walk out: each CTA ran its own
# heads, 132 heads' K/V missed L2, 0.55x at 1k). Now the whole waves but the last go out as whole tiles (CTA c:
# c, c + G, ...) and only the last G + T % G tiles are shared out as equal runs of KV steps. KV loop 935
# instructions, R2UR 17, no spill. static128: the shipped program with QM_SM90_STATIC_TILES (every CTA the
# tiles c, c + G, ... to the end, no counter), to tell the static whole waves' cost from the share's gain.
# 1. validate (48 cases + the split / stream shapes, bf16 and f16), memcheck and racecheck on bf16;
# 2. A/B without a mask against the shipped `_full` kernel (.device/ship18) and cuDNN, bf16 1k-16k, f16 1k-8k.
# Predicted: stream +2-2.5% at 2k-8k, +1.5-2% at 1k; static level with the shipped kernel (+-0.5%).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
timeout 200 python3 scripts/hopper_check.py --kernels .device/stream --no-bench --budget-s 190 --out "$OUT/check" \
  --sanitize qm_dense_prefill_sm90_v_stream128_attn_bf16_hd128 > "$OUT/check.txt" 2>&1
echo "check rc=$?"; grep -E "^\[|done in" "$OUT/check.txt" | tail -8
S=.device/ship18; N=.device/stream; E=qm_dense_prefill_sm90
timeout 220 python3 scripts/ab_sm90.py --rounds 5 --masks full --lengths 1024,2048,4096,8192,16384 --out "$OUT/ab-bf16.jsonl" \
  --kernel ship=$S:${E}_full_attn_bf16_hd128 --kernel stream=$N:${E}_v_stream128_attn_bf16_hd128 \
  --kernel static=$N:${E}_v_static128_full_attn_bf16_hd128 2>&1 | tee "$OUT/ab-bf16.txt" | grep -E "^dense|rror"
timeout 120 python3 scripts/ab_sm90.py --rounds 3 --masks full --lengths 1024,2048,4096,8192 --out "$OUT/ab-f16.jsonl" \
  --kernel ship=$S:${E}_full_attn_f16_hd128 --kernel stream=$N:${E}_v_stream128_attn_f16_hd128 2>&1 | tee "$OUT/ab-f16.txt" | grep -E "^dense|rror"
