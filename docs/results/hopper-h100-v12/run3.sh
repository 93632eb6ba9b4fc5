#!/bin/bash
# Session 14, run 3: why llama3.1-405b B 8 x 2k causal misses in the timed loop (ours 0.94 of cuDNN)
# while Nsight Compute's single-launch replay has ours ahead (run 1 at base clock 2.09 / 2.34 ms;
# run 2 at boost clocks 1.91 / 1.95 ms, and in run 2's timed loop ours took 2.08 ms, cuDNN 1.95).
# scripts/clock_probe.py times ours and cuDNN three ways (the benchmark's loop, the loop without the
# L2 flush, isolated runs after 50 ms idle) and samples SM clock and board power during each, for
# GQA (8 KV heads) and MHA (128 KV heads). Predicted: in the loop ours runs at a lower SM clock or
# higher power than cuDNN (a sustained-load effect the replay does not see), and isolated runs give
# ours the replay's lead back.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
# shellcheck disable=SC1091
source scripts/device_env.sh
nvidia-smi -L
for hk in 8 128; do
  python3 scripts/clock_probe.py qm_dense_prefill_sm90_attn_bf16_hd128 --kernels registry-var14gqa \
    --batch 8 --heads 128 --heads-kv "$hk" --seqlen 2048 --causal
done | tee "$OUT/clock-probe.jsonl"
