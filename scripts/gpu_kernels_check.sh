#!/usr/bin/env bash
# Build (unless prebuilt), check and time the qimeng attention kernels on a CUDA GPU.
#
#   scripts/gpu_kernels_check.sh
#
# Builds (scripts/kernel_check/build.sh):  kc_sm75  = Sm75 recipe, compute_75 PTX only (JIT)
#                                          kc_sm80  = Sm80 recipe, compute_80 PTX only (JIT)
#                                          kc_sm90a = Sm80 recipe, sm_90a SASS
# then runs every correctness check of every build (in parallel processes, one per head dim),
# then the timings (one build at a time), and prints a summary table last.
# Env:
#   OUT            log folder (default build/kernel_check/logs); gets checks.log, time.log,
#                  summary.txt, build.log, ptxas_sm90a.log, device.txt (<= 8 files)
#   QM_PREBUILT=1  use build/kernel_check/kc_* as they are (built elsewhere, carried along)
#   QM_BUILDS      builds to run (default "sm75 sm80 sm90a")
#   QM_CHECK_ARGS  extra args for `kc_* check` (e.g. "--family decode")
#   QM_TIME=0      skip the timings
#   QM_CHECK_TIMEOUT / QM_TIME_TIMEOUT   per-process limits in seconds (240 / 120)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${QM_BUILD_DIR:-$ROOT/build/kernel_check}
OUT=${OUT:-$BUILD/logs}
BUILDS=${QM_BUILDS:-sm75 sm80 sm90a}
mkdir -p "$OUT"
TMP=$(mktemp -d)
t0=$(date +%s)

{ nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv 2>&1
  nvcc --version 2>&1 | tail -2; } > "$OUT/device.txt"

if [ -n "${QM_PREBUILT:-}" ] && [ -x "$BUILD/kc_sm90a" ]; then
  echo "using prebuilt binaries in $BUILD" | tee "$OUT/build.log"
else
  QM_SKIP_REPORT=1 "$ROOT/scripts/kernel_check/build.sh" "$BUILD" > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; echo "BUILD FAILED"; exit 1; }
fi
[ -f "$BUILD/ptxas_sm90a.log" ] && cp "$BUILD/ptxas_sm90a.log" "$OUT/"
echo "build: $(( $(date +%s) - t0 )) s"

# JIT cache big enough for every PTX kernel (first launch of each PTX kernel pays the JIT)
export CUDA_CACHE_MAXSIZE=4294967296

# ---- correctness: one process per (build, head dim) ----
pids=()
for b in $BUILDS; do
  for d in 64 128 256; do
    extra=""; [ $d = 128 ] && extra="--big"
    ( timeout "${QM_CHECK_TIMEOUT:-240}" "$BUILD/kc_$b" check --d $d $extra ${QM_CHECK_ARGS:-} > "$TMP/check_${b}_d$d.log" 2>&1
      echo "EXIT build=$b D=$d rc=$?" >> "$TMP/check_${b}_d$d.log" ) &
    pids+=($!)
  done
done
for p in "${pids[@]}"; do wait $p; done
cat "$TMP"/check_*.log > "$OUT/checks.log"
echo "checks: $(( $(date +%s) - t0 )) s"

# ---- timing: one build at a time ----
: > "$OUT/time.log"
if [ "${QM_TIME:-1}" != 0 ]; then
  for b in sm90a sm80 sm75; do
    [[ " $BUILDS " == *" $b "* ]] || continue
    timeout "${QM_TIME_TIMEOUT:-120}" "$BUILD/kc_$b" time >> "$OUT/time.log" 2>&1 || echo "TIME-FAILED build=$b rc=$?" >> "$OUT/time.log"
  done
fi
echo "total: $(( $(date +%s) - t0 )) s"

# ---- summary (last) ----
python3 - "$OUT/checks.log" "$OUT/time.log" > "$OUT/summary.txt" <<'PY'
import re, sys, collections
res = collections.OrderedDict()
bad = []
for line in open(sys.argv[1]):
    if line.startswith("EXIT") and "rc=0" not in line:
        bad.append(line.strip())
    if line.startswith("DIAG"):
        bad.append(line.strip()[:400]); continue
    if not line.startswith("RESULT"):
        if re.search(r"error|Error|FAILED", line): bad.append(line.strip())
        continue
    kv = dict(re.findall(r"(\w+)=(\S+)", line.split("|")[0]))
    key = (kv["build"], kv["fam"], kv["dt"], kv["D"])
    r = res.setdefault(key, [0, 0, 0.0, 0.0])
    r[0] += 1; r[1] += int(kv["ok"])
    r[2] = max(r[2], float(kv["rel_l2"])); r[3] = max(r[3], float(kv["max_abs"]))
    if kv["ok"] != "1": bad.append(line.strip())
print(f"{'build':6s} {'family':7s} {'dtype':5s} {'D':>4s} {'pass':>7s} {'worst relL2':>12s} {'worst maxabs':>12s}")
for (b, f, dt, d), (n, ok, rl, ma) in res.items():
    print(f"{b:6s} {f:7s} {dt:5s} {d:>4s} {ok:>3d}/{n:<3d} {rl:12.3e} {ma:12.3e}")
tot = sum(v[0] for v in res.values()); okn = sum(v[1] for v in res.values())
print(f"TOTAL {okn}/{tot} checks passed")
for b in bad[:40]: print("FAIL:", b)
print()
for line in open(sys.argv[2]):
    if line.startswith("TIME"):
        kv = dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line))
        perf = f"{kv['TFLOPS']} TFLOPS" if "TFLOPS" in kv else f"{kv.get('KV_GBps')} GB/s (K+V)"
        shape = (f"L={kv['L']} causal={kv['causal']}" if "L" in kv else f"Lk={kv['Lk']} Hq={kv['Hq']}/{kv['Hkv']} split={kv['split']}")
        print(f"{kv['build']:6s} {kv['kernel']:40s} {kv['dt']} D={kv['D']:>3s} {kv['tile']:10s} {shape:28s} {float(kv['ms']):8.3f} ms  {perf}  {kv['device']}")
    elif "FAIL" in line or "error" in line:
        print("TIME-ERROR:", line.strip())
PY
cat "$OUT/summary.txt"
rm -rf "$TMP"
