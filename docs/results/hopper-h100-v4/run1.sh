#!/bin/bash
# Session 6, run 1: traces of the grid and persistent D 128 kernels, then the persistent order
# variants (scripts/sm90_variants.py) timed beside the shipped D 128 / D 64 kernels.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var --bench-dtypes bf16 --flex none --out "$OUT/bench" > "$OUT/bench.log" 2>&1
export PYTHONPATH="$PWD:/tmp/py"
for r in registry-trace-grid registry-trace-pers registry-trace-pg1; do
  python3 scripts/sm90_trace.py run --registry "$r" --seqlens-k 1024,2048,8192 --json "$OUT/$r.json"
done > "$OUT/trace.log" 2>&1
tail -5 "$OUT/bench.log"; cat "$OUT/trace.log"
