#!/usr/bin/env bash
# Build the qimeng attention kernels + the standalone host check.
#   scripts/kernel_check/build.sh [OUTDIR]            (default build/kernel_check)
# Products (OUTDIR):
#   kc_sm75   kernels of the Sm75 recipe as compute_75 PTX only (driver JIT), fp16
#   kc_sm80   kernels of the Sm80 recipe as compute_80 PTX only (driver JIT), fp16+bf16
#   kc_sm90a  kernels of the Sm80 recipe as sm_90a SASS
#   ptxas_<arch>.log   ptxas -v for sm_75 / sm_80 / sm_90a SASS of every kernel
#   sass_<arch>.txt    per-kernel HMMA count and spill instructions (total / inside loops)
# Env: NVCC (default nvcc), JOBS (default nproc), CUTLASS_INC, QM_SKIP_REPORT=1 (no sm_75/sm_80 SASS)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:-$ROOT/build/kernel_check}
NVCC=${NVCC:-nvcc}
JOBS=${JOBS:-$(nproc)}
if [ -z "${CUTLASS_INC:-}" ]; then
  CUTLASS_INC=$(ls -d "$ROOT"/.venv/lib/python3*/site-packages/cutlass_library/source/include 2>/dev/null | head -1 || true)
  [ -n "$CUTLASS_INC" ] || CUTLASS_INC=$(python3 -c 'import cutlass_library,os;print(os.path.join(os.path.dirname(cutlass_library.__file__),"source","include"))')
fi
mkdir -p "$OUT/obj"
FLAGS=(-std=c++17 --expt-relaxed-constexpr -O3 -I"$CUTLASS_INC" -I"$ROOT/kernels_src/include" -Xcudafe --diag_suppress=177)
SRCS=(attn_prefill attn_prefill_paged attn_decode_paged)

# one job per (build, source): <build> <recipe> <gencode...>
jobs_list=()
for s in "${SRCS[@]}"; do
  jobs_list+=("sm75 75 $s -gencode arch=compute_75,code=compute_75")
  jobs_list+=("sm80 80 $s -gencode arch=compute_80,code=compute_80")
  jobs_list+=("sm90a 80 $s -gencode arch=compute_90a,code=sm_90a -Xptxas -v")
  if [ -z "${QM_SKIP_REPORT:-}" ]; then
    jobs_list+=("rep75 75 $s -gencode arch=compute_75,code=sm_75 -Xptxas -v -cubin")
    jobs_list+=("rep80 80 $s -gencode arch=compute_80,code=sm_80 -Xptxas -v -cubin")
  fi
done
jobs_list+=("sm75 75 kernel_check -gencode arch=compute_75,code=compute_75")
jobs_list+=("sm80 80 kernel_check -gencode arch=compute_80,code=compute_80")
jobs_list+=("sm90a 80 kernel_check -gencode arch=compute_90a,code=sm_90a")
[ -n "${QM_NO_VARIANTS:-}" ] || jobs_list+=("sm90a 80 variants -gencode arch=compute_90a,code=sm_90a -Xptxas -v")

build_one() {
  set -euo pipefail
  local b=$1 r=$2 s=$3; shift 3
  local src="$ROOT/kernels_src/cuda/$s.cu"
  [ "$s" = kernel_check ] && src="$ROOT/scripts/kernel_check/kernel_check.cu"
  [ "$s" = variants ] && src="$ROOT/scripts/kernel_check/variants.cu"
  local ext=o; [[ " $* " == *" -cubin "* ]] && ext=cubin
  local dst="$OUT/obj/${b}_${s}.$ext"
  local cflag=-c; [ $ext = cubin ] && cflag=
  # incremental: skip when the product is newer than its source and every header
  local deps=("$src" "$ROOT/kernels_src/include")
  [[ $s == kernel_check || $s == variants ]] && deps+=("$ROOT/scripts/kernel_check" "$ROOT/kernels_src/cuda")
  if [ -z "${QM_FORCE:-}" ] && [ -f "$dst" ] && [ -z "$(find "${deps[@]}" -newer "$dst" \( -name '*.cu' -o -name '*.cuh' -o -name '*.h' \) 2>/dev/null | head -1)" ]; then
    echo "up to date $b $s"; return 0
  fi
  if "$NVCC" "${FLAGS[@]}" -DQM_RECIPE=$r "$@" $cflag -o "$dst" "$src" > "$OUT/obj/${b}_${s}.log" 2>&1; then
    echo "built $b $s"
  else
    echo "FAILED $b $s"; cat "$OUT/obj/${b}_${s}.log" | head -50; return 1
  fi
}
export -f build_one; export ROOT OUT NVCC; export FLAGS_STR="${FLAGS[*]}"
fail=0
[ -n "${QM_REPORT_ONLY:-}" ] && jobs_list=()
[ ${#jobs_list[@]} = 0 ] || printf '%s\n' "${jobs_list[@]}" | xargs -P "$JOBS" -I{} bash -c 'FLAGS=($FLAGS_STR); build_one {}' || fail=1
[ $fail = 0 ] || { echo "build failed"; exit 1; }

for b in sm75 sm80 sm90a; do
  [ -n "${QM_REPORT_ONLY:-}" ] && break
  arch=${b#sm}; gc="arch=compute_${arch},code=compute_${arch}"; [ $b = sm90a ] && gc="arch=compute_90a,code=sm_90a"
  "$NVCC" -gencode "$gc" -o "$OUT/kc_$b" "$OUT"/obj/${b}_*.o
done

# reports
CUOBJDUMP=${CUOBJDUMP:-cuobjdump}
report() {  # <object prefix> <report name>: condensed ptxas -v output, one line per kernel
  local a=$1 name=$2
  cat $(ls "$OUT"/obj/${a}_attn_*.log "$OUT"/obj/${a}_variants.log 2>/dev/null) | python3 -c '
import re, sys
fn = None
for line in sys.stdin:
    m = re.search(r"Compiling entry function .(\w+). for .(\w+).", line)
    if m: fn = m.group(1); arch = m.group(2); continue
    m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
    if m and fn: spill = (m.group(1), m.group(2)); continue
    m = re.search(r"Used (\d+) registers", line)
    if m and fn:
        print(f"{fn:40s} {arch:7s} regs={m.group(1):>3s} spill_st={spill[0]:>3s}B spill_ld={spill[1]:>3s}B"); fn = None
' > "$OUT/ptxas_$name.log" || true
}
report sm90a sm90a
if [ -z "${QM_SKIP_REPORT:-}" ]; then report rep75 sm75; report rep80 sm80; fi
if command -v "$CUOBJDUMP" >/dev/null && command -v nvdisasm >/dev/null; then
  { for f in "$OUT"/obj/rep75_*.cubin; do [ -f "$f" ] && "$CUOBJDUMP" -sass "$f"; done; } | python3 "$ROOT/scripts/kernel_check/sass_summary.py" > "$OUT/sass_sm75.txt" || true
  { for f in "$OUT"/obj/rep80_*.cubin; do [ -f "$f" ] && "$CUOBJDUMP" -sass "$f"; done; } | python3 "$ROOT/scripts/kernel_check/sass_summary.py" > "$OUT/sass_sm80.txt" || true
  { for f in "$OUT"/obj/sm90a_attn_*.o "$OUT"/obj/sm90a_variants.o; do [ -f "$f" ] || continue; "$CUOBJDUMP" -sass "$f"; done; } | python3 "$ROOT/scripts/kernel_check/sass_summary.py" > "$OUT/sass_sm90a.txt" || true
fi
echo "build ok: $OUT"
