#!/bin/bash
# Session 11, run 7 (prepared, not run: no device time was left): a deeper K/V ring for the gather, beside
# the shipped paged kernels and FA3's paged prefill. registry-var6/ from
#   python scripts/sm90_variants.py --out registry-var6 --only pg128_s4n96,pg64_s6,pg256_l2g16,pg256_grid \
#     --baseline qm_paged_prefill_sm90_attn_bf16_hd128,qm_paged_prefill_sm90_attn_bf16_hd64,qm_paged_prefill_sm90_attn_bf16_hd256
# (both build without spills). Predicted: if run 6 shows the consumers waiting on gathered stages (latency),
# pg64_s6 (6 stages of 192 x 96 instead of 3; shared memory is no limit at D 64) +2-5% and pg128_s4n96
# (4 stages of 96 keys instead of 3 of 128; more softmax passes per key) -2 to +3%; if run 6 shows a busy
# LSU / L1 (throughput), neither moves. pg256_l2g16 (the causal order's L2 head groups at 16 MB, one head at
# 16k: the grid's working set): +3-5% at 16k causal, level elsewhere.
# pg256_grid (one CTA per tile, rebuilt with the panel lanes and 32-bit strides): run 2's grid-over-persistent
# rows again, same run.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var6 --dtypes bf16 --bench-dtypes bf16 --flex none \
  --lengths 2048,8192,16384 --budget-s 300 --out "$OUT/var" > /tmp/var.log 2>&1
grep -E "^\[|FAIL|rror|hazard|ERROR SUMMARY" /tmp/var.log | grep -v "\[ok\]" | tail -30
cp /tmp/var.log "$OUT/"
