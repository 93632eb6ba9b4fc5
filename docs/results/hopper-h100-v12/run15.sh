#!/bin/bash
# Session 14, run 15: run 14 found the 405b "slow state": with a 4M-cycle spin before each timed run
# (instead of the Timer's 1M, ~0.5 ms) ours times 576-579 TFLOPS after the earlier rows, as fresh
# (579-580); with 1M, 529-537. So the GPU idled inside the timed span, waiting for our launcher's
# host work. Here the launcher's host time is measured with the GPU idle: the whole launch (run())
# and its tile counter (torch.zeros(1) on the stream), fresh and after the earlier rows. Predicted:
# the launch takes well under 0.5 ms fresh and more than that after the earlier rows, and the counter
# (the caching allocator) is where the difference is.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var14 --dtypes bf16 --head-dims 128 --no-bench --no-validate \
  --out "$OUT/env" > "$OUT/env.log" 2>&1  # the wheels into /tmp/py
export PYTHONPATH="$PWD:/tmp/py"
for i in 1 2; do
  python3 scripts/clock_probe.py qm_dense_prefill_sm90_v_shipped128_attn_bf16_hd128 --kernels registry-var14 \
    --batch 8 --heads 128 --heads-kv 8 --seqlen 2048 --causal --runs 20 --sequence | sed "s/^{/{\"process\": $i, /"
done > "$OUT/sequence.jsonl"
python3 - "$OUT" <<'PY'
import json, sys
for line in open(f"{sys.argv[1]}/sequence.jsonl"):
    r = json.loads(line)
    if r["label"] != "earlier row":
        print(r["process"], r["label"], "write flush", r["tflops"], r["min_max"], "host us", r["host_us"])
PY
