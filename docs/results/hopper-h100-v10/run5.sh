#!/bin/bash
# Session 12, run 5: where the warps of ours and of FA3's paged prefill stall, D 256 B 2 x 8k H 8 without a
# mask (0.93x FA3; run 3: our tensor pipe busy 73% against 82.5%) and D 128 B 2 x 8k H 16 (level with
# FA3), bf16, page 16, the shipped late-claim kernels (registry-sm90a at a4c52bb). ncu's per-issue stall
# ratios of all warps (producer and consumers together) and the tensor pipe's share.
# Predicted: at D 256 our consumers wait longer on the GMMA results ("wait" / "barrier" stalls: the
# softmax runs after its S GEMM, not beside the next one) than FA3's; at D 128 the two alike.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
# shellcheck disable=SC1091
source scripts/device_env.sh
M="regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_elapsed,smsp__inst_executed.sum,gpu__time_duration.sum"
prof() {  # D, heads
  k=qm_paged_prefill_sm90_attn_bf16_hd$1
  echo "=== ours: D $1 B 2 x 8k H $2 full"
  timeout 150 ncu --metrics "$M" -k regex:qm_ -c 1 python3 scripts/profile_sm90.py $k --batch 2 --heads $2 --seqlen 8192
  echo "=== FA3 paged: D $1 B 2 x 8k H $2 full"
  timeout 150 ncu --metrics "$M" --kernel-name-base demangled -k regex:FlashAttnFwd -c 1 \
    python3 scripts/profile_sm90.py $k --batch 2 --heads $2 --seqlen 8192 --fa3
}
{ prof 256 8; prof 128 16; } > "$OUT/ncu-stalls.txt" 2>&1
grep -E "^===|stalled|tensor|inst_executed|duration" "$OUT/ncu-stalls.txt" | awk '$NF+0 > 0.05 || /===|tensor|inst|duration/' | head -90
