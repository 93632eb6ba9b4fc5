#!/bin/bash
# Session 18, run 1: the flat KV loop at D 128 (scripts/experiments/flat_sm90.cu, built by
# scripts/experiments/build_flat.py --out .device/flat). One loop walks (tile, KV block) steps: at a tile
# switch the next tile's first S GEMM is issued beside the finished tile's last O += P V, its softmax runs
# beside that GEMM, and the finished tile's O is stored after. Steady step as shipped (542 / 535
# instructions on the unmasked path, R2UR 16 / 17, no spill). q2: two Q buffers, two K/V stages; q1: one
# Q buffer (the next Q loads once the last S GEMM is done), three stages.
# 1. validate the four kernels (bf16, f16; 48 adversarial cases), memcheck and racecheck on q2 bf16;
# 2. A/B ship / q2 / q1, bf16, both masks, 1k-8k, 5 rounds; f16 without a mask, 1k-4k, 3 rounds.
# Predicted (the shipped tile boundary is ~2.3 us of a 26.1 us 2k tile with the tensor pipe idle; this
# hides the first S GEMM and softmax, ~0.8-1.2 us): q2 +3-4.5% at 2k, +6-8% at 1k, +1.5-2% at 4k, +0.5-1%
# at 8k without a mask; causal alike at 1k-2k. q1 below q2 at 1k-2k (its next Q waits for the last S GEMM).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
timeout 270 python3 scripts/hopper_check.py --kernels .device/flat --no-bench --budget-s 260 --out "$OUT/check" \
  --sanitize qm_flat_q2_attn_bf16_hd128 > "$OUT/check.txt" 2>&1
echo "check rc=$?"; grep -E "^\[|done in" "$OUT/check.txt" | tail -12
for dt in bf16 f16; do
  if [ $dt = bf16 ]; then M=full,causal; L=1024,2048,4096,8192; R=5; else M=full; L=1024,2048,4096; R=3; fi
  timeout 150 python3 scripts/ab_sm90.py --rounds $R --masks $M --lengths $L --out "$OUT/ab-$dt.jsonl" \
    --kernel ship=.device/ship17:qm_dense_prefill_sm90_attn_${dt}_hd128 \
    --kernel q2=.device/flat:qm_flat_q2_attn_${dt}_hd128 --kernel q1=.device/flat:qm_flat_q1_attn_${dt}_hd128 \
    2>&1 | tee "$OUT/ab-$dt.txt" | grep -E "^dense|rror"
done
