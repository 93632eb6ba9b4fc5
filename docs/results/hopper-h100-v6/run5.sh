#!/bin/bash
# Session 8, run 5: Nsight Compute on the shipped dense kernels at the lengths where they miss the bar
# and at the lengths where they meet it, same tokens (B x L = 16k, 16 heads at D 128, 32 at D 64):
# D 128 bf16 without a mask at B 8 x 2k, B 4 x 4k, B 1 x 16k; D 64 bf16 at B 16 x 1k and B 4 x 4k.
# Predicted (the tile boundary: ~3 us a tile with the tensor pipe idle, session 7's trace): the
# tensor pipe's share falls with L at the same per-KV-tile issue rate: D 128 ~66% at 2k against
# ~70% at 4k and 16k; D 64 at 1k 10+ points below its 4k.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --no-validate --no-bench --out "$OUT/env" > "$OUT/env.log" 2>&1  # the wheels into /tmp/py
export PYTHONPATH="$PWD:/tmp/py"
prof() {  # kernel, batch, heads, seqlen
  echo "=== $1 B $2 H $3 L $4 full"
  timeout 150 ncu --section SpeedOfLight --section ComputeWorkloadAnalysis --section WarpStateStats -k regex:qm_ -c 1 \
    python3 scripts/profile_sm90.py "$1" --kernels registry-sm90a --batch "$2" --heads "$3" --seqlen "$4"
}
{
  prof qm_dense_prefill_sm90_attn_bf16_hd128 8 16 2048
  prof qm_dense_prefill_sm90_attn_bf16_hd128 4 16 4096
  prof qm_dense_prefill_sm90_attn_bf16_hd128 1 16 16384
  prof qm_dense_prefill_sm90_attn_bf16_hd64 16 32 1024
  prof qm_dense_prefill_sm90_attn_bf16_hd64 4 32 4096
} > "$OUT/ncu.txt" 2>&1
grep -E "^===|Duration|SM Busy|Issue Slots Busy|Executed Ipc Active|highest-utilized" "$OUT/ncu.txt"
