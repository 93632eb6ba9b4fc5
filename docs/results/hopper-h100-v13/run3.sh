#!/bin/bash
# Session 15, run 3: the set to ship, bf16 (registry-var15b: build_sm90_kernels of dense_prefill_sm90.tl
# and paged_prefill_sm90.tl at D 64 / 128 / 256):
#  - dense D 64 takes run 2's winner, 192 x 128, gemms + ping-pong, 4 stages, for both masks (no
#    `_full` kernel: nothing measured faster for calls without a mask);
#  - the causal padding shift is a multiple of gcd(BLOCK_M, BLOCK_N) (run 2: shifting 192 x 96 tiles
#    by 64 rows at 2k / 8k put a third masked KV tile in every query tile, -2 to -3%).
# (registry-var15s/: those kernels and the A/B baselines, copied from registry-var15a / -shipped14 / -plan4.)
# First every kernel validated, memcheck / racecheck on dense and paged D 64, and the bar table with
# every anchor (hopper_check, FlexAttention at every head size); then interleaved A/B (ab_sm90.py):
#  - dense D 64: session 14 / this set / run 2's full64pp (raw shift: the same kernel at these lengths)
#    / session 13's plan64 (run 7's pick: the same params, timed 1-6% behind under the mask then);
#  - paged D 64: session 14 / run 2's (raw shift) / this set (gcd shift).
# Predicted: dense D 64 +4-11% over session 14 on both masks, within 1% of full64pp and plan64 (plan64
# without any padding shift: 1k causal -15%, 2k / 4k causal -4 to -5% against this set); paged D 64
# gcd shift over raw +2-3% at 2k and 8k causal, level elsewhere; D 64 against cuDNN: full 0.96 at 1k,
# >= 1.06 at 2k-16k; causal 0.90 at 1k, >= 1.01 at 2k-16k; D 64 against Flex at 1k >= 1.1.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var15s/new --dtypes bf16 --bench-dtypes bf16 --flex all \
  --lengths 1024,2048,4096,8192,16384 --budget-s 380 \
  --sanitize qm_dense_prefill_sm90_attn_bf16_hd64,qm_paged_prefill_sm90_attn_bf16_hd64 \
  --out "$OUT/shipped" > "$OUT/shipped.log" 2>&1
grep -E "^\[" "$OUT/shipped.log" | grep -v "\[ok\]"
source scripts/device_env.sh
S=registry-var15s; N=$S/new A=$S/a O=$S/old P=$S/plan
timeout 170 python3 scripts/ab_sm90.py --rounds 3 --out "$OUT/ab.jsonl" \
  --kernel old14=$O:qm_dense_prefill_sm90_attn_bf16_hd64 --kernel new=$N:qm_dense_prefill_sm90_attn_bf16_hd64 \
  --kernel full64pp=$A:qm_dense_prefill_sm90_v_full64pp_attn_bf16_hd64 \
  --kernel plan64=$P:qm_dense_prefill_sm90_v_plan64_attn_bf16_hd64 2>&1 | tee "$OUT/ab-dense64.txt"
timeout 120 python3 scripts/ab_sm90.py --rounds 3 --out "$OUT/ab.jsonl" \
  --kernel old14=$O:qm_paged_prefill_sm90_v_shippedpg64_attn_bf16_hd64 --kernel raw=$A:qm_paged_prefill_sm90_attn_bf16_hd64 \
  --kernel gcd=$N:qm_paged_prefill_sm90_attn_bf16_hd64 2>&1 | tee "$OUT/ab-paged64.txt"
