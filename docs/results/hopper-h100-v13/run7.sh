#!/bin/bash
# Session 15, run 7: does D 128's or D 256's instruction schedule move their speed as D 64's did?
# Offline: D 128's KV loop in run 3's gcd build has the shipped build's 938 instructions in another
# order; session 14's has 934. D 256: the gcd and shipped builds schedule alike (793), session 14's
# has 789. Interleaved A/B (ab_sm90.py), one process, three rounds; registry-var15t/ holds copies of
# the three builds' D 128 and D 256 kernels (registry-var15c, -var15b, -shipped14).
# Predicted: all within 1% at L >= 2k (D 128's and D 256's tensor pipe binds more than their issue).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
S=registry-var15t
for d in 128 256; do
  timeout 200 python3 scripts/ab_sm90.py --rounds 3 --lengths 1024,2048,4096,16384 --out "$OUT/ab.jsonl" \
    --kernel shipped=$S/shipped:qm_dense_prefill_sm90_attn_bf16_hd$d --kernel gcd=$S/gcd:qm_dense_prefill_sm90_attn_bf16_hd$d \
    --kernel old14=$S/old14:qm_dense_prefill_sm90_attn_bf16_hd$d 2>&1 | tee "$OUT/ab-dense$d.txt"
done
