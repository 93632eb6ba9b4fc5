#!/bin/bash
# Session 22, run 11 (H200): `qimeng-serve validate` on the sm_90 f16 bundle (D 128) built with this session's code
# (`qimeng-serve build --arch sm_90 --dtype f16 --head-dim 128 --registry .device/reg-s22b`): the dense D 128 sm90a
# kernel with O's bulk store and the retiring counter, its `_long` kernel, the paged prefill and decode, and the
# portable sm_90 kernels, through the product path. Predicted: every case passes.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
timeout 250 python3 -m qimeng_serve validate --registry .device/reg-s22b --arch sm_90 > "$OUT/validate-sm_90.log" 2>&1
echo "validate sm_90 rc=$?"; grep -iE "ramp|fail|passed|error" "$OUT/validate-sm_90.log" | tail -14
