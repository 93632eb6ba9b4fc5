#!/bin/bash
# Session 21, run 3 (H200): hopper_check's one-pass bench (bf16, every anchor but FlexAttention, FA3 from the vLLM
# payload) of the kernels as shipped now: dense D 128 (causal, `_full`, `_long`) and D 256 with rescale=lazy
# (.device/ship21), and the paged program with it (.device/var21 plazy*, the shipped paged params since run 2).
# Validation is run 2's (the same cubins). scripts/hopper_table.py shows, row by row, the kernel the runtime picks.
# Predicted, ours / cuDNN on this H200: dense D 128 full 0.98-0.99 at 2k, 1.00-1.01 at 4k, 1.02-1.03 at 8k-16k; causal
# 1.05-1.09; D 256 1.05-1.20; paged D 128 / 256 over FA3's paged prefill +1-4% on the eighteenth run's ratios.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
# .device/bench21: those cubins (bf16, D 128 / 256) and ship21's index entries; .device/vpay: the vLLM payload less five
# wheels FA3's import does not need (llguidance, openai, openai-harmony, apache-tvm-ffi, xgrammar), for the 64 MiB carry
mkdir -p .device/vllm-payload && cp -r .device/vpay/. .device/vllm-payload/
source scripts/device_env.sh
timeout 555 python3 scripts/hopper_check.py --kernels .device/bench21 --no-validate --bench-dtypes bf16 --flex none \
  --budget-s 520 --out "$OUT/check" > "$OUT/check.txt" 2>&1
echo "check rc=$?"; grep -E "^\[|done in" "$OUT/check.txt" | tail -10
python3 scripts/hopper_table.py "$OUT/check/hopper_check.json" > "$OUT/table.md" 2>&1; cat "$OUT/table.md"
