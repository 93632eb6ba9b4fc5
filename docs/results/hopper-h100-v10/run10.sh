#!/bin/bash
# Session 12, run 10: FA3's paged D 256 kernel under run 6's per-instruction sampling (B 2 x 8k H 8
# without a mask, bf16), to split its executed instructions between the producer (after its
# setmaxnreg.dealloc) and the consumers as run 6 split ours (consumers 66%, producer 34% of 723 M).
# Predicted: FA3's consumers execute about as many instructions as ours (same tile, same loop at
# 232 registers: run 9) and its producer (cp.async gather, 40 registers) fewer, which is where our
# extra ~100 M instructions (run 5: 576 M against 478 M) would be.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
# shellcheck disable=SC1091
source scripts/device_env.sh
timeout 200 ncu --section SourceCounters --section WarpStateStats --kernel-name-base demangled -k regex:FlashAttnFwd \
  -c 1 --page source --csv --print-source sass python3 scripts/profile_sm90.py qm_paged_prefill_sm90_attn_bf16_hd256 \
  --batch 2 --heads 8 --seqlen 8192 --fa3 > "$OUT/ncu-fa3-d256-sass.csv" 2> "$OUT/ncu-fa3-d256-sass.err"
ls -la "$OUT"; tail -3 "$OUT/ncu-fa3-d256-sass.err"
