#!/bin/bash
# Session 9, run 9: the TMA store's trace/timer gap (run 5's traced span 309 us, the timed median 330 us,
# D 64 bf16, B 8 x H 16 x 2k full; register store 315 / 313 us). Nsight Compute's kernel duration
# (gpu__time_duration, each launch replayed alone) of the TMA-store and register-store kernels,
# D 64 and D 128, on that shape. If the TMA kernel's duration is ~330 us, the 21 us are inside the
# launch (its start, or the bulk stores landing after the last one is issued); if ~310 us, outside it.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --no-validate --no-bench --out /tmp/env > /tmp/env.log 2>&1  # wheels into /tmp/py
export PYTHONPATH="$PWD:/tmp/py"
for k in qm_dense_prefill_sm90_attn_bf16_hd64 qm_dense_prefill_sm90_v_stg64_attn_bf16_hd64 \
         qm_dense_prefill_sm90_attn_bf16_hd128 qm_dense_prefill_sm90_v_stg128_attn_bf16_hd128; do
  echo "=== $k"
  timeout 120 ncu --metrics gpu__time_duration.sum -k regex:qm_ -c 3 \
    python3 scripts/profile_sm90.py "$k" --kernels registry-var9 --batch 8 --heads 16 --seqlen 2048 2>&1 \
    | grep -E "gpu__time_duration|qm_dense" | grep -v "^ran"
done > "$OUT/ncu-duration.txt" 2>&1
cat "$OUT/ncu-duration.txt"
