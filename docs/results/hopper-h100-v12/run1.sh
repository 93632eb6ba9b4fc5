#!/bin/bash
# Session 14, run 1: (a) the Hopper planner's --tune on the H100 after session 13's compile-race fix,
# and (b) Nsight Compute on the llama3.1-405b miss (D 128, 128 query heads on 8 KV heads, B 8 x 2k,
# causal), ours and cuDNN's kernel, against the same shape without GQA (128 KV heads).
# (a) `generate --arch sm_90 --op dense_prefill --head-dim 64 --dtype bf16 --hopper --tune --tune-top 3`
#     with cost model 3 (session 14: gemms + ping-pong re-fitted to run 7; ping-pong credited to pinned
#     only). Its top three for D 64 are 192 x 80 pinned + ping-pong, then 192 x 176 with no overlap
#     (ping-pong and cooperative tie). Predicted: all three build without spills and validate; the
#     model says 192 x 80 pinned + ping-pong is 2-4% ahead of the none tiles; the measured shipped
#     192 x 96 softmax would sit between them (cost model 3: 2182 cycles / 96 keys against 1681 / 80).
#     Which wins is what the run is for.
# (b) Predicted: cuDNN's GQA gain is memory-side: fewer DRAM bytes and a higher L2 hit rate at 8 KV
#     heads than at 128; ours reads about the same DRAM bytes per launch either way (our causal
#     scheduler already groups a head's query blocks; GQA's 16 query heads per KV head are not grouped
#     together), so our duration does not drop with GQA.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
# shellcheck disable=SC1091
source scripts/device_env.sh
export QIMENG_CUTLASS_INCLUDE=$PWD/.device/cutlass/include QIMENG_CACHE_DIR=/tmp/qimeng-cache
nvidia-smi -L
echo "== tune dense_prefill D 64"
timeout 300 python3 -m qimeng_serve generate --arch sm_90 --op dense_prefill --head-dim 64 --dtype bf16 --hopper \
  --no-cache --tune --tune-top 3 --show-candidates --limit 6 --out "$OUT/dense-64.tl" > "$OUT/tune.log" 2>&1
echo "tune rc=$?"
grep -E "tune|measured|validated|rror|wrote" "$OUT/tune.log" | cut -c1-240 | head -30
prof() {  # filter, heads_kv
  echo "=== $1 Hkv $2"
  timeout 100 ncu --section SpeedOfLight --section MemoryWorkloadAnalysis --section LaunchStats \
    --section ComputeWorkloadAnalysis -k "regex:$1" -c 1 \
    python3 scripts/profile_sm90.py qm_dense_prefill_sm90_attn_bf16_hd128 --kernels registry-var13 \
    --batch 8 --heads 128 --heads-kv "$2" --seqlen 2048 --causal --cudnn
}
{
  prof qm_ 8
  prof qm_ 128
  prof cudnn 8
  prof cudnn 128
} > "$OUT/ncu-gqa.txt" 2>&1
grep -E "^===|^  [a-z].*\(|Duration|DRAM Throughput|L2 Hit Rate|Mem Busy|dram__bytes|Memory Throughput|Compute \(SM\)|Grid Size|Registers Per|Shared Memory Config" "$OUT/ncu-gqa.txt" | cut -c1-200
