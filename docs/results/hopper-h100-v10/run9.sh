#!/bin/bash
# Session 12, run 9: our paged D 256 kernel with FA3's schedule and register split (pgr40_256o1: the
# overlapped loop, producer 40 / consumers 232 registers; ptxas: 36 B of spill, the producer's page
# lookup) under run 5's metrics, B 2 x 8k H 8 without a mask, bf16. FA3's paged D 256 kernel (SASS of
# vLLM 0.26's build) is 128 x 80, 2 stages, the overlapped loop (S GEMM and the previous O += P V
# issued together, DEPBAR.LE 1, softmax, DEPBAR.LE 0), setmaxnreg 40 / 232, no local memory; run 5
# measured it at 1.73 ms, tensor pipe 82.7%, barrier stalls 0.29 per issue. registry-var12/ from
#   python scripts/sm90_variants.py --out registry-var12 --only pgr40_256o1
# Predicted: if the schedule is what FA3 has over us, the barrier stalls fall toward FA3's and the
# tensor pipe rises toward 80%; session 11's run 4 timed this kernel -4 to +2% against the plain loop,
# so more likely the stalls move to the S GEMM's wait and the time stays.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
# shellcheck disable=SC1091
source scripts/device_env.sh
M="regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_elapsed,smsp__inst_executed.sum,gpu__time_duration.sum"
echo "=== ours, overlapped at 40 / 232: D 256 B 2 x 8k H 8 full" > "$OUT/ncu-o1.txt"
timeout 150 ncu --metrics "$M" -k regex:qm_ -c 1 python3 scripts/profile_sm90.py \
  qm_paged_prefill_sm90_v_pgr40_256o1_attn_bf16_hd256 --kernels registry-var12 --batch 2 --heads 8 \
  --seqlen 8192 >> "$OUT/ncu-o1.txt" 2>&1
grep -E "===|duration|tensor|inst_exec|barrier|_wait_|gmma|long_score|dispatch" "$OUT/ncu-o1.txt"
