#!/bin/bash
# Session 14, run 9: run 8's Nsight Compute replays of the fast and the slow state were alike (1.89 ms,
# 604 MB read, 521 MB written, 87% L2 hits, the same instructions): the slow state is not in the
# kernel's work or its memory's placement, since ncu replays the same memory, but in the timed loop.
# One difference: ncu starts each pass on an invalidated L2, the Timer on one full of dirty lines
# (its flush writes 256 MB). clock_probe's --sequence now also times each target launch after a flush
# that reads 256 MB (clean lines, nothing to write back). Predicted: with the read flush the slow
# state's launches come back to the fast state's 1.88-1.89 ms; if not, the write-back is not it.
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
        print(r["process"], r["label"], "write flush", r["tflops"], r["min_max"], "read flush", r["read_flush"]["tflops"])
PY
