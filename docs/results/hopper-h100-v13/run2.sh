#!/bin/bash
# Session 15, run 2: run 1 timed each kernel in its own process, and D 64 moved in ways earlier runs
# did not show (full64pp, 192 x 128 gemms + ping-pong, ahead of the shipped 192 x 96 on both masks at
# every length, where session 14's run 7 had it 1-6% behind under the mask; the shipped kernel's 16k
# causal row 6% below session 14's build). So the kernels are timed again interleaved, in one process
# on the same inputs, three rounds with the order rotated (scripts/ab_sm90.py).
# Predicted: the front padding +7-10% at D 64 1k causal and +2-4% at 4k (dense and paged), level at
# 2k / 8k / 16k (run 1's -4 to -6% at 16k was the process, not the kernel); full64pp ahead of the
# shipped D 64 without a mask (+4-10%), and under the mask within +-3% of it (run 7 and run 1 disagree);
# D 128 level. Also validated and sanitised first: the paged ping-pong candidate pg64pp112 and full64pp.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
bash scripts/hopper_device.sh --kernels registry-var15a --dtypes bf16 --head-dims 64 --no-bench \
  --sanitize qm_dense_prefill_sm90_v_full64pp_attn_bf16_hd64,qm_paged_prefill_sm90_v_pg64pp112_attn_bf16_hd64 \
  --budget-s 150 --out "$OUT/check" > "$OUT/check.log" 2>&1
grep -E "^\[" "$OUT/check.log" | grep -v "\[ok\]"
N=registry-var15a O=registry-shipped14
python3 scripts/ab_sm90.py --rounds 3 --out "$OUT/ab.jsonl" \
  --kernel old14=$O:qm_dense_prefill_sm90_attn_bf16_hd64 --kernel new=$N:qm_dense_prefill_sm90_attn_bf16_hd64 \
  --kernel full64pp=$N:qm_dense_prefill_sm90_v_full64pp_attn_bf16_hd64 \
  --kernel full=$N:qm_dense_prefill_sm90_full_attn_bf16_hd64 2>&1 | tee "$OUT/ab-dense64.txt"
python3 scripts/ab_sm90.py --rounds 3 --out "$OUT/ab.jsonl" \
  --kernel old14=$O:qm_paged_prefill_sm90_v_shippedpg64_attn_bf16_hd64 --kernel new=$N:qm_paged_prefill_sm90_attn_bf16_hd64 \
  --kernel pg64pp112=$N:qm_paged_prefill_sm90_v_pg64pp112_attn_bf16_hd64 2>&1 | tee "$OUT/ab-paged64.txt"
python3 scripts/ab_sm90.py --rounds 3 --lengths 2048,16384 --out "$OUT/ab.jsonl" \
  --kernel old14=$O:qm_dense_prefill_sm90_attn_bf16_hd128 --kernel new=$N:qm_dense_prefill_sm90_attn_bf16_hd128 \
  2>&1 | tee "$OUT/ab-dense128.txt"
