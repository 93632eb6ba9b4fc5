#!/bin/bash
# Session 14, run 13: run 12 found the slow state needs no kernel run before it: the earlier rows'
# tensors allocated, written and freed are enough. Run 8's replays were alike, but ncu invalidated L2
# before them (--cache-control all). Here ncu leaves the caches as the loop leaves them
# (--cache-control none, --clock-control none) and replays the whole application per pass
# (--replay-mode application), so the profiled launch sees the loop's own L2 (the Timer's flush just
# before it). Fresh launch 10 against slow-state launch 77 (both the 7th write-flushed run of their target). Predicted: the slow state
# now shows in ncu's duration, and its memory metrics (DRAM bytes, L2 hit rate, L2 -> DRAM write-back)
# say where the time goes; if the durations match again, the state is outside what one launch sees.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var14 --dtypes bf16 --head-dims 128 --no-bench --no-validate \
  --out "$OUT/env" > "$OUT/env.log" 2>&1  # the wheels into /tmp/py
export PYTHONPATH="$PWD:/tmp/py"
k=qm_dense_prefill_sm90_v_shipped128_attn_bf16_hd128
for skip in 10 77; do  # fresh: launches 0-66 (1 + 3 + 20 write-flushed, 20 read-flushed, 3 + 20 unflushed); the target after: from 67
  echo "=== launch $skip"
  timeout 240 ncu --replay-mode application --cache-control none --clock-control none --section SpeedOfLight \
    --metrics dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sector_hit_rate.pct,lts__t_sectors_srcunit_tex_op_read_lookup_miss.sum,smsp__inst_executed.sum \
    -k "regex:qm_" --launch-skip "$skip" -c 1 \
    python3 scripts/clock_probe.py "$k" --kernels registry-var14 --batch 8 --heads 128 --heads-kv 8 --seqlen 2048 \
    --causal --runs 20 --sequence --allocate-only
done > "$OUT/ncu-app.txt" 2>&1
grep -E "^===|fresh|after the|Duration|DRAM Throughput|dram__bytes|lts__t_sector|smsp__inst|SM Frequency|==ERROR|==WARNING" \
  "$OUT/ncu-app.txt" | cut -c1-170 | head -60
