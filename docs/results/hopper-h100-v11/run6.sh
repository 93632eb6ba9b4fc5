#!/bin/bash
# Session 13, run 6: where run 4's illegal address comes from. The three paged D 256 candidates that --tune
# measured, compiled here as tune compiles them (compile_job + write_bundle_for, one single-kernel bundle
# each in .device/reg-cand{0,1,2}): 0 = 128 x 80 gemms + ping-pong (the shipped program), 1 = 128 x 64
# softmax + ping-pong (faulted in run 4), 2 = 128 x 64 gemms + ping-pong. Run 5 validated 1 and 2 through
# hopper_check's launcher, clean under memcheck and racecheck.
# A: `qimeng-serve validate` on candidate 1's bundle alone, in a fresh process (KernelSet's launch).
# B: one process validating 0, then 1, then 2 (what --tune does).
# Predicted: A passes. If B faults on 1, the fault comes from running one candidate after another in one
# process (state kept between KernelSets), not from the kernel.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
# shellcheck disable=SC1091
source scripts/device_env.sh
python3 -m qimeng_serve validate --registry .device/reg-cand1 --arch sm_90 2>&1 | grep -E "checks|rror|passed|failed" | head -5
echo "== B: 0, 1, 2 in one process"
python3 - <<'PY' 2>&1 | tail -12
from pathlib import Path
from qimeng_serve.validate import validate_bundle
for i in range(3):
    b = next(Path(f".device/reg-cand{i}").glob("sm_90/bf16/*.safetensors"))
    r = validate_bundle(b, write=False, prefer="sass")
    print(i, sum(c.ok for c in r.checks), "/", len(r.checks), "passed", flush=True)
PY
