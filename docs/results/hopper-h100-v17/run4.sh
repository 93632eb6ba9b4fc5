#!/bin/bash
# Session 19, run 4: run 3 found the stream share's schedule alone (nostore: parts neither store nor combine)
# as slow as the whole kernel, 0.96-0.97 of the static whole waves. Is the shared region memory-bound (its CTAs
# spread over the tiles' KV blocks instead of reading them in lockstep)? ncu on one launch each (B 8 x H 16 x 2k
# and 8k, no mask): duration, DRAM bytes, L2 hit rate; and the trace of the nostore kernel (per-tile marks).
# Predicted (if so): nostore's DRAM reads well above static's, its L2 hit rate lower.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
M=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sector_hit_rate.pct,lts__t_sectors_op_read.sum,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_elapsed
for k in qm_dense_prefill_sm90_v_static128_full_attn_bf16_hd128 qm_dense_prefill_sm90_v_stream128_nostore_attn_bf16_hd128 qm_dense_prefill_sm90_v_stream128_attn_bf16_hd128; do
  for L in 2048 8192; do
    B=$((16384 / L))
    echo "== $k L=$L"
    timeout 120 ncu --metrics $M -k regex:qm_ -c 1 python3 scripts/profile_sm90.py $k --kernels .device/stream \
      --batch $B --heads 16 --seqlen $L 2>&1 | grep -E "^\s+(gpu__|dram__|lts__|sm__)" | tee -a "$OUT/ncu.txt"
  done
done
timeout 100 python3 scripts/sm90_trace.py run --registry .device/trace-stream128 --seqlens-k 2048,8192 --seqlen-q 2048 \
  --json "$OUT/trace-nostore.json" 2>&1 | tee "$OUT/trace-nostore.txt" | tail -30
