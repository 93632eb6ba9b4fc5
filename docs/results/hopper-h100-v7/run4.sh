#!/bin/bash
# Session 9, run 4: the TMA store of O against the register store, same run, bf16 and f16.
# Predicted (run 2's nostore figures are the ceiling: +5% / +10% at 1k full / causal, +5% at 2k
# causal, +4-7% on the GQA rows at B 8 x 2k, about 0 at 16k; the stores' stmatrix, fence and two
# warpgroup barriers keep part of it): D 128 +3% at 1k full, +6% at 1k causal, +3% at 2k, +3-5% on
# the GQA rows at B 8 x 2k, +-1% at L >= 8k (two stages timed the same as three in session 7);
# D 64 +-2% (nostore moved it by -2 to +3.5%).
# registry-var9/ from: scripts/sm90_variants.py --out registry-var9 --only stg128,stg64 --baseline \
#   qm_dense_prefill_sm90_attn_bf16_hd128,qm_dense_prefill_sm90_attn_f16_hd128,\
#   qm_dense_prefill_sm90_attn_bf16_hd64,qm_dense_prefill_sm90_attn_f16_hd64
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var9 --no-validate --bench-dtypes bf16,f16 --dtypes bf16,f16 \
  --head-dims 64,128 --flex none --budget-s 560 --out "$OUT/tma-store" > /tmp/bench.log 2>&1
grep -E "^\[|FAIL|rror" /tmp/bench.log | grep -v "\[ok\]" | tail -20
