#!/bin/bash
# Session 22, run 8 (H200): the D 128 kernels as shipped now (.device/ship22: build_sm90_kernels of dense_prefill_sm90.tl
# at D 128 after `params when D = 128 { STAGES = 2  STORE_TMA = 1 }` replaced the causal block's CARRY = 1: one kernel
# for both masks, and `_long` with the bulk store). Their SASS matches run 6's tma128f builds (checked offline).
# hopper_check's cases and memcheck / racecheck on the bf16 kernel; then the bar's D 128 rows interleaved, 5 rounds,
# bf16 and f16, against run 3's kernels (.device/bench22: `_full`, causal with carry, `_long`, register stores).
# Predicted: all pass; ours / cuDNN >= 1.00 on every D 128 row at 2k-16k (2k without a mask 1.01), GQA rows +1-3%.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
timeout 150 python3 scripts/hopper_check.py --kernels .device/ship22 --no-bench --budget-s 130 --out "$OUT/check" \
  --sanitize qm_dense_prefill_sm90_attn_bf16_hd128 > "$OUT/check.txt" 2>&1
echo "check rc=$?"; grep -E "^\[|done in" "$OUT/check.txt" | tail -10
ab() {  # tag, masks, shapes, old entry, new entry
  timeout 100 python3 scripts/ab_sm90.py --rounds 5 --masks "$2" $3 --out "$OUT/ab-$1.jsonl" \
    --kernel old=.device/bench22:$4 --kernel new=.device/ship22:$5 2>&1 | tee "$OUT/ab-$1.txt" | grep -E "^dense|rror"
}
P=qm_dense_prefill_sm90
for dt in bf16 f16; do
  ab full-$dt full "--lengths 1024,2048,4096" ${P}_full_attn_${dt}_hd128 ${P}_attn_${dt}_hd128
  ab causal-$dt causal "--lengths 1024,2048,4096" ${P}_attn_${dt}_hd128 ${P}_attn_${dt}_hd128
  ab long-$dt full,causal "--lengths 8192,16384" ${P}_long_attn_${dt}_hd128 ${P}_long_attn_${dt}_hd128
  ab gqa2k-$dt causal "--gqa 8,32,32,2048 --gqa 8,64,8,2048 --gqa 8,128,8,2048" ${P}_attn_${dt}_hd128 ${P}_attn_${dt}_hd128
  ab gqa8k-$dt causal "--gqa 2,32,32,8192 --gqa 2,64,8,8192 --gqa 2,128,8,8192" ${P}_long_attn_${dt}_hd128 ${P}_long_attn_${dt}_hd128
done
cd "$OUT" && cat ab-*.txt | grep -E "^dense" > ab-all.txt; tar czf ab.tgz ab-*.jsonl ab-*.txt && rm -f ab-*.jsonl ab-[fclg]*
