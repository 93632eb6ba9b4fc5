#!/bin/bash
# Session 16, run 11: why the last wave costs more than its tiles at 4k (run 10: four leftover tiles,
# 5.5% of the kernel, about 1.8 tile times). The shipped D 128 program with trace marks
# (`scripts/sm90_trace.py build --out .device/ab16/trace128`), one traced launch after three: per CTA,
# when it stored its last O, and the busy share of CTAs x span. Predicted: at 4k (4096 tiles, 31.03
# waves) the CTAs' last stores spread by more than one tile time (~30 us at 4k) from the earliest to
# the median, i.e. the CTAs do not end their whole waves together; at 2k the same in proportion.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
T=.device/ab16/trace128
timeout 120 python3 scripts/sm90_trace.py run --registry $T --batch 4 --heads 16 --seqlen-q 4096 --seqlens-k 4096 \
  --json "$OUT/trace-4k.json" 2>&1 | tee "$OUT/trace.txt"
timeout 120 python3 scripts/sm90_trace.py run --registry $T --batch 8 --heads 16 --seqlen-q 2048 --seqlens-k 2048 \
  --json "$OUT/trace-2k.json" 2>&1 | tee -a "$OUT/trace.txt"
