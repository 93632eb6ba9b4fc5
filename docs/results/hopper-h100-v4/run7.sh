#!/bin/bash
# Session 6, run 7 (its QM_SM90_REFETCH_Q_MAP switch and variant are reverted): does re-fetching Q's tensor map into the descriptor cache per tile shorten the
# next tile's Q load (2.5 us, the consumers wait 0.45 us for it)? v_qmap beside the shipped D 128.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var --bench-dtypes bf16 --flex none --out "$OUT/bench" > "$OUT/bench.log" 2>&1
export PYTHONPATH="$PWD:/tmp/py"
python3 scripts/sm90_trace.py run --registry registry-trace-q --seqlens-k 1024,2048 --json "$OUT/trace-qmap.json" > "$OUT/trace.log" 2>&1
grep -E "^\[" "$OUT/bench.log" | grep -v "^\[ok\]" | tail; grep -E "Q wait|Q landed|Lk=" "$OUT/trace.log"
