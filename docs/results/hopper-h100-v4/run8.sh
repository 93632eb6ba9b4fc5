#!/bin/bash
# Session 6, run 8: is the next tile's Q load (2.5 us; the consumers wait 0.45 us for it) slow because
# it shares the SM's bandwidth with the next tile's K/V copies issued right after it? v_q_first (the
# producer copies K/V only once Q landed; its QM_SM90_Q_BEFORE_KV switch is reverted) beside the
# shipped D 128.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var --bench-dtypes bf16 --flex none --lengths 1024,2048,8192 --out "$OUT/bench" > "$OUT/bench.log" 2>&1
export PYTHONPATH="$PWD:/tmp/py"
python3 scripts/sm90_trace.py run --registry registry-trace-q --seqlens-k 1024,2048 --json "$OUT/trace-qfirst.json" > "$OUT/trace.log" 2>&1
grep -E "^\[" "$OUT/bench.log" | grep -v "^\[ok\]" | tail; grep -E "Q wait|Q landed|first S|Lk=" "$OUT/trace.log"
