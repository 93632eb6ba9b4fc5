#!/bin/bash
# Session 18, run 4: run 3's bench put the carry kernel at 0.98 of cuDNN at 16k causal (bf16; session 17's
# kernel read 1.02-1.06 there in earlier sessions), a row run 3's A/B did not time. The 8k and 16k causal rows
# and the llama3.1-405b GQA rows again, carry / ship interleaved, seven rounds. Predicted: level (+-1%) at 8k and
# 16k (a 16k causal tile has 64 KV tiles on average: its boundary is under 2% of it).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
S=.device/ship17; N=.device/carry18; E=qm_dense_prefill_sm90_attn
timeout 200 python3 scripts/ab_sm90.py --rounds 7 --masks causal --lengths 8192,16384 --out "$OUT/ab-bf16-long.jsonl" \
  --kernel ship=$S:${E}_bf16_hd128 --kernel carry=$N:${E}_bf16_hd128 2>&1 | tee "$OUT/ab-bf16-long.txt" | grep -E "^dense|rror"
timeout 150 python3 scripts/ab_sm90.py --rounds 7 --masks causal --out "$OUT/ab-gqa405-bf16.jsonl" \
  --gqa 8,128,8,2048 --gqa 2,128,8,8192 \
  --kernel ship=$S:${E}_bf16_hd128 --kernel carry=$N:${E}_bf16_hd128 2>&1 | tee "$OUT/ab-gqa405-bf16.txt" | grep -E "^dense|rror"
