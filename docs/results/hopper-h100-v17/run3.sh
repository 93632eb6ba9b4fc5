#!/bin/bash
# Session 19, run 3: why run 2's stream share lost (0.96-0.98 of the static whole waves it starts with, where the
# shared last wave should gain ~3%). Its costs apart (timing only, outputs wrong): nostore (parts neither store nor
# combine: the schedule alone), nocombine (stores, no merge), nofence (the ordering by the warp barrier and lane
# 0's acq_rel atomic). Then a trace (scripts/sm90_trace.py: per-tile marks; the last store per CTA) of the stream
# and static kernels at B 8 x H 16 x 2k and 8k.
# Predicted: if the parts' stores and merges are the cost, nostore ~ static x 1.02-1.03; if nostore is as slow as
# stream, the shared region's steps run slower (its CTAs spread over the tiles' KV blocks, not in lockstep).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
S=.device/ship18; N=.device/stream; E=qm_dense_prefill_sm90_v
timeout 240 python3 scripts/ab_sm90.py --rounds 3 --masks full --lengths 1024,2048,8192 --out "$OUT/ab-bf16.jsonl" \
  --kernel static=$N:${E}_static128_full_attn_bf16_hd128 --kernel stream=$N:${E}_stream128_attn_bf16_hd128 \
  --kernel nostore=$N:${E}_stream128_nostore_attn_bf16_hd128 --kernel nocombine=$N:${E}_stream128_nocombine_attn_bf16_hd128 \
  --kernel nofence=$N:${E}_stream128_nofence_attn_bf16_hd128 2>&1 | tee "$OUT/ab-bf16.txt" | grep -E "^dense|rror"
for v in stream128 static128; do
  timeout 100 python3 scripts/sm90_trace.py run --registry .device/trace-$v --seqlens-k 2048,8192 --seqlen-q 2048 \
    --json "$OUT/trace-$v.json" 2>&1 | tee "$OUT/trace-$v.txt" | tail -30
done
