#!/bin/bash
# Session 20, run 1: where the D 128 full 2k row's time goes, per SASS instruction, in our shipped `_full` kernel,
# cuDNN's and FA3's (ncu's source page: executions and warp stall samples per instruction), bf16 B 8 x H 16 x 2k
# without a mask. The seventeenth run put the miss at the tile boundary (tensor pipe 68.6% active against cuDNN's
# 71.1%, equal DRAM reads); this shows what each kernel runs there. Predicted: cuDNN's epilogue goes through shared
# memory and a bulk store (STSM + UTMASTG), ours through 16-byte STG, and cuDNN runs fewer instructions a KV step.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
S=.device/ship18; K=qm_dense_prefill_sm90_full_attn_bf16_hd128
for who in "ours regex:qm_" "cudnn regex:cudnn" "fa3 regex:(?i)flash"; do
  set -- $who
  timeout 240 ncu --section SourceCounters --section WarpStateStats --section SpeedOfLight --section LaunchStats \
    -k "$2" -c 1 --page source --csv --print-source sass \
    python3 scripts/profile_sm90.py $K --kernels $S --batch 8 --heads 16 --seqlen 2048 --cudnn --fa3 \
    > "$OUT/sass-$1.csv" 2> "$OUT/sass-$1.err"
  echo "$1 rc=$? $(wc -c < "$OUT/sass-$1.csv") bytes"; tail -3 "$OUT/sass-$1.err"
  timeout 120 ncu --section SpeedOfLight --section LaunchStats --section WarpStateStats -k "$2" -c 1 \
    python3 scripts/profile_sm90.py $K --kernels $S --batch 8 --heads 16 --seqlen 2048 --cudnn --fa3 \
    > "$OUT/details-$1.txt" 2>&1
  grep -E "Duration|Block Size|Grid Size|Registers|Shared Memory Config|Function Name|Stall|CPI|^  [a-z_]+\(|flash|cudnn|qm_" "$OUT/details-$1.txt" | head -30
done
xz -9 "$OUT"/sass-*.csv
ls -la "$OUT"
