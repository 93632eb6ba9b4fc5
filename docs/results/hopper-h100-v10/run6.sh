#!/bin/bash
# Session 12, run 6: which instructions of the shipped D 256 paged prefill stall on barriers (run 5: all
# warps' "barrier" stalls 1.67 per issue against FA3's 0.29, at D 128 0.88 against 0.62). ncu's warp stall
# sampling per SASS instruction (--page source --print-source sass), D 256 bf16 B 2 x 8k H 8 without a
# mask, registry-sm90a at a4c52bb. Predicted: the producer warps' waits (their named barrier per tile and
# the empty-slot waits of the 2-stage ring) hold most of the barrier samples, the consumers' few.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
# shellcheck disable=SC1091
source scripts/device_env.sh
timeout 300 ncu --section SourceCounters --section WarpStateStats -k regex:qm_ -c 1 --page source --csv \
  --print-source sass python3 scripts/profile_sm90.py qm_paged_prefill_sm90_attn_bf16_hd256 \
  --batch 2 --heads 8 --seqlen 8192 > "$OUT/ncu-d256-sass.csv" 2> "$OUT/ncu-d256-sass.err"
ls -la "$OUT"; head -c 3000 "$OUT/ncu-d256-sass.csv"; tail -5 "$OUT/ncu-d256-sass.err"
