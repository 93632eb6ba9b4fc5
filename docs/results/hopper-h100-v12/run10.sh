#!/bin/bash
# Session 14, run 10: run 9's read flush kept the slow state. Does any eviction between launches keep
# it? Each target launch of clock_probe's --sequence is now also timed back to back with no flush at
# all (Q, O, K / V and their translations stay as warm as 50 MB of L2 allows). Predicted: if the slow
# state comes from what a flush evicts (cache lines or address translations of Q and O), no-flush
# times the fast and the slow state alike; if no-flush keeps the gap, the state is in the launch
# itself.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var14 --dtypes bf16 --head-dims 128 --no-bench --no-validate \
  --out "$OUT/env" > "$OUT/env.log" 2>&1  # the wheels into /tmp/py
export PYTHONPATH="$PWD:/tmp/py"
for i in 1 2 3; do
  python3 scripts/clock_probe.py qm_dense_prefill_sm90_v_shipped128_attn_bf16_hd128 --kernels registry-var14 \
    --batch 8 --heads 128 --heads-kv 8 --seqlen 2048 --causal --runs 20 --sequence | sed "s/^{/{\"process\": $i, /"
done > "$OUT/sequence.jsonl"
python3 - "$OUT" <<'PY'
import json, sys
for line in open(f"{sys.argv[1]}/sequence.jsonl"):
    r = json.loads(line)
    if r["label"] != "earlier row":
        print(r["process"], r["label"], "write flush", r["tflops"], r["min_max"], "read flush",
              r["read_flush"]["tflops"], "no flush", r["no_flush"]["tflops"])
PY
