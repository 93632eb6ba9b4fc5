#!/bin/bash
# Session 6, run 3: why the persistent D 128 kernel loses 2-5% per KV tile without a causal mask at
# long L: registers (232 vs 240 for the consumers), tile order (one head at a time vs L2 head groups),
# beside the shipped grid kernel; D 64 likewise. Traces of grid and persistent at B 1 x 16k.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var --bench-dtypes bf16 --flex none --out "$OUT/bench" > "$OUT/bench.log" 2>&1
export PYTHONPATH="$PWD:/tmp/py"
for r in registry-trace-grid registry-trace-pers; do
  python3 scripts/sm90_trace.py run --registry $r --seqlens-k 2048 --json "$OUT/$r-2k.json"
  python3 scripts/sm90_trace.py run --registry $r --batch 1 --seqlen-q 16384 --seqlens-k 16384 --json "$OUT/$r-16k.json"
done > "$OUT/trace.log" 2>&1
grep -E "^\[|FAIL|rror" "$OUT/bench.log" | grep -v "^\[ok\]" | tail; cat "$OUT/trace.log"
