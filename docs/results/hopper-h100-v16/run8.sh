#!/bin/bash
# Session 18, run 8: paged prefill against FA3's paged prefill, bf16, the shipped set (.device/paged18: the
# three bf16 paged kernels of .device/ship18, the same SASS as session 17's, paged D 64 with idle=skip; its
# FA3 comparison was last run in session 15, before idle=skip). hopper_check's bench: page 16, the block
# table shuffled, B * L = 16k tokens, causal and not, beside FA3's paged prefill and cuDNN's dense SDPA.
# Predicted: D 64 from session 15's 0.97-1.08x FA3 at L >= 2k to about 1.00-1.10x (+1-4% at 2k-8k, +6% at
# 1k without a mask since); D 128 and D 256 as in session 15 (0.975-1.03x, 0.944-0.985x).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
timeout 420 python3 scripts/hopper_check.py --kernels .device/paged18 --no-validate --bench-dtypes bf16 \
  --lengths 1024,2048,4096,8192,16384 --flex none --budget-s 400 --out "$OUT/bench" > "$OUT/bench.log" 2>&1
echo "bench rc=$?"; grep -E "^\[" "$OUT/bench.log"
