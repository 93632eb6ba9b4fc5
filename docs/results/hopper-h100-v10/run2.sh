#!/bin/bash
# Session 12, run 2: smaller causal L2 head groups, now that the claim is late (run 1), beside the
# shipped late-claim kernels and FA3's paged prefill; bf16, page 16, B x L = 16k. registry-var8/ from
#   python scripts/sm90_variants.py --out registry-var8 --only pg256_l2g16,pg256_l2g8,pg128_l2g16 \
#     --baseline qm_paged_prefill_sm90_attn_bf16_hd128,qm_paged_prefill_sm90_attn_bf16_hd256
# (registry-sm90a rebuilt at a4c52bb: the late claim). Why: ncu at D 256 B 2 x 8k causal (session 11's
# run 6) put our L2 hit rate at 77% against FA3's 92% (DRAM 704 against 295 GB/s); FA3's varlen
# scheduler budgets 8 MB of K/V per head section, ours 32 MB. Then ncu's L2 hit rate and DRAM bytes
# of the shipped D 256 kernel at that shape, late claim.
# Predicted (balance from the list-scheduling simulation, then the L2): pg256_l2g16 -1% at 2k causal,
# 0 to +3% at 8k-16k causal; pg256_l2g8 -7% / -10% at 2k / 8k causal (its one-head sections balance
# badly), 0 to +3% at 16k; pg128_l2g16 -1% at 2k, 0 to +2% at 8k-16k causal. Without a mask all level
# (groups order causal tiles only).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var8 --dtypes bf16 --bench-dtypes bf16 --flex none \
  --lengths 2048,8192,16384 --budget-s 300 --out "$OUT/var" > /tmp/var.log 2>&1
grep -E "^\[|FAIL|rror|hazard|ERROR SUMMARY" /tmp/var.log | grep -v "\[ok\]" | tail -30
cp /tmp/var.log "$OUT/"
# shellcheck disable=SC1091
source scripts/device_env.sh
METRICS=lts__t_sector_hit_rate.pct,dram__bytes_read.sum,dram__bytes_write.sum,gpu__time_duration.sum
for k in qm_paged_prefill_sm90_attn_bf16_hd256 qm_paged_prefill_sm90_v_pg256_l2g16_attn_bf16_hd256; do
  echo "=== $k B 2 x 8k H 8 causal"
  timeout 120 ncu --metrics $METRICS -k regex:qm_ -c 1 python3 scripts/profile_sm90.py "$k" \
    --kernels registry-var8 --batch 2 --heads 8 --seqlen 8192 --causal 2>&1 | grep -E "lts__|dram__|gpu__"
done > "$OUT/ncu-l2.txt"
cat "$OUT/ncu-l2.txt"
