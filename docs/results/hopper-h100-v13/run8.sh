#!/bin/bash
# Session 15, run 8: the gcd-aligned padding shift in paged prefill only. Run 3 timed it +0.8-1.5% on
# paged D 64 causal rows. Dense keeps the plain shift: dense D 64's KV loop got slower with any
# correct gcd spelling. Offline, paged D 64's and D 128's KV loops are identical with either shift;
# D 256's is reordered (806 instructions both).
# registry-var15u/: paged bf16 D 64 / 128 / 256 from registry-var15c (raw: the plain shift) and
# registry-var15g (gcd: build_sm90_kernels of paged_prefill_sm90.tl with the gcd shift).
# Interleaved A/B, three rounds: the sweep; then chunks after context (ab_sm90.py --context): Lq 1000
# after 3000 / 3080 keys, Lq 2000 after 3000, causal.
# Predicted, from the tile counts (masked tiles cost ~1.3 unmasked): sweep D 64 causal +1-1.5% at 1k /
# 2k / 8k, level elsewhere and at D 128 / 256 (no padding at these lengths); chunks D 64 1000 on 3000
# +0.8% and 2000 on 3000 +0.7%, D 128 1000 on 3080 +1%, D 128 1000 on 3000 level (no aligned shift
# exists there).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
S=registry-var15u
for d in 64 128 256; do
  timeout 150 python3 scripts/ab_sm90.py --rounds 3 --out "$OUT/ab.jsonl" \
    --kernel raw=$S/raw:qm_paged_prefill_sm90_attn_bf16_hd$d --kernel gcd=$S/gcd:qm_paged_prefill_sm90_attn_bf16_hd$d \
    2>&1 | tee "$OUT/ab-paged$d.txt"
done
for spec in "64 1000 3000" "64 2000 3000" "128 1000 3080" "128 1000 3000"; do
  set -- $spec
  timeout 60 python3 scripts/ab_sm90.py --rounds 3 --masks causal --lengths $2 --context $3 --out "$OUT/ab.jsonl" \
    --kernel raw=$S/raw:qm_paged_prefill_sm90_attn_bf16_hd$1 --kernel gcd=$S/gcd:qm_paged_prefill_sm90_attn_bf16_hd$1 \
    2>&1 | tail -1 | sed "s/^/context $3: /" | tee -a "$OUT/ab-chunks.txt"
done
