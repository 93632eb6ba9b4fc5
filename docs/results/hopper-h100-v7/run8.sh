#!/bin/bash
# Session 9, run 8: runs 4 / 6 (timed with L2 evicted before each run: the TMA store of O slower) and
# run 5 (traces, no eviction: faster) disagree. The same A/B without the eviction (--no-l2-flush:
# warm, back-to-back runs), bf16, D 64 and 128. If the TMA store now wins, its loss is in how the
# bulk stores meet a dirty L2 (the eviction writes 256 MB just before each timed run).
# registry-var9/: the TMA-store kernels under the shipped names (built with STORE_TMA = 1, as in
# run 4) and stg64 / stg128 (the register store, today's shipped params).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var9 --no-validate --bench-dtypes bf16 --dtypes bf16 \
  --head-dims 64,128 --flex none --lengths 1024,2048,4096 --no-l2-flush --budget-s 250 \
  --out "$OUT/warm" > /tmp/warm.log 2>&1
grep -E "^\[|FAIL|rror" /tmp/warm.log | grep -v "\[ok\]" | tail -20
