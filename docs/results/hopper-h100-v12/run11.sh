#!/bin/bash
# Session 14, run 11: the slow state follows the allocator's history (runs 5-10). Two changes to that
# history, three processes each, against the plain --sequence: --keep-cache (freed blocks stay in
# torch's caching allocator, so the target's tensors reuse the same mappings, no new cudaMalloc), and
# PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True (memory mapped in segments that grow). Predicted:
# if the state comes from fresh device mappings after empty_cache (address translation), keep-cache
# keeps the fast state after the earlier rows; if not, the state is not the mapping.
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
  probe --keep-cache | sed "s/^{/{\"how\": \"keep-cache\", \"process\": $i, /"
  PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True probe | sed "s/^{/{\"how\": \"expandable\", \"process\": $i, /"
done > "$OUT/sequence.jsonl"
python3 - "$OUT" <<'PY'
import json, sys
for line in open(f"{sys.argv[1]}/sequence.jsonl"):
    r = json.loads(line)
    if r["label"] != "earlier row":
        print(r["how"], r["process"], r["label"], "write flush", r["tflops"], r["min_max"], "q", r["q_addr"])
PY
