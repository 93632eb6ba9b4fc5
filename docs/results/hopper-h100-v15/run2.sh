#!/bin/bash
# Session 17, run 2: where run 1's split loses. Run 1 fits a cost of about 6.6 us a part beyond its
# keys (1k -4.3%, 2k -1.1%, 4k +0.5%, 8k +1.1%, 16k +1.8%; the model of run 1's note predicted ~1 KV
# block, 1.6 us at 2k). Diagnostic builds (scripts/sm90_variants.py, QM_SM90_DIAG_SPLIT, timing only):
#   nostore    parts neither store nor combine: what the split's schedule alone gains
#   nocombine  parts store and arrive, none combines: the combine's cost is split - nocombine
#   nofence    the candidate ordering: no __threadfence, the warp barrier and lane 0's acq_rel atomic
# Predicted: nostore / ship +3-4% at 2k-8k (run 10's tail cost less the parts' own keys); if so the
# parts' epilogue (fence, stores, combine) is the 6.6 us. nofence validated in bf16 and f16 first.
# Then the whole-wave shape (H 33: 4224 tiles, no tail, parts 1): split / ship should be 1.00.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
timeout 150 python3 scripts/hopper_check.py --kernels .device/v15nofence --no-bench --budget-s 140 \
  --out "$OUT/check" > "$OUT/check.txt" 2>&1
echo "check rc=$?"; grep -E "^\[|done in" "$OUT/check.txt" | tail -4
K=.device/v15
E=qm_dense_prefill_sm90_v
timeout 240 python3 scripts/ab_sm90.py --rounds 5 --masks full --lengths 1024,2048,4096,8192 \
  --out "$OUT/ab.jsonl" --kernel ship=$K:${E}_shipped128_attn_bf16_hd128 --kernel split=$K:${E}_split128_attn_bf16_hd128 \
  --kernel nofence=$K:${E}_split128_nofence_attn_bf16_hd128 --kernel nocombine=$K:${E}_split128_nocombine_attn_bf16_hd128 \
  --kernel nostore=$K:${E}_split128_nostore_attn_bf16_hd128 2>&1 | tee "$OUT/ab-diag.txt" | grep -E "^family|^dense"
timeout 120 python3 scripts/ab_sm90.py --rounds 5 --masks full --lengths 2048,4096 --heads 33 \
  --out "$OUT/ab-h33.jsonl" --kernel ship=$K:${E}_shipped128_attn_bf16_hd128 \
  --kernel split=$K:${E}_split128_attn_bf16_hd128 2>&1 | tee "$OUT/ab-h33.txt" | grep -E "^family|^dense"
