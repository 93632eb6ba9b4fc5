#!/bin/bash
# Session 22, run 4 (H200): carry=pv without a mask, now that no fill kernel sits in the timed span. The shipped causal
# D 128 kernel (CARRY = 1: one KV loop across a CTA's tiles, no peeled first step or last O += P V) serves calls without
# a mask too; the runtime gives those to `_full` (CARRY = 0). Session 18's ncu put the carry kernel 1.6% ahead of
# `_full` at 2k but the timed A/B level (0.998), and session 21 timed carry with lazy rescales level again (run 5).
# Here both from .device/bench22, 7 rounds, with each call's kernels and their GPU time (torch.profiler, warm L2).
# Predicted: carry / full 1.000-1.010 at 1k-2k; the profiler's kernel times 0.5-1.5% apart in carry's favour.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
for dt in bf16 f16; do
  timeout 150 python3 scripts/ab_sm90.py --rounds 7 --masks full --lengths 1024,2048,4096 --list-kernels \
    --out "$OUT/ab-carry-$dt.jsonl" --kernel full=.device/bench22:qm_dense_prefill_sm90_full_attn_${dt}_hd128 \
    --kernel carry=.device/bench22:qm_dense_prefill_sm90_attn_${dt}_hd128 2>&1 | tee "$OUT/ab-carry-$dt.txt" \
    | grep -E "^dense|^  |rror"
done
