#!/bin/bash
# Session 7, run 1: (a) the decoded tile hand-over (the producer hands the consumers the tile's
# coordinates, lets and KV range; dec128 / dec64) beside the shipped D 128 / D 64 kernels, validated,
# dec128 under memcheck + racecheck, traced against the shipped kernel; (b) FA3's non-causal D 128 tile,
# 128 x 176 with two stages at 24 / 240 registers, persistent (n176) and one tile per CTA (n176g).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var --bench-dtypes bf16 --flex none --budget-s 420 --out "$OUT/bench" \
  --sanitize qm_dense_prefill_sm90_v_dec128_attn_bf16_hd128 > "$OUT/bench.log" 2>&1
export PYTHONPATH="$PWD:/tmp/py"
for t in old dec; do
  python3 scripts/sm90_trace.py run --registry registry-trace-$t --seqlens-k 1024,2048 --json "$OUT/trace-$t.json" > "$OUT/trace-$t.log" 2>&1
done
grep -E "^\[|FAIL|rror" "$OUT/bench.log" | grep -v "^\[ok\]" | tail; grep -E "Q wait|Lk=|first S" "$OUT"/trace-*.log
