#!/bin/bash
# Session 17, run 6: the shipped set with idle=skip at D 64 (IDLE = 1 there, 0 elsewhere; dense D 64's
# source is run 5's `new` build but for comments; D 128 / D 256 KV loops as shipped, 938 / 793).
# .device/ship17: build_sm90_kernels of dense_prefill_sm90.tl and paged_prefill_sm90.tl, bf16 and f16,
# D 64 / 128 / 256. Every kernel validated (dense and paged), memcheck and racecheck on dense D 64 bf16,
# then the bar table's D 64 rows with every anchor (cuDNN, FA3 from the vLLM payload, FA2, FlexAttention)
# in bf16 and f16. Predicted (run 5): D 64 without a mask 1.03-1.05x cuDNN at 1k, causal 0.90-0.92.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
python3 - <<'PY'  # hopper_device.sh reads registry-sm90a/: point it at the build
import os; os.path.exists("registry-sm90a") or os.symlink(".device/ship17", "registry-sm90a")
PY
bash scripts/hopper_device.sh --no-bench --budget-s 200 --sanitize qm_dense_prefill_sm90_attn_bf16_hd64 \
  --out "$OUT/validate" > "$OUT/validate.log" 2>&1
echo "validate rc=$?"; grep -E "^\[" "$OUT/validate.log" | grep -v "\[ok\]"; grep -c "^\[ok\]" "$OUT/validate.log"
bash scripts/hopper_device.sh --no-validate --head-dims 64 --bench-dtypes bf16,f16 --flex all \
  --lengths 1024,2048,4096,8192,16384 --budget-s 330 --out "$OUT/bench" > "$OUT/bench.log" 2>&1
echo "bench rc=$?"; grep -E "^\[" "$OUT/bench.log" | grep -v "\[ok\]"; grep -E "L=1024|L=2048" "$OUT/bench.log" | head -12
