#!/bin/bash
# Session 20, run 3: per-instruction samples (as run 1) for the shipped carry kernel (one KV loop across the tiles,
# the causal D 128 kernel) timed without a mask, and for FA3's kernel, bf16 B 8 x H 16 x 2k without a mask.
# Run 1 put our extra boundary cost in the peeled first step and last O += P V (~950 samples a tile); the carry
# loop has no peel, yet timed level with `_full` without a mask (sixteenth run). Predicted: carry's tile-level
# samples fall by about the peel's excess and its loop's rise by as much.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
S=.device/ship18
for who in "carry regex:qm_ qm_dense_prefill_sm90_attn_bf16_hd128" "fa3 regex:device_kernel qm_dense_prefill_sm90_full_attn_bf16_hd128"; do
  set -- $who
  timeout 240 ncu --section SourceCounters --section WarpStateStats --section SpeedOfLight --section LaunchStats \
    -k "$2" -c 1 --page source --csv --print-source sass \
    python3 scripts/profile_sm90.py $3 --kernels $S --batch 8 --heads 16 --seqlen 2048 $([ $1 = fa3 ] && echo --fa3) \
    > "$OUT/sass-$1.csv" 2> "$OUT/sass-$1.err"
  echo "$1 rc=$? $(wc -c < "$OUT/sass-$1.csv") bytes"; tail -3 "$OUT/sass-$1.err"
  timeout 120 ncu --section SpeedOfLight --section LaunchStats -k "$2" -c 1 \
    python3 scripts/profile_sm90.py $3 --kernels $S --batch 8 --heads 16 --seqlen 2048 $([ $1 = fa3 ] && echo --fa3) \
    > "$OUT/details-$1.txt" 2>&1
  grep -E "Duration|Block Size|Grid Size|Registers Per|Shared Memory Config|device_kernel|qm_" "$OUT/details-$1.txt" | head -12
done
xz -9 "$OUT"/sass-*.csv
