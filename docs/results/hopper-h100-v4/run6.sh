#!/bin/bash
# Session 6, run 6: Q loaded per consumer warpgroup (each part once its own warpgroup released it):
# the D 128 / D 64 programs rebuilt with it (v_shipped128, v_d64) timed beside the same programs
# built before it (registry-sm90a); a trace; then `qimeng-serve validate` on an sm_90 dense bundle,
# whose sm90a kernels launch through KernelSet with the tile-counter ABI.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var --bench-dtypes bf16,f16 --flex none --out "$OUT/bench" \
  --sanitize qm_dense_prefill_sm90_v_shipped128_attn_bf16_hd128,qm_dense_prefill_sm90_v_d64_attn_f16_hd64 > "$OUT/bench.log" 2>&1
export PYTHONPATH="$PWD:/tmp/py"
python3 scripts/sm90_trace.py run --registry registry-trace-q --seqlens-k 1024,2048 --json "$OUT/trace-q.json" > "$OUT/trace.log" 2>&1
source .device/vllm-payload/install_on_gpu.sh /tmp/vsite > /dev/null 2>&1
export PYTHONPATH="$PWD:/tmp/py:$PYTHONPATH"
python3 -m qimeng_serve validate --registry .device/reg-dense90 --arch sm_90 > "$OUT/validate.log" 2>&1; echo "validate rc=$?" >> "$OUT/validate.log"
grep -E "^\[|FAIL|rror" "$OUT/bench.log" | grep -v "^\[ok\]" | tail; cat "$OUT/trace.log" "$OUT/validate.log" | tail -40
