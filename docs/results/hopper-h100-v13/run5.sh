#!/bin/bash
# Session 15, run 5: D 128's remaining miss is the unmasked 2k row (0.97 of cuDNN, the tile boundary).
# Four variants of dense_prefill_sm90.tl at D 128 (registry-var15d, `sm90_variants.py --only
# d128gpp,d128spp,d128c3n64,d128c3n80`), none spilling: the shipped 128 x 128 ping-pong with the
# GEMMs issued together (gemms) or the plain softmax overlap instead of the pinned one; and, as D 64's
# winner has, three consumer warpgroups on 192-row tiles with 64- or 80-key tiles (gemms + ping-pong;
# KV loops 575 / 670 instructions a warpgroup, 0.140 / 0.131 issued per score against the shipped
# 0.115). Predicted: gemms / softmax level (+-2%); the three-warpgroup ones -5 to +5% (more issue,
# more warpgroups to hide it). Validated first, then interleaved A/B against the shipped kernel.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var15d --dtypes bf16 --head-dims 128 --no-bench \
  --budget-s 120 --out "$OUT/check" > "$OUT/check.log" 2>&1
grep -E "^\[" "$OUT/check.log" | grep -v "\[ok\]"
source scripts/device_env.sh
S=registry-var15c V=registry-var15d
timeout 300 python3 scripts/ab_sm90.py --rounds 3 --lengths 1024,2048,4096,16384 --out "$OUT/ab.jsonl" \
  --kernel shipped=$S:qm_dense_prefill_sm90_attn_bf16_hd128 \
  --kernel gpp=$V:qm_dense_prefill_sm90_v_d128gpp_attn_bf16_hd128 \
  --kernel spp=$V:qm_dense_prefill_sm90_v_d128spp_attn_bf16_hd128 \
  --kernel c3n64=$V:qm_dense_prefill_sm90_v_d128c3n64_attn_bf16_hd128 \
  --kernel c3n80=$V:qm_dense_prefill_sm90_v_d128c3n80_attn_bf16_hd128 2>&1 | tee "$OUT/ab-dense128.txt"
