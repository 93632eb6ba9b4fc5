#!/bin/bash
# Session 21, run 3 (H200): hopper_check's one-pass bench (bf16, every anchor but FlexAttention, FA3 from the vLLM
# payload) of the kernels as shipped now: dense D 128 (causal, `_full`, `_long`) and D 256 with rescale=lazy
# (.device/ship21), and the paged program with it (.device/var21 plazy*, the shipped paged params since run 2).
# Validation is run 2's (the same cubins). scripts/hopper_table.py shows, row by row, the kernel the runtime picks.
# Predicted, ours / cuDNN on this H200: dense D 128 full 0.98-0.99 at 2k, 1.00-1.01 at 4k, 1.02-1.03 at 8k-16k; causal
# 1.05-1.09; D 256 1.05-1.20; paged D 128 / 256 over FA3's paged prefill +1-4% on the eighteenth run's ratios.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
mkdir -p /tmp/bench && python3 - <<'PY'
import json, shutil
a = json.load(open(".device/ship21/index.json")); b = json.load(open(".device/var21/index.json"))
keep = {k: v for k, v in a["kernels"].items() if "bf16" in k and "hd64" not in k}
keep.update({k: v for k, v in b["kernels"].items() if "plazy" in k and "bf16" in k and "hd64" not in k})
for k in keep:
    shutil.copy(f".device/{'var21' if 'plazy' in k else 'ship21'}/{k}.cubin", "/tmp/bench/")
a["kernels"] = keep
json.dump(a, open("/tmp/bench/index.json", "w"))
print(sorted(keep))
PY
timeout 575 python3 scripts/hopper_check.py --kernels /tmp/bench --no-validate --bench-dtypes bf16 --flex none \
  --budget-s 555 --out "$OUT/check" > "$OUT/check.txt" 2>&1
echo "check rc=$?"; grep -E "^\[|done in" "$OUT/check.txt" | tail -10
python3 scripts/hopper_table.py "$OUT/check/hopper_check.json" > "$OUT/table.md" 2>&1; cat "$OUT/table.md"
