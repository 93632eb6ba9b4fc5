#!/bin/bash
# Session 17, run 5: run 4 again with the idle path rebuilt (v15j). Run 4 measured D 64 +1.7% at 1k without a mask and -3 to -6% everywhere else, D 128 -1 to -4%: the `idle` flag lived through the KV loop (D 64 loop 874 instructions against 862). Now an idle warpgroup ends its tile in its own branch (`continue`), so nothing of it crosses the KV loop: loops 864 / 938 / 793 (shipped 862 / 938 / 793), schedules differing in 29-69 lines. A consumer warpgroup whose 64 rows all lie
# outside its tile's sequence issues no GEMM or softmax; the producer arrives for it on each K/V slot
# (pipeline.cuh idle_kv_tiles / arrive_idle). D 64's 192-row tile at L 1k: the last of a sequence's
# six tiles holds 64 rows, so two of its three warpgroups idle there.
# .device/v15j: shipped128, d64, d256 rebuilt with it; .device/v15: the same programs without it.
# 1. validate the six new kernels (bf16, f16), memcheck and racecheck on D 64 bf16;
# 2. A/B new / old, bf16, both masks, 1k-16k, 5 rounds: D 64, then D 128 and D 256 (no padding at the
#    sweep's lengths: their KV loops moved by 4 instructions, so level is the prediction); f16 D 64.
# Predicted: D 64 without a mask +2% at 1k (run 4 had +1.7% with the slower loop), level elsewhere (+-1%);
# D 128 and D 256 level.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
timeout 300 python3 scripts/hopper_check.py --kernels .device/v15j --no-bench --budget-s 290 --out "$OUT/check" \
  --sanitize qm_dense_prefill_sm90_v_d64_attn_bf16_hd64 > "$OUT/check.txt" 2>&1
echo "check rc=$?"; grep -E "^\[|done in" "$OUT/check.txt" | tail -12
O=.device/v15; N=.device/v15j; E=qm_dense_prefill_sm90_v
for k in d64_attn_bf16_hd64 shipped128_attn_bf16_hd128 d256_attn_bf16_hd256 d64_attn_f16_hd64; do
  timeout 100 python3 scripts/ab_sm90.py --rounds 5 --masks full,causal --lengths 1024,2048,4096,8192,16384 \
    --out "$OUT/ab-$k.jsonl" --kernel old=$O:${E}_$k --kernel new=$N:${E}_$k 2>&1 | tee "$OUT/ab-$k.txt" | grep -E "^dense"
done
