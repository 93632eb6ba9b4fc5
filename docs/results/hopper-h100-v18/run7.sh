#!/bin/bash
# Session 20, run 7: the softmax held inside its turn. Run 4's alt_nomask (uniform descriptors) lost 8-12%: its SASS
# has the whole softmax before the turn's BAR.SYNC (ptxas hoisted it), so both warpgroups ran their softmax at once.
# alt_dep* make the exponentials depend on a shared-memory load after the barrier (a select on a tile word that is
# never below -1): BAR.SYNC, LDS, the exponentials, BAR.ARV 287 instructions later, as cuDNN's loop. alt_dep_nomask:
# 538 instructions, R2UR 18 (timing only, no mask); alt_dep: with the mask, R2UR 33.
# Predicted: alt_dep_nomask level with the shipped `_full` kernel at 8k (cuDNN's step) and +2-3% at 1k-2k; alt_dep
# between run 2's alt and that.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
S=.device/ship18; A=.device/alt; E=qm_dense_prefill_sm90
timeout 250 python3 scripts/ab_sm90.py --rounds 5 --masks full --lengths 1024,2048,4096,8192 --out "$OUT/ab-full.jsonl" \
  --kernel ship=$S:${E}_full_attn_bf16_hd128 --kernel dep_nomask=$A:qm_alt_dep_nomask_attn_bf16_hd128 \
  --kernel dep=$A:qm_alt_dep_attn_bf16_hd128 \
  2>&1 | tee "$OUT/ab-full.txt" | grep -E "^dense|rror"
