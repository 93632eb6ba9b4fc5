#!/bin/bash
# Session 7, run 3: the overlapped softmax pinned ahead of the wait for the previous O += P V
# (fence128: a warp-uniform branch on the row sums ends the softmax's basic block, so ptxas no longer
# hoists WARPGROUP.DEPBAR above the exponentials), with the packed tile word, at D 128 bf16 + f16 beside
# the shipped kernels; validated, sanitized, traced; Nsight Compute's pipe use of both at B 4 x 4k.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var --bench-dtypes bf16,f16 --flex none --budget-s 400 --out "$OUT/bench" \
  --sanitize qm_dense_prefill_sm90_v_fence128_attn_bf16_hd128 > "$OUT/bench.log" 2>&1
export PYTHONPATH="$PWD:/tmp/py"
python3 scripts/sm90_trace.py run --registry registry-trace-fence --seqlens-k 1024,2048 --json "$OUT/trace-fence.json" > "$OUT/trace-fence.log" 2>&1
for k in qm_dense_prefill_sm90_attn_bf16_hd128 qm_dense_prefill_sm90_v_fence128_attn_bf16_hd128; do
  timeout 120 ncu --section SpeedOfLight --section ComputeWorkloadAnalysis --section WarpStateStats -k regex:qm_ -c 1 \
    python3 scripts/profile_sm90.py "$k" --kernels registry-var --batch 4 --heads 16 --seqlen 4096 >> "$OUT/ncu.txt" 2>&1
done
grep -E "^\[|FAIL|rror" "$OUT/bench.log" | grep -v "^\[ok\]" | tail; grep -E "Q wait|Lk=|first S|rest of" "$OUT"/trace-*.log
grep -E "qm_dense|Pipe|Tensor|Throughput|Issue|Stall|Warp Cycles" "$OUT/ncu.txt" | head -60
