#!/bin/bash
# Session 21, run 6 (H200): the product path's validation with the new "ramp" cases (qimeng_serve.validate.key_ramp):
# `qimeng-serve validate` on the sm_90 f16 bundle (portable SM80-recipe kernels through compute_90 PTX, and the sm90a
# kernels with rescale=lazy from their SASS) and the sm_75 f16 bundle (compute_75 PTX JIT: correctness, not Turing
# speed). Both built here with `qimeng-serve build --arch sm_90|sm_75 --dtype f16 --head-dim 128 --registry
# .device/reg-s21 -j 2`. Predicted: every kernel passes every case, the ramp cases included (the eager kernels'
# running max is exact; the lazy ones passed them in runs 1-2).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
for arch in sm_90 sm_75; do
  timeout 250 python3 -m qimeng_serve validate --registry .device/reg-s21 --arch $arch > "$OUT/validate-$arch.log" 2>&1
  echo "validate $arch rc=$?"; grep -iE "ramp|fail|passed|error" "$OUT/validate-$arch.log" | tail -12
done
