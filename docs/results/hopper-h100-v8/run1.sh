#!/bin/bash
# Session 10, run 1: paged prefill with each gathered stage arriving through
# cp.async.mbarrier.arrive.noinc (the producer no longer waits for tile n - 1's copies after issuing
# tile n; the consumer fences the stage for the GMMAs), bf16, beside the shipped paged kernels and FA3's
# paged prefill in the same run. registry-var10/ from
#   python scripts/sm90_variants.py --out registry-var10 --only pg128,pg64,pg256,pg128_nofence,pg256_n80,\
#     pg256_n80o,pg64_m192 --baseline qm_paged_prefill_sm90_attn_bf16_hd{128,64,256}
# Predicted (same run, against the shipped kernel of the same D): pg128 / pg64 / pg256 +5-15% at L >= 4k;
# pg128_nofence within 1% of pg128; pg256_n80 (FA3's 128 x 80 tile, as dense D 256) +10-20% over pg256;
# pg64_m192 (192 x 96, three consumer warpgroups, as dense D 64) +8-16% over pg64 at L >= 4k.
# Then registry-var10n/: pg128_nocopy (the producer copies nothing: the consumers' ceiling, never
# validates) beside pg128.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var10 --dtypes bf16 --bench-dtypes bf16 --flex none \
  --lengths 2048,8192,16384 --budget-s 470 --sanitize qm_paged_prefill_sm90_v_pg128_attn_bf16_hd128 \
  --out "$OUT/var" > /tmp/var.log 2>&1
grep -E "^\[|FAIL|rror|hazard|ERROR SUMMARY" /tmp/var.log | grep -v "\[ok\]" | tail -30
bash scripts/hopper_device.sh --kernels registry-var10n --dtypes bf16 --bench-dtypes bf16 --flex none \
  --lengths 2048,8192,16384 --no-validate --budget-s 100 --out "$OUT/nocopy" > /tmp/nocopy.log 2>&1
grep -E "^\[|FAIL|rror" /tmp/nocopy.log | grep -v "\[ok\]" | tail -10
cp /tmp/var.log /tmp/nocopy.log "$OUT/"
