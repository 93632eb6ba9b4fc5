#!/bin/bash
# Session 22, run 3 (H200): the bar's rows interleaved (scripts/ab_sm90.py, 5 rounds, order rotated each round, cuDNN
# timed in every round), bf16 and f16, each row on the kernel the runtime picks: D 128 `_full` (no mask) and the causal
# kernel below 8192 keys, `_long` from 8192; D 64 and D 256 their one kernel; the seed's GQA rows (causal). Each row
# times the build before this session's counter change (old, .device/bench21b) beside the new one (.device/bench22).
# Predicted: new / old +0.3-0.6% at 2k, level from 4k; new / cuDNN >= 1.00 everywhere but D 128 without a mask at 2k
# (0.99-1.00: run 1 read 0.994).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
ab() {  # tag, masks, lengths-or-gqa-args, entry
  local tag=$1 masks=$2 shapes=$3 entry=$4
  timeout 120 python3 scripts/ab_sm90.py --rounds 5 --masks "$masks" $shapes --out "$OUT/ab-$tag.jsonl" \
    --kernel old=.device/bench21b:$entry --kernel new=.device/bench22:$entry 2>&1 | tee "$OUT/ab-$tag.txt" | grep -E "^dense|rror"
}
for dt in bf16 f16; do
  P=qm_dense_prefill_sm90
  ab d128full-$dt full "--lengths 2048,4096" ${P}_full_attn_${dt}_hd128
  ab d128causal-$dt causal "--lengths 2048,4096" ${P}_attn_${dt}_hd128
  ab d128long-$dt full,causal "--lengths 8192,16384" ${P}_long_attn_${dt}_hd128
  ab d64-$dt full,causal "--lengths 2048,4096,8192,16384" ${P}_attn_${dt}_hd64
  ab d256-$dt full,causal "--lengths 2048,4096,8192,16384" ${P}_attn_${dt}_hd256
  ab gqa2k-$dt causal "--gqa 8,32,32,2048 --gqa 8,64,8,2048 --gqa 8,128,8,2048" ${P}_attn_${dt}_hd128
  ab gqa8k-$dt causal "--gqa 2,32,32,8192 --gqa 2,64,8,8192 --gqa 2,128,8,8192" ${P}_long_attn_${dt}_hd128
done
cd "$OUT" && cat ab-*.txt | grep -E "^dense" > ab-all.txt; tar czf ab.tgz ab-*.jsonl ab-*.txt && rm -f ab-*.jsonl ab-d* ab-g*
