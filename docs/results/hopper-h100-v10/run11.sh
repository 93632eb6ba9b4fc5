#!/bin/bash
# Session 12, run 11 (prepared in session 12, run in session 13): the consumer body once per
# warpgroup with its index a compile-time constant (QM_SM90_WG_CONST), so that sQ's GMMA descriptors
# come from uniform registers, against the shipped kernels, dense and paged, D 64 / 128 / 256, bf16.
# registry-var13/ from
#   python scripts/sm90_variants.py --out registry-var13 --only pg256_wgc,pg128_wgc,pg64_wgc,d256_wgc,d128_wgc,d64_wgc
#   python scripts/sm90_variants.py --out registry-var13 --only none \
#     --baseline qm_paged_prefill_sm90_attn_bf16_hd64,qm_paged_prefill_sm90_attn_bf16_hd128,qm_paged_prefill_sm90_attn_bf16_hd256
#   (dense baselines: build_sm90_kernels(Path('/tmp/basedense'), programs=[('dense_prefill_sm90.tl', ('bf16',),
#    (64, 128, 256))]), then --only none --baseline-from /tmp/basedense --baseline qm_dense_prefill_sm90_attn_bf16_hd{64,128,256})
# Offline (scripts/sass_kv_loop.py: the KV loop's static instructions / R2UR, shipped -> variant): paged D 256 812 / 34 -> 785 / 4,
# D 128 940 / 17 -> 928 / 1, D 64 703 / 8 -> 645 / 0 (VIADD 51 -> 4); dense D 256 789 / 32 -> 719 / 0, D 128
# 934 / 17 -> 922 / 1, D 64 691 / 8 -> 633 / 0. No spills, except dense D 256: 12 B stored and never
# loaded, before its loop. No C7518 (GMMAs not serialised); the kernels' code grows by the second
# (D 64: third) copy of the consumer body.
# Predicted: D 64 +1-4% (8% fewer loop instructions, three consumer warpgroups issuing), D 256 +1-4%
# (no R2UR between the S GEMM's HGMMAs: the GEMM goes out faster), D 128 level to +1%. If the gain holds,
# make the constant-index body the lowering's default (and drop the #ifdef) after validation and sanitizers.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var13 --dtypes bf16 --bench-dtypes bf16 --flex none \
  --lengths 1024,2048,8192,16384 --budget-s 420 \
  --sanitize qm_paged_prefill_sm90_v_pg64_wgc_attn_bf16_hd64,qm_dense_prefill_sm90_v_d256_wgc_attn_bf16_hd256 \
  --out "$OUT/var" > /tmp/var.log 2>&1
grep -E "^\[|FAIL|rror|hazard|ERROR SUMMARY" /tmp/var.log | grep -v "\[ok\]" | tail -30
cp /tmp/var.log "$OUT/"
