#!/bin/bash
# Session 19, run 5: run 4's single launches (ncu, B 8 x H 16, no mask) had the stream share's schedule alone
# (nostore) 2.4% / 1.6% faster than the static whole waves at 2k / 8k, and its trace balanced (last store per
# CTA 417-427 us against static's 400-434), while run 3's timed loop had it 2-4% slower. The timed loop differs:
# a 256 MB write evicts L2 before each run, and the launch takes the split ABI's workspace path.
# (a) the same A/B on a warm L2 (--no-l2-flush); (b) with the flush, H 33 (2112 tiles: whole waves, so the stream
# kernel shares nothing and takes the counter's claims through the split ABI's workspace path).
# Predicted: if the flush is what slows the share, (a) has nostore ahead of static; if the launch path, (b) has
# stream below ship.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
S=.device/ship18; N=.device/stream; E=qm_dense_prefill_sm90
timeout 200 python3 scripts/ab_sm90.py --rounds 3 --masks full --lengths 1024,2048,8192 --no-l2-flush --out "$OUT/ab-warm.jsonl" \
  --kernel ship=$S:${E}_full_attn_bf16_hd128 --kernel static=$N:${E}_v_static128_full_attn_bf16_hd128 \
  --kernel stream=$N:${E}_v_stream128_attn_bf16_hd128 --kernel nostore=$N:${E}_v_stream128_nostore_attn_bf16_hd128 \
  2>&1 | tee "$OUT/ab-warm.txt" | grep -E "^dense|rror"
timeout 150 python3 scripts/ab_sm90.py --rounds 3 --masks full --lengths 2048,8192 --heads 33 --out "$OUT/ab-h33.jsonl" \
  --kernel ship=$S:${E}_full_attn_bf16_hd128 --kernel static=$N:${E}_v_static128_full_attn_bf16_hd128 \
  --kernel stream=$N:${E}_v_stream128_attn_bf16_hd128 2>&1 | tee "$OUT/ab-h33.txt" | grep -E "^dense|rror"
