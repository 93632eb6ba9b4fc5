#!/bin/bash
# Session 6, run 2: tiles claimed from a counter (persistent D 128 and D 64) validated, sanitized and
# timed beside the shipped kernels; a trace of the persistent D 128 kernel.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var --bench-dtypes bf16,f16 --flex none --out "$OUT/bench" \
  --sanitize qm_dense_prefill_sm90_v_pers_attn_bf16_hd128,qm_dense_prefill_sm90_v_d64_attn_bf16_hd64 > "$OUT/bench.log" 2>&1
export PYTHONPATH="$PWD:/tmp/py"
python3 scripts/sm90_trace.py run --registry registry-trace-pers --seqlens-k 1024,2048,8192 --json "$OUT/trace-pers.json" > "$OUT/trace.log" 2>&1
grep -E "^\[|FAIL|rror" "$OUT/bench.log" | tail -30; cat "$OUT/trace.log"
