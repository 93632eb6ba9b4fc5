#!/bin/bash
# Session 17, run 1: the split tail (TL `kernel ... with split=tail`, SPLIT = 1), first look.
# Kernels: .device/v15 (scripts/sm90_variants.py --only shipped128,d64,d256,split128,split64,split256),
# the shipped programs rebuilt with this session's headers beside the split ones.
# 1. validate the six split kernels (bf16, f16; D 64 / 128 / 256): hopper_check's adversarial cases plus
#    SPLIT_CASES, shapes whose last wave splits (the parts each launch chose are in the rows);
#    compute-sanitizer memcheck and racecheck on split128 bf16 (its split case included).
# 2. A/B, D 128 bf16 without a mask, 1k-16k, 5 rounds, ship / split / cuDNN in one process.
# Predicted: every case passes; D 128 split / ship +2-2.5% at 2k-8k (run 10 of session 16 bounds the
# tail at 4.6-5.8%; the parts' own work is 68 / 132 of a tile; the combine costs a little), 1k +1-2%
# (8 KV blocks: a part is 3 blocks + its overhead), 16k +0-1% (the tail is 1/124 of the work there).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
S=.device/v15split
timeout 300 python3 scripts/hopper_check.py --kernels $S --no-bench --budget-s 290 --out "$OUT/check" \
  --sanitize qm_dense_prefill_sm90_v_split128_attn_bf16_hd128 > "$OUT/check.txt" 2>&1
echo "check rc=$?"; tail -5 "$OUT/check.txt"
python3 - "$OUT/check/hopper_check.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for name, v in sorted(d.get("validation", {}).items()):
    bad = [c for c in v.get("cases", []) if not c.get("ok")]
    split = [(c["case"], c.get("parts"), round(c.get("rel_l2", -1), 5)) for c in v.get("cases", []) if c["case"].startswith("split")]
    print(name, f"{v.get('passed')}/{v.get('total')}", "FAILED:", [(c["case"], c.get("rel_l2"), c.get("error")) for c in bad])
    print("   split cases:", split)
for name, v in d.get("sanitize", {}).items():
    print(name, v.get("summary"), v.get("returncode"))
PY
K=.device/v15
timeout 240 python3 scripts/ab_sm90.py --rounds 5 --masks full --lengths 1024,2048,4096,8192,16384 \
  --out "$OUT/ab.jsonl" --kernel ship=$K:qm_dense_prefill_sm90_v_shipped128_attn_bf16_hd128 \
  --kernel split=$K:qm_dense_prefill_sm90_v_split128_attn_bf16_hd128 2>&1 | tee "$OUT/ab-d128.txt" | tail -40
