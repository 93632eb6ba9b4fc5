#!/bin/bash
# Session 14, run 8: Nsight Compute on the two states of run 5-7 (llama3.1-405b B 8 x 2k causal, the
# shipped program rebuilt as shipped128): the first launch of clock_probe's --sequence (fresh inputs,
# the fast state) and a launch of the same shape after hopper_check's earlier rows (the slow state),
# each in a process of its own, at the clocks the timed loop sees (--clock-control none). Predicted:
# if the slow state is memory-side, its DRAM bytes or L2 hit rate differ from the fast state's at the
# same instruction counts; if both match, the difference is in how the work lands on the SMs.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var14 --dtypes bf16 --head-dims 128 --no-bench --no-validate \
  --out "$OUT/env" > "$OUT/env.log" 2>&1  # the wheels into /tmp/py
export PYTHONPATH="$PWD:/tmp/py"
k=qm_dense_prefill_sm90_v_shipped128_attn_bf16_hd128
# ours launches 24 times per shape in --sequence (1 + 3 warm-up + 20 timed): the fresh shape's are
# launches 0-23, the six earlier rows' 24-167, the target's again 168-191
for skip in 10 180; do
  echo "=== launch $skip"
  timeout 200 ncu --clock-control none --section SpeedOfLight --section MemoryWorkloadAnalysis \
    --metrics dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sector_hit_rate.pct,smsp__inst_executed.sum,sm__cycles_active.avg \
    -k "regex:qm_" --launch-skip "$skip" -c 1 \
    python3 scripts/clock_probe.py "$k" --kernels registry-var14 --batch 8 --heads 128 --heads-kv 8 --seqlen 2048 \
    --causal --runs 20 --sequence
done > "$OUT/ncu-states.txt" 2>&1
grep -E "^===|^\{|Duration|DRAM Throughput|L2 Hit Rate|dram__bytes|lts__t_sector_hit|smsp__inst_executed|sm__cycles_active|SM Frequency|Mem Busy|Max Bandwidth" \
  "$OUT/ncu-states.txt" | cut -c1-160
