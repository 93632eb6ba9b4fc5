#!/bin/bash
# Session 9, run 5: where run 4's TMA store of O loses (D 64: -3 to -6% against the register store
# with the same three stages). Traces (scripts/sm90_trace.py: clock marks per tile) of the TMA-store
# kernels and of the register-store ones (stg64 / stg128), bf16, B 8 x H 16 x Lq 2k, Lk 1k / 2k / 8k.
# Predicted: the epilogue interval ("normalise and store O") is no shorter with the TMA store; if the
# bulk stores delay the producer's next loads in the TMA unit, the next tile's "first S GEMM" and
# "Q wait" grow instead.
# registry-trace-{t64,s64,t128,s128}/ from: scripts/sm90_trace.py build --out registry-trace-t64 \
#   --head-dim 64 (t128: --head-dim 128; s64 / s128: --variant stg64 / stg128)
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --no-validate --no-bench --out /tmp/env > /tmp/env.log 2>&1  # wheels into /tmp/py
export PYTHONPATH="$PWD:/tmp/py"
for r in t64 s64 t128 s128; do
  timeout 120 python3 scripts/sm90_trace.py run --registry "registry-trace-$r" --seqlens-k 1024,2048,8192
done > "$OUT/traces.txt" 2>&1
cat "$OUT/traces.txt" | grep -v "^\s*$" | head -120
