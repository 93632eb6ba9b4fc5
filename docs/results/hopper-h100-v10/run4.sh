#!/bin/bash
# Session 12, run 4: D 256 paged prefill with the overlapped consumer loop on a 128 x 64 tile (the
# softmax of one KV tile overlapping the next tile's S GEMM), beside the shipped 128 x 80 tile without
# overlap, and FA3's paged prefill; bf16, page 16, B x L = 16k. registry-var9/ from
#   python scripts/sm90_variants.py --out registry-var9 --only pg256_n64o --baseline qm_paged_prefill_sm90_attn_bf16_hd256
# (builds without spills at 56 / 224 registers; at 80 keys the overlapped loop spills 56 B). Why: run 3's
# ncu at D 256 B 2 x 8k full: our tensor pipe busy 73% of the elapsed cycles, FA3's 82.5%, with the
# same GEMM work (SM active cycles 2.71 M against 2.39 M). Predicted: -2 to +5% (the overlap may win back
# part of the idle tensor time; session 10 timed 80 keys over 64 at +2-7% without overlap).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var9 --dtypes bf16 --bench-dtypes bf16 --flex none \
  --lengths 2048,8192,16384 --budget-s 200 --out "$OUT/var" > /tmp/var.log 2>&1
grep -E "^\[|FAIL|rror|hazard|ERROR SUMMARY" /tmp/var.log | grep -v "\[ok\]" | tail -30
cp /tmp/var.log "$OUT/"
