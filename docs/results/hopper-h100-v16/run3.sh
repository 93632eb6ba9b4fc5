#!/bin/bash
# Session 18, run 3: carry=pv lowered as one KV loop across the tiles (qimeng_serve/lower/sm90_carry.py) and
# shipped at D 128 under a causal mask (dense_prefill_sm90.tl `params when D = 128 and CAUSAL = 1`; the `_full`
# kernel keeps CARRY = 0 and its SASS is the shipped kernel's). .device/ship18: build_sm90_kernels of both
# programs; every other kernel's SASS is byte-identical to session 17's. .device/carry18: its two carry
# kernels; .device/dense128: the four dense D 128 kernels.
# 1. validate the carry kernels (48 cases each, bf16 / f16), memcheck and racecheck on bf16;
# 2. A/B against session 17's kernel (.device/ship17), causal, bf16 sweep 1k-8k and the seed's GQA rows, f16 1k-4k;
# 3. the bar table's D 128 rows with every anchor (cuDNN, FA3 from the vLLM payload, FA2, FlexAttention).
# Predicted (runs 1-2, the hand-written experiment with the same steady step): causal +1.3-2.3% at 1k-4k,
# GQA B 8 x 2k +1.5-3.5%; D 128 causal 1k 0.95 -> 0.97 of cuDNN; the rows without a mask as session 17's.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
timeout 150 python3 scripts/hopper_check.py --kernels .device/carry18 --no-bench --budget-s 140 --out "$OUT/check" \
  --sanitize qm_dense_prefill_sm90_attn_bf16_hd128 > "$OUT/check.txt" 2>&1
echo "check rc=$?"; grep -E "^\[|done in" "$OUT/check.txt" | tail -8
S=.device/ship17; N=.device/carry18; E=qm_dense_prefill_sm90_attn
timeout 150 python3 scripts/ab_sm90.py --rounds 5 --masks causal --lengths 1024,2048,4096,8192 --out "$OUT/ab-bf16.jsonl" \
  --kernel ship=$S:${E}_bf16_hd128 --kernel carry=$N:${E}_bf16_hd128 2>&1 | tee "$OUT/ab-bf16.txt" | grep -E "^dense|rror"
timeout 120 python3 scripts/ab_sm90.py --rounds 5 --masks causal --out "$OUT/ab-gqa-bf16.jsonl" \
  --gqa 8,32,32,2048 --gqa 8,64,8,2048 --gqa 8,128,8,2048 --gqa 2,128,8,8192 \
  --kernel ship=$S:${E}_bf16_hd128 --kernel carry=$N:${E}_bf16_hd128 2>&1 | tee "$OUT/ab-gqa-bf16.txt" | grep -E "^dense|rror"
timeout 80 python3 scripts/ab_sm90.py --rounds 3 --masks causal --lengths 1024,2048,4096 --out "$OUT/ab-f16.jsonl" \
  --kernel ship=$S:${E}_f16_hd128 --kernel carry=$N:${E}_f16_hd128 2>&1 | tee "$OUT/ab-f16.txt" | grep -E "^dense|rror"
python3 - <<'PY'  # hopper_check's bench reads registry-sm90a/: point it at the dense D 128 kernels
import os; os.path.lexists("registry-sm90a") or os.symlink(".device/dense128", "registry-sm90a")
PY
timeout 330 python3 scripts/hopper_check.py --kernels registry-sm90a --no-validate --head-dims 128 --bench-dtypes bf16,f16 \
  --lengths 1024,2048,4096,8192,16384 --flex none --budget-s 320 --out "$OUT/bench" > "$OUT/bench.log" 2>&1
echo "bench rc=$?"; grep -E "^\[" "$OUT/bench.log" | grep -v "\[ok\]"; grep -cE "^\[ok\]" "$OUT/bench.log"
