#!/bin/bash
# Session 12, run 7: overlap=gemms (OVERLAP = 3) at D 256: a KV tile's S GEMM and the previous tile's
# O += P V issued together and waited for together, the softmax after both (P dead by then: no spill
# at 56 / 224 registers with the 128 x 80 tile, where overlap=softmax spills 56 B). Beside the shipped
# D 256 kernels, bf16; paged (page 16, B x L = 16k, FA3's paged prefill) and dense (cuDNN, FA3).
# registry-var10/ from
#   python scripts/sm90_variants.py --out registry-var10 --only pg256_gemms,dense256_gemms \
#     --baseline qm_paged_prefill_sm90_attn_bf16_hd256
#   (+ the shipped dense D 256 bf16 kernel from build_sm90_kernels, copied in with --baseline-from)
# Why: run 6's SASS sampling of the paged D 256 kernel put 22% of all stall samples on the consumers'
# two GMMA waits per KV tile (WARPGROUP.DEPBAR after the S GEMM and after O += P V).
# Predicted: paged D 256 +2-5% (one wait a KV tile instead of two; FA3 is 7% ahead there); dense D 256,
# which ships overlap=softmax at 24 / 240 registers: -3 to 0% (its softmax no longer runs beside PV).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var10 --dtypes bf16 --bench-dtypes bf16 --flex none \
  --lengths 2048,8192,16384 --budget-s 300 --out "$OUT/var" > /tmp/var.log 2>&1
grep -E "^\[|FAIL|rror|hazard|ERROR SUMMARY" /tmp/var.log | grep -v "\[ok\]" | tail -30
cp /tmp/var.log "$OUT/"
