#!/bin/bash
# Session 13, run 5: run 4's illegal address. --tune's second paged D 256 candidate (128 x 64, overlap=softmax,
# ping-pong, 2 stages, 56 / 224) faulted while `qimeng-serve validate` (KernelSet) checked it in the tune
# process. Here, each in its own process through hopper_check's launcher (not KernelSet): that candidate,
# the same tile with overlap=gemms (run 4's third), and paged D 128 with 64-key tiles (the shipped
# schedule otherwise); then memcheck on the first. registry-plan3/ from scripts/sm90_variants.py's build()
# with those overrides (pg256_n64ppo, pg256_n64ppg, pg128_n64ppo).
# Predicted: if the kernels validate here, the fault is in the runtime's paged launch for 64-key tiles
# (KernelSet), not in the kernels; if pg256_n64ppo faults here too, memcheck names the access.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-plan3 --dtypes bf16 --no-bench \
  --sanitize qm_paged_prefill_sm90_v_pg256_n64ppo_attn_bf16_hd256 --out "$OUT/n64" > /tmp/n64.log 2>&1
grep -E "^\[|FAIL|rror|hazard|ERROR SUMMARY|Invalid|at 0x|by thread" /tmp/n64.log | head -40
cp /tmp/n64.log "$OUT/"
