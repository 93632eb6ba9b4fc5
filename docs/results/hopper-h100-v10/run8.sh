#!/bin/bash
# Session 12, run 8: ping-pong between the two consumer warpgroups at D 256 paged (they take turns issuing
# their GEMMs), with the plain loop (pg256_pp) and with overlap=gemms (pg256_ppg), and overlap=gemms alone
# again (pg256_gemms: run 7 timed it -1.0 / +1.4 / +4.9% without a mask, level causal), beside the shipped
# kernel (no ping-pong, plain loop); bf16, page 16, B x L = 16k, FA3's paged prefill. registry-var11/ from
#   python scripts/sm90_variants.py --out registry-var11 --only pg256_pp,pg256_ppg,pg256_gemms \
#     --baseline qm_paged_prefill_sm90_attn_bf16_hd256
# (all build without spills). Why: run 7's pairing moved the consumers' GMMA waits into one and changed
# nothing, so the waits are the tensor pipe's queue while both warpgroups' softmaxes leave it idle
# together; ping-pong keeps one warpgroup's GEMMs beside the other's softmax.
# Predicted: pg256_pp -2 to +4%, pg256_ppg 0 to +5%, pg256_gemms level (+-2%).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var11 --dtypes bf16 --bench-dtypes bf16 --flex none \
  --lengths 2048,8192,16384 --budget-s 300 --out "$OUT/var" > /tmp/var.log 2>&1
grep -E "^\[|FAIL|rror|hazard|ERROR SUMMARY" /tmp/var.log | grep -v "\[ok\]" | tail -30
cp /tmp/var.log "$OUT/"
