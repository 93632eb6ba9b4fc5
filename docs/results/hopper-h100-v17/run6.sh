#!/bin/bash
# Session 19, run 6: split=stream's 16-bit form (.device/stream2: the lowering now stores a part's O normalised, in
# the input dtype, through the tile's one store into its block, and the last part merges the blocks from memory,
# acc no longer live). KV loop 933 instructions, R2UR 16, no spill; 53 schedule lines from the shipped loop.
# 1. validate (bf16, f16; the split / stream shapes), memcheck and racecheck on bf16;
# 2. A/B without a mask, flushed L2 as reported: shipped `_full`, static whole waves, the new stream, run 3's nostore;
# 3. ncu of the shipped `_full` kernel and cuDNN at B 8 x H 16 x 2k and B 2 x 8k, for the 2k row's miss.
# Predicted: stream at nostore's +1.2-1.5% over shipped, less its part stores (264 x 33 KB): +0.5-1%.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
timeout 200 python3 scripts/hopper_check.py --kernels .device/stream2 --no-bench --budget-s 190 --out "$OUT/check" \
  --sanitize qm_dense_prefill_sm90_v_stream128_attn_bf16_hd128 > "$OUT/check.txt" 2>&1
echo "check rc=$?"; grep -E "^\[|done in" "$OUT/check.txt" | tail -8
S=.device/ship18; N=.device/stream2; E=qm_dense_prefill_sm90
timeout 200 python3 scripts/ab_sm90.py --rounds 5 --masks full --lengths 1024,2048,4096,8192 --out "$OUT/ab-bf16.jsonl" \
  --kernel ship=$S:${E}_full_attn_bf16_hd128 --kernel static=$N:${E}_v_static128_full_attn_bf16_hd128 \
  --kernel stream=$N:${E}_v_stream128_attn_bf16_hd128 --kernel nostore=$N:${E}_v_stream128_nostore_attn_bf16_hd128 \
  2>&1 | tee "$OUT/ab-bf16.txt" | grep -E "^dense|rror"
M=gpu__time_duration.sum,dram__bytes_read.sum,lts__t_sector_hit_rate.pct,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_elapsed,sm__throughput.avg.pct_of_peak_sustained_elapsed
for L in 2048 8192; do
  B=$((16384 / L))
  for K in "regex:qm_" "regex:^(?!qm_|.*(elementwise|distribution|fill|copy|reduce)).*"; do
    echo "== L=$L $K" | tee -a "$OUT/ncu.txt"
    timeout 120 ncu --metrics $M -k "$K" -c 1 python3 scripts/profile_sm90.py ${E}_full_attn_bf16_hd128 --kernels $S \
      --batch $B --heads 16 --seqlen $L --cudnn 2>&1 | grep -E "^\s+(gpu__|dram__|lts__|sm__)|\([0-9]+, [0-9]+, [0-9]+\)x" | tee -a "$OUT/ncu.txt"
  done
done
