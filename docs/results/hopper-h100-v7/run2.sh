#!/bin/bash
# Session 9, run 2: run 1's part A again, measured right. In run 1 ptxas had dropped the nostore
# variants' O += P V GEMMs (their result was never used: an empty asm "use" is gone by the time ptxas
# sees the code), so those kernels did no PV work. Now O and the row sums feed a store that never
# runs; the KV loops are the shipped ones within one instruction (935 / 934 at D 128, 694 / 691 at
# D 64, 16 and 10 HGMMA). Prediction as in run 1: +3-4% at 2k, +6-8% at 1k, +1% at 16k.
# registry-var7/ from: scripts/sm90_variants.py --out registry-var7 --only nostore128,nostore64 \
#   --baseline qm_dense_prefill_sm90_attn_bf16_hd128,qm_dense_prefill_sm90_attn_bf16_hd64
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var7 --no-validate --bench-dtypes bf16 --dtypes bf16 --flex none \
  --lengths 1024,2048,4096,16384 --budget-s 300 --out "$OUT/nostore" > /tmp/nostore.log 2>&1
grep -E "^\[|FAIL|rror" /tmp/nostore.log | grep -v "\[ok\]" | tail -20
