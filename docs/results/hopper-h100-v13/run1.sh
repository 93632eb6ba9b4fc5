#!/bin/bash
# Session 15, run 1: two changes to the Hopper programs, bf16, against session 14's shipped kernels on
# the same machine.
#  1. Causal query tiles padded at the front (q0 = m * BLOCK_M - (cdiv(Lq, BLOCK_M) * BLOCK_M - Lq)):
#     at D 64 (192-row tiles) the padding moves from the last query tile, which visits every KV tile,
#     to the first, which visits one. KV tiles a head: 1k 41 -> 36, 4k 505 -> 484, 16k 7481 -> 7396,
#     2k / 8k unchanged. Predicted: D 64 causal +8-12% at 1k, +3-4% at 4k, +1% at 16k, level at 2k / 8k
#     (dense and paged); D 128 / 256 level (no padding at these lengths; the KV loop has 4 more uniform
#     instructions, 934 -> 938 at D 128).
#  2. A D 64 kernel tuned for calls without a mask (`_full`: 192 x 128, gemms, 4 stages), which the
#     runtime picks for them. Predicted over the causal kernel on the same rows: +7% at 1k, +4% at 2k,
#     +1% at 4k, 0 to +5% at 8k-16k (session 13's run 7 and session 14's tune). Two more candidates for
#     that kernel (full64pp: the same with ping-pong; full64none: 192 x 144 without overlap) and one for
#     paged D 64 (pfull64: 192 x 112, gemms, 4 stages) are timed on both masks.
# registry-var15a/: build_sm90_kernels(bf16, D 64 / 128 / 256, dense_prefill_sm90.tl + paged_prefill_sm90.tl),
# then `python scripts/sm90_variants.py --out registry-var15a --only full64pp,full64none,pfull64`.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var15a --dtypes bf16 --bench-dtypes bf16 --flex none \
  --lengths 1024,2048,4096,8192,16384 --budget-s 480 \
  --sanitize qm_dense_prefill_sm90_full_attn_bf16_hd64,qm_paged_prefill_sm90_attn_bf16_hd64 \
  --out "$OUT/new" > "$OUT/new.log" 2>&1
bash scripts/hopper_device.sh --kernels registry-shipped14 --dtypes bf16 --bench-dtypes bf16 --flex none \
  --head-dims 64,128 --lengths 1024,2048,4096,8192,16384 --budget-s 150 --no-validate \
  --out "$OUT/old" > "$OUT/old.log" 2>&1
grep -E "^\[|FAIL|rror|hazard|ERROR SUMMARY" "$OUT/new.log" "$OUT/old.log" | grep -v "\[ok\]" | tail -40
