#!/bin/bash
# Session 22, run 6 (H200): run 5 found O's bulk store (tma128f: STORE_TMA = 1, two stages, CARRY = 0) 1.6-1.8% over the
# shipped `_full` at 1k-4k bf16, 1.009x cuDNN at 2k. Before shipping it: hopper_check's cases on tma128f and its 144-key
# `_long` build (bf16, f16), memcheck / racecheck on tma128f bf16; then, 5 rounds, bf16 and f16: tma128f against `_full`
# without a mask at 1k-4k, against the shipped causal kernel (carry=pv, register store) under a causal mask at 1k-4k,
# and the `_long` builds (144 keys, two stages) with and without the bulk store at 8k-16k, both masks.
# Predicted: all cases pass, sanitizers clean; full +1-2% in both dtypes; causal level to -2% (carry's overlap lost);
# long +0.5-1%.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
timeout 200 python3 scripts/hopper_check.py --kernels .device/tma22f --no-bench --budget-s 180 --out "$OUT/check" \
  --sanitize qm_dense_prefill_sm90_v_tma128f_attn_bf16_hd128 > "$OUT/check.txt" 2>&1
echo "check rc=$?"; grep -E "^\[|done in" "$OUT/check.txt" | tail -12
S=.device/bench22; T=.device/tma22f; P=qm_dense_prefill_sm90
ab() {  # tag, masks, lengths, shipped entry, bulk-store entry
  timeout 100 python3 scripts/ab_sm90.py --rounds 5 --masks "$2" --lengths "$3" --out "$OUT/ab-$1.jsonl" \
    --kernel ship=$S:$4 --kernel tma=$T:$5 2>&1 | tee "$OUT/ab-$1.txt" | grep -E "^dense|rror"
}
for dt in bf16 f16; do
  ab full-$dt full 1024,2048,4096 ${P}_full_attn_${dt}_hd128 ${P}_v_tma128f_attn_${dt}_hd128
  ab causal-$dt causal 1024,2048,4096 ${P}_attn_${dt}_hd128 ${P}_v_tma128f_attn_${dt}_hd128
  ab long-$dt full,causal 8192,16384 ${P}_long_attn_${dt}_hd128 ${P}_v_tma128f_long_attn_${dt}_hd128
done
cd "$OUT" && tar czf ab.tgz ab-* && rm -f ab-*.jsonl ab-*.txt
