#!/bin/bash
# Session 20, run 8: where run 7's alt_dep_nomask (cuDNN's loop shape, softmax inside its turn, uniform descriptors)
# loses its 5% in the KV step: ncu's per-instruction samples as run 1, bf16 B 8 x H 16 x 2k without a mask.
# Predicted: its loop's samples per step above cuDNN's 2413 and ours 2441 by ~5%, on the turn's BAR.SYNC (the
# warpgroups waiting on each other's softmax) rather than on the GEMM waits.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
timeout 240 ncu --section SourceCounters --section WarpStateStats -k regex:qm_ -c 1 --page source --csv --print-source sass \
  python3 scripts/profile_sm90.py qm_alt_dep_nomask_attn_bf16_hd128 --kernels .device/alt --batch 8 --heads 16 --seqlen 2048 \
  > "$OUT/sass-dep-nomask.csv" 2> "$OUT/sass-dep-nomask.err"
echo "rc=$? $(wc -c < "$OUT/sass-dep-nomask.csv") bytes"; tail -3 "$OUT/sass-dep-nomask.err"
xz -9 "$OUT"/sass-*.csv
