#!/bin/bash
# Session 14, run 7: run 6 ruled out the dynamic claims (static128 has the same fast and slow states:
# fresh 580, after hopper_check's earlier rows 543-545 TFLOPS at llama3.1-405b B 8 x 2k causal), and
# cuDNN stays at 567-572 on the very tensors ours is slow on. Two more suspects, each the shipped
# program with one thing changed: tma128 stores O through shared memory and a TMA box (two stages)
# instead of from registers; pers_nogroups orders causal tiles one (head, batch) at a time instead of
# in L2 head groups (a smaller set of Q / O pages in flight). Validated first, then clock_probe's
# --sequence twice each, with shipped128 beside them. Predicted: the kernel whose states stay within
# 2% of one another names the cause; if all three show them, the cause is in what every variant
# shares (Q's TMA loads, the K/V ring).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var14 --dtypes bf16 --head-dims 128 --no-bench \
  --out "$OUT/check" > "$OUT/check.log" 2>&1
grep -E "^\[|FAIL" "$OUT/check.log" | head -20
export PYTHONPATH="$PWD:/tmp/py"
for v in shipped128 tma128 pers_nogroups; do
  for i in 1 2; do
    python3 scripts/clock_probe.py "qm_dense_prefill_sm90_v_${v}_attn_bf16_hd128" --kernels registry-var14 \
      --batch 8 --heads 128 --heads-kv 8 --seqlen 2048 --causal --runs 20 --sequence \
      | sed "s/^{/{\"kernel\": \"$v\", \"process\": $i, /"
  done
done > "$OUT/sequence.jsonl"
python3 - "$OUT" <<'PY'
import json, sys
for line in open(f"{sys.argv[1]}/sequence.jsonl"):
    r = json.loads(line)
    if r["label"] != "earlier row":
        print("probe", r["kernel"], r["process"], r["label"], r["tflops"], r["min_max"])
PY
