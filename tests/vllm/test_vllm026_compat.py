"""The plugin against vLLM 0.26 (the release the GPU machines run, torch 2.11), on the CPU.

vLLM 0.26 cannot be installed beside 0.33, so its wheel is unpacked into a cache folder and put first
on PYTHONPATH of a child interpreter. `bash scripts/vllm026_check.sh` downloads it (300 MB, once) and
runs this test; afterwards the test also runs in the normal suite (about 20 s). Without the unpacked
wheel it skips: a clean CI checkout would spend more time downloading than testing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qimeng_serve.vllm_plugin.harness import write_model_config
from tests.conftest import REPO
from tests.vllm.conftest import SKIP_REASON, subprocess_env

vllm = pytest.importorskip("vllm", reason=SKIP_REASON)

SITE = Path(os.environ.get("QIMENG_VLLM026_SITE", Path.home() / ".cache" / "qimeng-serve" / "vllm-0.26.0" / "site"))

pytestmark = pytest.mark.skipif(not (SITE / "vllm" / "__init__.py").is_file(),
                                reason=f"vLLM 0.26 is not unpacked in {SITE}: run `bash scripts/vllm026_check.sh`")


def test_plugin_serves_vllm_026_through_the_custom_slot(tmp_path, serving_registry):
    model = write_model_config(tmp_path / "model")
    env = subprocess_env(PYTHONPATH=f"{SITE}{os.pathsep}{REPO}", QIMENG_REGISTRY=str(serving_registry))
    proc = subprocess.run([sys.executable, "-m", "tests.vllm.drivers", "compat_v026", str(model)], cwd=REPO, check=False,
                          capture_output=True, text=True, timeout=600, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-5000:]
    got = json.loads(lines[-1][len("RESULT "):])
    assert got["version"] == "0.26.0" and got["vllm_file"].startswith(str(SITE))
    assert got["named_backends"] is False and got["get_name"] == "CUSTOM" and got["lookup_is_custom"]
    assert got["custom_class"] == "QimengAttentionBackend" and got["config_custom"] == "CUSTOM"
    assert got["qimeng_name"].startswith("refused") and "Unknown attention backend" in got["qimeng_name"]
    assert got["kv_shape_abstract_in_base"] is True and got["abstract_left"] == []
    assert got["reasons_fp16"] == [] and any("bf16 needs compute capability 8.0" in r for r in got["reasons_bf16_turing"])
    assert got["split"] == [2, 1, [2, 47]] and got["layer_backend"] == "CUSTOM"
    assert got["hook_registered"] is True  # the platform hook alone registers (what a spawned worker relies on)
    assert got["custom_left_to_other"] is True
    assert got["script_case_ok"] is True
    assert got["emulated"] == {"mixed_ok": True, "padded_ok": True, "calls": ["paged_decode", "paged_prefill"],
                               "padding_untouched": True}
