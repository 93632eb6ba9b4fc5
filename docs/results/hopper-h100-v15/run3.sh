#!/bin/bash
# Session 17, run 3: how many parts, and what the parts' stores cost. Run 2: the split's schedule alone
# (nostore) gained only +0.5 / +1.2 / +1.3 / +2.3% at 1k / 2k / 4k / 8k, and the parts' fp32 stores
# cost about 1.7% at 2k. Here, bf16 without a mask, 5 rounds, 1k-16k, beside the shipped program:
#   D 128: the split at a fixed k of 2, 3, 5, 7 parts (the same cubin; its metadata fixes the host's
#          choice), and p16 (QM_SM90_SPLIT_PARTIAL16: a part's O normalised in bf16, half the bytes;
#          validated first, bf16 and f16), at the host's rule (k 3 / 3 / 3 / 5 / 7);
#   D 64 and D 256: the split at the host's rule, and at a fixed k.
# Predicted: D 128 k 2 the worst at 2k (136 parts: two rounds of half tiles); the larger k the better
# at 16k (run 1: k 7 +1.8%); p16 about +0.8% over the fp32 split at 2k-8k (half of run 2's 1.7%).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
timeout 120 python3 scripts/hopper_check.py --kernels .device/v15p16 --no-bench --budget-s 110 \
  --out "$OUT/check" > "$OUT/check.txt" 2>&1
echo "check rc=$?"; grep -E "^\[|done in" "$OUT/check.txt" | tail -4
python3 - "$OUT/check/hopper_check.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for name, v in sorted(d.get("validation", {}).items()):
    print(name, f"{v.get('passed')}/{v.get('total')}", [(c["case"], c.get("parts"), round(c.get("rel_l2", -1), 5)) for c in v.get("cases", []) if c["case"].startswith("split")])
PY
K=.device/v15
E=qm_dense_prefill_sm90_v
# the same cubin under a fixed k: a copy of the directory whose index fixes split_tail.parts
fixed() {  # fixed NAME PARTS -> prints the directory
  local d=/tmp/fixed-$1-$2
  mkdir -p $d && cp $K/${E}_$1.cubin $d/
  python3 - $K/index.json $d/index.json ${E}_$1 $2 <<'PY'
import json, sys
idx = json.load(open(sys.argv[1])); name = sys.argv[3]
meta = idx["kernels"][name]; meta["split_tail"]["parts"] = int(sys.argv[4])
idx["kernels"] = {name: meta}; json.dump(idx, open(sys.argv[2], "w"))
PY
  echo $d
}
S=split128_attn_bf16_hd128
timeout 200 python3 scripts/ab_sm90.py --rounds 5 --masks full --lengths 1024,2048,4096,8192,16384 \
  --out "$OUT/ab-d128.jsonl" --kernel ship=$K:${E}_shipped128_attn_bf16_hd128 \
  --kernel k2=$(fixed $S 2):${E}_$S --kernel k3=$(fixed $S 3):${E}_$S --kernel k5=$(fixed $S 5):${E}_$S \
  --kernel k7=$(fixed $S 7):${E}_$S --kernel p16=$K:${E}_split128_p16_attn_bf16_hd128 2>&1 | tee "$OUT/ab-d128.txt" | grep -E "^family|^dense"
timeout 120 python3 scripts/ab_sm90.py --rounds 5 --masks full --lengths 1024,2048,4096,8192,16384 \
  --out "$OUT/ab-d64.jsonl" --kernel ship=$K:${E}_d64_attn_bf16_hd64 --kernel rule=$K:${E}_split64_attn_bf16_hd64 \
  --kernel k2=$(fixed split64_attn_bf16_hd64 2):${E}_split64_attn_bf16_hd64 2>&1 | tee "$OUT/ab-d64.txt" | grep -E "^family|^dense"
timeout 120 python3 scripts/ab_sm90.py --rounds 5 --masks full --lengths 1024,2048,4096,8192,16384 \
  --out "$OUT/ab-d256.jsonl" --kernel ship=$K:${E}_d256_attn_bf16_hd256 --kernel rule=$K:${E}_split256_attn_bf16_hd256 \
  --kernel k3=$(fixed split256_attn_bf16_hd256 3):${E}_split256_attn_bf16_hd256 2>&1 | tee "$OUT/ab-d256.txt" | grep -E "^family|^dense"
