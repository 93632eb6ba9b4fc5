#!/bin/bash
# Session 7, run 2: (a) the tile's coordinates packed into the one word the producer hands over
# (pack128 / pack64: the consumers skip TileScheduler::at's divisions; the loop's SASS is the shipped
# one's) beside the shipped D 128 / D 64 kernels, validated, pack128 under memcheck + racecheck and
# traced; (b) the KV tile at two stages: 128 x 128 (n128s2, the stage count alone) and 128 x 144 (n144,
# the widest tile ptxas fits at 40 / 232 without spilling).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var --bench-dtypes bf16 --flex none --budget-s 420 --out "$OUT/bench" \
  --sanitize qm_dense_prefill_sm90_v_pack128_attn_bf16_hd128 > "$OUT/bench.log" 2>&1
export PYTHONPATH="$PWD:/tmp/py"
python3 scripts/sm90_trace.py run --registry registry-trace-pack --seqlens-k 1024,2048 --json "$OUT/trace-pack.json" > "$OUT/trace-pack.log" 2>&1
grep -E "^\[|FAIL|rror" "$OUT/bench.log" | grep -v "^\[ok\]" | tail; grep -E "Q wait|Lk=|first S" "$OUT"/trace-*.log
