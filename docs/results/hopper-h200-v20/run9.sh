#!/bin/bash
# Session 22, run 9 (H200): hopper_check's one-pass bench of the D 128 kernels as shipped now (.device/ship22), bf16 and
# f16, with FA3 from the vLLM payload (the aim) beside cuDNN; Flex not timed (session 21 run 8: 1.37-1.68x at D 128 with
# the slower kernels). Predicted: ours / cuDNN 1.00-1.03 without a mask at 2k-16k, 1.05-1.12 causal; FA3 0.95-1.01.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
mkdir -p .device/vllm-payload && cp -r .device/vpay/. .device/vllm-payload/
source scripts/device_env.sh
timeout 400 python3 scripts/hopper_check.py --kernels .device/ship22 --no-validate --bench-dtypes bf16,f16 --flex none \
  --budget-s 380 --out "$OUT/check" > "$OUT/check.txt" 2>&1
echo "check rc=$?"; grep -E "^\[|done in" "$OUT/check.txt" | tail -8
python3 scripts/hopper_table.py "$OUT/check/hopper_check.json" > "$OUT/table.md" 2>&1; cat "$OUT/table.md"
