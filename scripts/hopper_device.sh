#!/bin/bash
# On an H100/H200 of the device tool: the environment of scripts/device_env.sh (the packages the check
# imports beyond torch, vLLM's FlashAttention-3 for the anchors when .device/vllm-payload is carried),
# then scripts/hopper_check.py on the cubins of registry-sm90a/ (arguments passed on).
#   bash scripts/hopper_device.sh --sanitize qm_...hd128 --bench-dtypes bf16,f16
cd "$(dirname "$0")/.." || exit 2
# shellcheck disable=SC1091
source scripts/device_env.sh
nvidia-smi -L
python3 scripts/hopper_check.py --kernels registry-sm90a --out "${OUT:-hopper-check-out}" "$@"
