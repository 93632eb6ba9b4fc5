#!/bin/bash
# Session 11, run 6 (prepared, not run: no device time was left): Nsight Compute on the shipped paged
# prefill against FA3's paged prefill on the same cache and block table, to find what the gather binds on.
# Run 4 showed the consumers' schedule is not it (dense's pinned softmax timed level). Shapes as the bench
# (page 16, Lq = Lk, B x L = 16k): D 128 bf16 B 2 x 8k (16 heads) without a mask, where we are 0.98x FA3
# and 0.89x the no-copy ceiling, and D 256 bf16 B 2 x 8k (8 heads) causal, where we are 0.87x FA3.
# Predicted: our LSU pipe and L1 (LDGSTS wavefronts) well under half busy, like FA3's; the difference in
# the warp states of the consumer warps (waiting on the stage barrier: "long scoreboard"/"barrier" share),
# i.e. the copies' latency rather than their throughput, which would point at a deeper ring (4 stages at
# D 128 with BLOCK_N 112) or gathering V ahead of K.
# Needs registry-sm90a/ (the shipped paged set), .device/wheels and .device/vllm-payload carried.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
# shellcheck disable=SC1091
source scripts/device_env.sh
SECTIONS="--section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
  --section WarpStateStats --section SchedulerStats --section InstructionStats"
prof() {  # kernel, heads, extra args
  echo "=== ours: $1 H $2 ${*:3}"
  # shellcheck disable=SC2086
  timeout 200 ncu $SECTIONS -k regex:qm_ -c 1 \
    python3 scripts/profile_sm90.py "$1" --batch 2 --heads "$2" --seqlen 8192 "${@:3}"
  echo "=== FA3 paged: H $2 ${*:3}"
  # shellcheck disable=SC2086
  timeout 200 ncu $SECTIONS --kernel-name-base demangled -k regex:"FlashAttnFwd" -c 1 \
    python3 scripts/profile_sm90.py "$1" --batch 2 --heads "$2" --seqlen 8192 --fa3 "${@:3}"
}
{
  prof qm_paged_prefill_sm90_attn_bf16_hd128 16
  prof qm_paged_prefill_sm90_attn_bf16_hd256 8 --causal
} > "$OUT/ncu-paged.txt" 2>&1
grep -E "^===|Duration|SM Busy|Issue Slots Busy|Executed Ipc Active|L1/TEX Cache Throughput|highest-utilized|Stall" \
  "$OUT/ncu-paged.txt" | head -60
