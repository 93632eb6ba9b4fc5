#!/bin/bash
# Session 14, run 14: run 13's ncu (application replay, the loop's own caches) timed a slow-state
# launch's kernel at 1.91 ms, the fresh one at 1.90: the kernel itself is not slower. The Timer
# measures from an event before the launcher runs to one after: the tile counter's zeroing kernel and
# any wait for the host's enqueue are inside. The host's enqueue hides behind a 1M-cycle GPU spin
# (~0.5 ms). If after the earlier rows the launcher's host work (ctypes arguments, the counter's
# allocation, the grid formula) takes longer than that, the GPU idles inside the timed span.
# Predicted: with a 4M-cycle spin (~2 ms) the slow state is gone; with 1M it is there.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var14 --dtypes bf16 --head-dims 128 --no-bench --no-validate \
  --out "$OUT/env" > "$OUT/env.log" 2>&1  # the wheels into /tmp/py
export PYTHONPATH="$PWD:/tmp/py"
probe() {
  python3 scripts/clock_probe.py qm_dense_prefill_sm90_v_shipped128_attn_bf16_hd128 --kernels registry-var14 \
    --batch 8 --heads 128 --heads-kv 8 --seqlen 2048 --causal --runs 20 --sequence "$@"
}
for i in 1 2 3; do
  probe | sed "s/^{/{\"how\": \"spin 1M\", \"process\": $i, /"
  probe --spin 4000000 | sed "s/^{/{\"how\": \"spin 4M\", \"process\": $i, /"
done > "$OUT/sequence.jsonl"
python3 - "$OUT" <<'PY'
import json, sys
for line in open(f"{sys.argv[1]}/sequence.jsonl"):
    r = json.loads(line)
    if r["label"] != "earlier row":
        print(r["how"], r["process"], r["label"], "write flush", r["tflops"], r["min_max"])
PY
