#!/bin/bash
# Session 10, run 2: paged prefill with the segment gather (8-row page segments: one shuffled segment
# address per 8 rows, then a stride add and a cp.async per 16 bytes; ~3-4 instructions a copy where the
# shuffled per-row address took ~10) on top of run 1's asynchronous stage arrival, bf16, beside the
# shipped paged kernels and FA3's paged prefill in the same run. Gathering kernels carry no K/V maps now
# (any page size that is a multiple of 8): validation adds pages 8 and 24. registry-var11/ from
#   python scripts/sm90_variants.py --out registry-var11 --only pg128,pg64,pg256,pg256_n80,pg64_m192 \
#     --baseline qm_paged_prefill_sm90_attn_bf16_hd{128,64,256}
# Run 1 measured the gather's cost: with no copies (pg128_nocopy) D 128 ran at 1.02x cuDNN, with them 0.73-0.77x.
# Predicted, against the shipped kernel of the same D at L >= 8k: pg128 +10-20% (the producer's issue slots
# fall from ~320 to ~140 per thread and tile pair); pg256 +15-25% (run 1's +13-15% and the cheaper copies);
# pg256_n80 +8% over pg256 as in run 1; pg64 +5-10%, pg64_m192 +8% over pg64 as in run 1.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var11 --dtypes bf16 --bench-dtypes bf16 --flex none \
  --lengths 2048,8192,16384 --budget-s 540 \
  --sanitize qm_paged_prefill_sm90_v_pg128_attn_bf16_hd128,qm_paged_prefill_sm90_v_pg64_m192_attn_bf16_hd64,qm_paged_prefill_sm90_v_pg256_n80_attn_bf16_hd256 \
  --out "$OUT/var" > /tmp/var.log 2>&1
grep -E "^\[|FAIL|rror|hazard|ERROR SUMMARY" /tmp/var.log | grep -v "\[ok\]" | tail -30
cp /tmp/var.log "$OUT/"
