#!/bin/bash
# Session 21, run 4 (H200): run 3's bench again, bf16 and f16, every head size (dense D 64 stays eager; paged D 64 is lazy
# now), for the bar table; and the seed's GQA rows that read under cuDNN in run 3 (llama3.1-405b B 8 x 2k 0.98,
# qwen2.5-72b B 2 x 8k 0.97) interleaved, 5 rounds, the shipped causal kernel (lazy) beside its eager build.
# Predicted: the bench within +-2% of run 3's figures; GQA rows lazy / eager +1-1.5%, ours / cuDNN 1.00-1.04 interleaved.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
mkdir -p .device/vllm-payload && cp -r .device/vpay/. .device/vllm-payload/
source scripts/device_env.sh
timeout 200 python3 scripts/ab_sm90.py --rounds 5 --masks causal --gqa 8,128,8,2048 --gqa 2,64,8,8192 --gqa 8,64,8,2048 \
  --out "$OUT/ab-gqa.jsonl" --kernel eager=.device/eager21:qm_dense_prefill_sm90_v_eager128_attn_bf16_hd128 \
  --kernel lazy=.device/bench21b:qm_dense_prefill_sm90_attn_bf16_hd128 2>&1 | tee "$OUT/ab-gqa.txt" | grep -E "^dense|rror"
timeout 370 python3 scripts/hopper_check.py --kernels .device/bench21b --no-validate --bench-dtypes bf16,f16 --flex none \
  --budget-s 340 --out "$OUT/check" > "$OUT/check.txt" 2>&1
echo "check rc=$?"; grep -E "^\[|done in" "$OUT/check.txt" | tail -30
python3 scripts/hopper_table.py "$OUT/check/hopper_check.json" > "$OUT/table.md" 2>&1; cat "$OUT/table.md"
