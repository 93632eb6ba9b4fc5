#!/bin/bash
# Session 22, run 1 (H200): persistent kernels leave their tile counter zero (scheduler.cuh TileCounter::retire,
# RETIRING_ABI), so a stream keeps one counter (runtime/tile_counter.py) and no fill kernel (torch.zeros) runs
# between the timer's start event and our kernel, as it did before every launch. cuDNN's call has no such kernel.
# .device/bench22: the shipped dense and paged programs built with this change; .device/bench21b: the same programs
# before it (session 21), which the runtime still launches with a counter zeroed per launch (PERSISTENT_ABI).
# Predicted: counter_check passes every kernel (counter [0, 0] after each launch, graph replays, two streams); every
# kernel validates (a counter left non-zero would leave NaN tiles in the next case); memcheck / racecheck clean on
# D 128 `_full` bf16; new / old +0.5-1% at 2k and +1-2% at 1k without a mask (one fill kernel and one kernel boundary,
# about 2-4 us, of a 440 us launch at 2k), +0.2-0.5% at 4k.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
timeout 150 python3 scripts/counter_check.py --kernels .device/bench22 --out "$OUT/counter.json" > "$OUT/counter.txt" 2>&1
echo "counter_check rc=$?"; tail -30 "$OUT/counter.txt"
timeout 300 python3 scripts/hopper_check.py --kernels .device/bench22 --no-bench --budget-s 280 --out "$OUT/check" \
  --sanitize qm_dense_prefill_sm90_full_attn_bf16_hd128 > "$OUT/check.txt" 2>&1
echo "check rc=$?"; grep -E "^\[|done in" "$OUT/check.txt" | tail -24
E=qm_dense_prefill_sm90_full_attn_bf16_hd128
timeout 200 python3 scripts/ab_sm90.py --rounds 7 --masks full --lengths 1024,2048,4096 --list-kernels \
  --out "$OUT/ab-full.jsonl" --kernel old=.device/bench21b:$E --kernel new=.device/bench22:$E 2>&1 | tee "$OUT/ab-full.txt" \
  | grep -E "^dense|^  |rror"
