#!/bin/bash
# Session 14, run 19: where does our launch wait? The Timer's loop at the old 1M-cycle spin with the
# launcher's host time taken inside it (GPU busy while the host enqueues), fresh and after the earlier
# rows, torch counter and driver counter. Predicted: after the earlier rows the launch's host time in
# the busy loop exceeds the spin (~500 us) where it is ~50-150 us with the GPU idle (run 15), and the
# GPU span grows by what the host time passes the spin.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var14 --dtypes bf16 --head-dims 128 --no-bench --no-validate \
  --out "$OUT/env" > "$OUT/env.log" 2>&1  # the wheels into /tmp/py
export PYTHONPATH="$PWD:/tmp/py"
probe() {
  python3 scripts/clock_probe.py qm_dense_prefill_sm90_v_shipped128_attn_bf16_hd128 --kernels registry-var14 \
    --batch 8 --heads 128 --heads-kv 8 --seqlen 2048 --causal --runs 20 --sequence --spin 1000000 "$@"
}
for i in 1 2; do
  probe | sed "s/^{/{\"how\": \"torch counter\", \"process\": $i, /"
  probe --driver-counter | sed "s/^{/{\"how\": \"driver counter\", \"process\": $i, /"
done > "$OUT/sequence.jsonl"
python3 - "$OUT" <<'PY'
import json, sys
for line in open(f"{sys.argv[1]}/sequence.jsonl"):
    r = json.loads(line)
    if r["label"] != "earlier row":
        print(r["how"], r["process"], r["label"], "loop", r["tflops"], "idle host", r["host_us"]["launch"], "busy", r["busy"])
PY
