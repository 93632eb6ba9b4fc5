#!/bin/bash
# Session 16, run 4: run 3 put the staggered kernels' loss in the machinery, not in the stagger or the
# missing turns: d0 (no stagger, no turns) and d0pp (turns) both 0.85 of the shipped kernel at 2k-16k,
# with the KV loop's SASS alike (996 / 938 instructions, 18 / 17 R2UR, the pinned softmax kept). One
# suspect is the producer: one thread with 40 registers whose per-round bookkeeping spills. Its shared
# items now run in a loop of few live values (122 instructions a K/V item). Predicted: if the
# producer was the bottleneck d0 rises to 0.95-1.0 of the shipped kernel; if not, Nsight Compute
# (below, B 1 x 16k and B 8 x 2k without a mask, ours shipped against d0) has to say where the time goes.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
A=.device/ab16
timeout 240 python3 scripts/ab_sm90.py --rounds 3 --masks full --lengths 2048,4096,16384 --out "$OUT/ab.jsonl" \
  --kernel ship=$A/ship:qm_dense_prefill_sm90_attn_bf16_hd128 --kernel st_d0=$A/st-d0:qm_stagger_attn_bf16_hd128 \
  --kernel st_d2=$A/st-d2:qm_stagger_attn_bf16_hd128 --kernel st_d4=$A/st-d4:qm_stagger_attn_bf16_hd128 \
  2>&1 | tee "$OUT/ab-full.txt"
SECTIONS="--section SpeedOfLight --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis"
for shape in "1 16384" "8 2048"; do
  set -- $shape
  for k in "ship qm_dense_prefill_sm90_attn_bf16_hd128" "st-d0 qm_stagger_attn_bf16_hd128"; do
    set -- $shape $k
    echo "=== $3 B $1 x $2 full"
    timeout 120 ncu $SECTIONS -k regex:qm_ -c 1 python3 scripts/profile_sm90.py "$4" --kernels "$A/$3" \
      --batch "$1" --heads 16 --seqlen "$2"
  done
done > "$OUT/ncu.txt" 2>&1
grep -E "^===|Duration|SM Busy|Issue Slots Busy|Warp Cycles Per Issued|L2 Hit Rate|DRAM Throughput|No Eligible|Stall" "$OUT/ncu.txt" | head -60
