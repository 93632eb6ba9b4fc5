#!/bin/bash
# Session 14, run 12: does the slow state need our kernel to have run on the earlier shapes, or only
# their tensors to have been allocated and written? --allocate-only makes the earlier rows allocate,
# fill (randn, O zeroed) and free their tensors without launching anything else. Three processes
# each, beside the plain sequence. Predicted: if allocations alone bring the slow state, it is a
# memory-side state of the device; if only the kernel runs do, it is state our launches leave behind.
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
  probe | sed "s/^{/{\"how\": \"plain\", \"process\": $i, /"
  probe --allocate-only | sed "s/^{/{\"how\": \"allocate-only\", \"process\": $i, /"
done > "$OUT/sequence.jsonl"
python3 - "$OUT" <<'PY'
import json, sys
for line in open(f"{sys.argv[1]}/sequence.jsonl"):
    r = json.loads(line)
    if r["label"] != "earlier row":
        print(r["how"], r["process"], r["label"], "write flush", r["tflops"], r["min_max"])
PY
