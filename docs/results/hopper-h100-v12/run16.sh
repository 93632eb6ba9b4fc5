#!/bin/bash
# Session 14, run 16: the benchmark's Timer now spins 4M cycles (~2 ms) before each timed run instead of
# 1M (runs 13-15: at 1M the GPU idled inside our timed span waiting for our launcher's enqueue). The
# shipped dense D 128 kernel's 2k and GQA rows through hopper_check, twice, every anchor under the
# same Timer. Predicted: llama3.1-405b B 8 x 2k causal 575-585 TFLOPS against cuDNN's 565-575
# (1.00-1.03x); every other row within 2% of run 4's figures (cuDNN's too).
# Ran at commit 2fcf317, whose Timer spun 4M cycles; the Timer went back to 1M after run 19, so
# repeating this run at HEAD times with 1M (run 20 is run 17 at 1M).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
for i in 1 2; do
  bash scripts/hopper_device.sh --kernels registry-var14gqa --no-validate --dtypes bf16 --bench-dtypes bf16 \
    --flex none --lengths 2048 --budget-s 150 --out "/tmp/gqa$i" > "$OUT/gqa$i.log" 2>&1
  cp "/tmp/gqa$i/hopper_check.json" "$OUT/gqa$i.json"
done
python3 - "$OUT" <<'PY'
import json, sys
for i in (1, 2):
    for r in json.load(open(f"{sys.argv[1]}/gqa{i}.json"))["bench"]:
        print(i, r["tag"], r["batch"], r["heads"], r.get("heads_kv"), r["seqlen"], r["causal"],
              "ours %.0f cudnn %.0f ratio %.3f" % (r["ours"] or 0, r["cudnn"] or 0, (r["ours"] or 0) / (r["cudnn"] or 1)),
              r.get("ours_ms_min_max"))
PY
