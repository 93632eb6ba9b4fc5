#!/bin/bash
# Sourced on an H100/H200 of the device tool, from the repository root: the Python packages qimeng_serve
# imports beyond torch (unpacked from .device/wheels) and, when .device/vllm-payload is carried, vLLM 0.26
# for FlashAttention-3's anchors. Sets PYTHONPATH; says when FA3 will be missing.
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
