#!/bin/bash
# Session 14, run 18: which part of our launcher waits on the busy GPU after the earlier rows (runs
# 14-15: at the Timer's old 1M-cycle spin the GPU idled in the span; with the GPU idle the launch
# takes 52-96 us)? --driver-counter launches the same kernel with the tile counter preallocated once
# and zeroed by cuMemsetD32Async (no torch allocation, no stream context per launch). Both at the old
# 1M spin, three processes. Predicted: if the counter's torch allocation is what waits, the slow state
# is gone with --driver-counter at 1M; if it stays, the wait is in cuLaunchKernel's path.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var14 --dtypes bf16 --head-dims 128 --no-bench --no-validate \
  --out "$OUT/env" > "$OUT/env.log" 2>&1  # the wheels into /tmp/py
export PYTHONPATH="$PWD:/tmp/py"
probe() {
  python3 scripts/clock_probe.py qm_dense_prefill_sm90_v_shipped128_attn_bf16_hd128 --kernels registry-var14 \
    --batch 8 --heads 128 --heads-kv 8 --seqlen 2048 --causal --runs 20 --sequence --spin 1000000 "$@"
}
for i in 1 2 3; do
  probe | sed "s/^{/{\"how\": \"torch counter\", \"process\": $i, /"
  probe --driver-counter | sed "s/^{/{\"how\": \"driver counter\", \"process\": $i, /"
done > "$OUT/sequence.jsonl"
python3 - "$OUT" <<'PY'
import json, sys
for line in open(f"{sys.argv[1]}/sequence.jsonl"):
    r = json.loads(line)
    if r["label"] != "earlier row":
        print(r["how"], r["process"], r["label"], "write flush", r["tflops"], r["min_max"], r["host_us"])
PY
