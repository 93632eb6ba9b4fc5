#!/bin/bash
# Session 16, run 5 (first try hung: 48 producer registers + 2 x 232 exceed the 168 x 384 the CTA was
# launched with, so setmaxnreg.inc never returned; back to 40): is the staggered kernels' producer what costs 12-15%? Run 4: d0 0.85-0.88 of the
# shipped kernel, and Nsight Compute saw 3.1 M local-memory spill requests in it at B 1 x 16k (none in
# the shipped kernel) and ~15% more instructions at the same issue rate (waits spin). Its producer's
# item loop still holds 5 spill pairs at 40 and at 48 registers. d0 (48 producer registers, the general
# rounds), d0s (the shipped producer's loop: claim a tile, hand its halves, its blocks as shared items;
# no spills in the item loop), d0spp (d0s with ping-pong turns). Predicted: d0s 0.95-1.0 of the shipped
# kernel if the producer is the cost; if d0s stays at ~0.87 the consumers' side (the slot tags and
# steps, per-warpgroup Q) is, and the stagger has no room left to pay at this cost.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
A=.device/ab16
timeout 150 python3 scripts/ab_sm90.py --rounds 3 --masks full --lengths 2048,4096,16384 --out "$OUT/ab.jsonl" \
  --kernel ship=$A/ship:qm_dense_prefill_sm90_attn_bf16_hd128 \
  --kernel st_d0s=$A/st-d0s:qm_stagger_attn_bf16_hd128 --kernel st_d0spp=$A/st-d0spp:qm_stagger_attn_bf16_hd128 \
  2>&1 | tee "$OUT/ab-full.txt"
