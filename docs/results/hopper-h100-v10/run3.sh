#!/bin/bash
# Session 12, run 3: the shipped paged set with the late claim (registry-sm90a from build_sm90_kernels at
# a4c52bb: paged_prefill_sm90.tl, bf16 + f16, D 64 / 128 / 256): validation, memcheck and racecheck on
# one kernel per head size, bf16 and f16 timed beside FA3's paged prefill and cuDNN's dense SDPA. Then
# Nsight Compute on D 256 B 2 x 8k without a mask, ours against FA3's paged prefill, where we are
# 0.93x FA3 and neither the tile order (run 1) nor L2 (run 2) is left to blame: its warp states and pipes.
# Predicted: run 1's ratios again within noise (D 256 causal 0.93-0.98x FA3, D 128 0.95-1.03x).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-sm90a --bench-dtypes bf16,f16 --flex none \
  --lengths 2048,8192,16384 --budget-s 420 \
  --sanitize qm_paged_prefill_sm90_attn_bf16_hd128,qm_paged_prefill_sm90_attn_f16_hd64,qm_paged_prefill_sm90_attn_bf16_hd256 \
  --out "$OUT/shipped" > /tmp/shipped.log 2>&1
grep -E "^\[|FAIL|rror|hazard|ERROR SUMMARY|FA3" /tmp/shipped.log | grep -v "\[ok\]" | tail -30
cp /tmp/shipped.log "$OUT/"
# shellcheck disable=SC1091
source scripts/device_env.sh
SECTIONS="--section SpeedOfLight --section ComputeWorkloadAnalysis --section WarpStateStats --section SchedulerStats"
{
  echo "=== ours: D 256 B 2 x 8k H 8 full"
  timeout 120 ncu $SECTIONS -k regex:qm_ -c 1 python3 scripts/profile_sm90.py qm_paged_prefill_sm90_attn_bf16_hd256 \
    --batch 2 --heads 8 --seqlen 8192
  echo "=== FA3 paged: D 256 B 2 x 8k H 8 full"
  timeout 120 ncu $SECTIONS --kernel-name-base demangled -k regex:FlashAttnFwd -c 1 \
    python3 scripts/profile_sm90.py qm_paged_prefill_sm90_attn_bf16_hd256 --batch 2 --heads 8 --seqlen 8192 --fa3
} > "$OUT/ncu-d256.txt" 2>&1
grep -E "^===|Duration|SM Busy|Issue Slots|Stall|Warp Cycles Per Issued|highest-utilized" "$OUT/ncu-d256.txt" | head -40
