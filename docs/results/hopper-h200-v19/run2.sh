#!/bin/bash
# Session 21, run 2 (H200): rescale=lazy as the TL switch (consumer `rescale=RESCALE`, Traits' LAZY_RESCALE) in the
# shipped dense program at D 128 and 256 (.device/ship21: build_sm90_kernels of dense_prefill_sm90.tl, what
# `qimeng-serve build --arch sm_90` compiles), and the paged program with it (.device/var21 plazy*: not shipped yet).
# Predicted: every kernel validates (the "ramp" cases included), memcheck / racecheck clean on dense D 256 and paged
# D 128 lazy (dense D 128 `_full` and D 256 are not timed again: their KV loops have run 1's slack builds' schedules,
# checked offline with scripts/sass_kv_loop.py); 
# paged lazy / eager like dense: D 128 +0.5-1.5%, D 256 +3-6%, D 64 level.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
mkdir -p /tmp/val && cp .device/ship21/*.cubin /tmp/val/ && cp .device/var21/*plazy*.cubin /tmp/val/
python3 - <<'PY'
import json
a = json.load(open(".device/ship21/index.json")); b = json.load(open(".device/var21/index.json"))
a["kernels"].update({k: v for k, v in b["kernels"].items() if "plazy" in k})
json.dump(a, open("/tmp/val/index.json", "w"))
PY
timeout 330 python3 scripts/hopper_check.py --kernels /tmp/val --no-bench --budget-s 310 --out "$OUT/check" \
  --sanitize qm_dense_prefill_sm90_attn_bf16_hd256,qm_paged_prefill_sm90_v_plazy128_attn_bf16_hd128 > "$OUT/check.txt" 2>&1
echo "check rc=$?"; grep -E "^\[|done in" "$OUT/check.txt" | tail -24
V=.device/var21; P=qm_paged_prefill_sm90_v
ab() {  # tag, rounds, masks, lengths, kernels...
  local tag=$1 rounds=$2 masks=$3 lengths=$4; shift 4
  timeout 150 python3 scripts/ab_sm90.py --rounds "$rounds" --masks "$masks" --lengths "$lengths" --out "$OUT/ab-$tag.jsonl" \
    "$@" 2>&1 | tee "$OUT/ab-$tag.txt" | grep -E "^(dense|paged)|rror"
}
ab p128 3 full,causal 2048,8192 --kernel eager=$V:${P}_pg128_attn_bf16_hd128 --kernel lazy=$V:${P}_plazy128_attn_bf16_hd128
ab p256 3 full,causal 2048,8192 --kernel eager=$V:${P}_pg256_attn_bf16_hd256 --kernel lazy=$V:${P}_plazy256_attn_bf16_hd256
ab p64 3 full,causal 2048,8192 --kernel eager=$V:${P}_pg64_attn_bf16_hd64 --kernel lazy=$V:${P}_plazy64_attn_bf16_hd64
cd "$OUT" && tar czf ab.tgz ab-* && rm -f ab-*.jsonl ab-*.txt
