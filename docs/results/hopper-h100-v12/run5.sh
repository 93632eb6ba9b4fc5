#!/bin/bash
# Session 14, run 5: run 4 reproduced the gap on one H100: llama3.1-405b B 8 x 2k causal, ours 581-583
# TFLOPS in scripts/clock_probe.py (cuDNN 572) and 539 in hopper_check (cuDNN 567-572), same kernel,
# same Timer. hopper_check times that row after six others in one process. Here, in one process:
# ours on the shape alone, after hopper_check's earlier rows, and once more. Predicted: the earlier
# rows bring ours down to ~540 (then the cause is state they leave: allocations or the L2 / TLB),
# or they do not, and the difference is elsewhere in hopper_check's worker (checked by the same
# probe under its process next).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
# shellcheck disable=SC1091
source scripts/device_env.sh
nvidia-smi -L
for i in 1 2; do
  python3 scripts/clock_probe.py qm_dense_prefill_sm90_attn_bf16_hd128 --kernels registry-var14gqa \
    --batch 8 --heads 128 --heads-kv 8 --seqlen 2048 --causal --runs 20 --sequence
done | tee "$OUT/sequence.jsonl"
