#!/bin/bash
# On an H100/H200 of the device tool: the Python packages the check imports beyond torch (from
# .device/wheels), vLLM's FlashAttention-3 for the anchors when .device/vllm-payload is carried,
# then scripts/hopper_check.py on the cubins of registry-sm90a/ (arguments passed on).
#   bash scripts/hopper_device.sh --sanitize qm_...hd128 --bench-dtypes bf16,f16
cd "$(dirname "$0")/.." || exit 2
mkdir -p /tmp/py
for w in .device/wheels/*.whl; do [ -f "$w" ] && python3 -m zipfile -e "$w" /tmp/py; done
export PYTHONPATH="$PWD:/tmp/py${PYTHONPATH:+:$PYTHONPATH}"
if [ -f .device/vllm-payload/install_on_gpu.sh ]; then
  # shellcheck disable=SC1091
  source .device/vllm-payload/install_on_gpu.sh /tmp/vsite >/dev/null 2>&1 || echo "vLLM payload failed: no FA3 anchor"
else
  # prepare.sh writes the archive; install_on_gpu.sh is copied in from the payload tool beside it
  echo "no .device/vllm-payload/install_on_gpu.sh carried: no FA3 anchor"
fi
nvidia-smi -L
python3 scripts/hopper_check.py --kernels registry-sm90a --out "${OUT:-hopper-check-out}" "$@"
