#!/bin/bash
# Session 14, run 6: is our per-launch spread at llama3.1-405b B 8 x 2k causal (fast state 1.88-1.89
# ms, slow 1.96-2.09 ms; runs 4-5) the dynamic tile claims? static128 takes every gridDim.x-th tile
# per CTA (QM_SM90_STATIC_TILES=1, no counter); shipped128 is the shipped program rebuilt (its SASS is
# the shipped kernel's, checked offline). Both validated, then hopper_check's 2k and GQA rows, then
# clock_probe's --sequence twice per kernel. Predicted: if the claims cause it, static128's launches
# stay within 1-2% of one another in both processes and hopper_check; if not, static128 shows the
# same two states (the placement of Q and O being the remaining candidate).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var14 --dtypes bf16 --bench-dtypes bf16 --head-dims 128 \
  --flex none --lengths 2048 --budget-s 300 --out "$OUT/check" > "$OUT/check.log" 2>&1
grep -E "^\[|FAIL" "$OUT/check.log" | head -20
export PYTHONPATH="$PWD:/tmp/py"
for k in qm_dense_prefill_sm90_v_shipped128_attn_bf16_hd128 qm_dense_prefill_sm90_v_static128_attn_bf16_hd128; do
  for i in 1 2; do
    python3 scripts/clock_probe.py "$k" --kernels registry-var14 --batch 8 --heads 128 --heads-kv 8 --seqlen 2048 \
      --causal --runs 20 --sequence | sed "s/^{/{\"kernel\": \"${k:24:10}\", \"process\": $i, /"
  done
done > "$OUT/sequence.jsonl"
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
for r in json.load(open(f"{out}/check/hopper_check.json"))["bench"]:
    print("hopper_check", r["kernel"][24:36], r["tag"], r["batch"], r["heads"], r.get("heads_kv"), r["seqlen"],
          r["causal"], "ours %.0f cudnn %.0f" % (r["ours"] or 0, r["cudnn"] or 0), r.get("ours_ms_min_max"))
for line in open(f"{out}/sequence.jsonl"):
    r = json.loads(line)
    if r["label"] != "earlier row":
        print("probe", r["kernel"], r["process"], r["label"], r["tflops"], r["min_max"])
PY
