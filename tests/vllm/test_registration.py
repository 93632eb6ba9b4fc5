"""Registration and name resolution against the real vLLM 0.33 package."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import distribution

import pytest

from qimeng_serve.vllm_plugin.harness import write_model_config
from tests.conftest import REPO
from tests.vllm.conftest import SKIP_REASON, subprocess_env

vllm = pytest.importorskip("vllm", reason=SKIP_REASON)


def _run_driver(name: str, *args: str, **env) -> dict:
    proc = subprocess.run([sys.executable, "-m", "tests.vllm.drivers", name, *args], cwd=REPO, check=False, capture_output=True,
                          text=True, timeout=600, env=subprocess_env(**env))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"driver {name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return json.loads(lines[-1][len("RESULT "):]) | {"stderr": proc.stderr}


def test_the_installed_distribution_declares_both_entry_points():
    from qimeng_serve.vllm_plugin import registration

    eps = {(e.group, e.name): e for e in distribution("qimeng-serve").entry_points}
    general = eps[("vllm.general_plugins", "qimeng")]
    platform = eps[("vllm.platform_plugins", "qimeng_register")]
    assert general.load() is registration.register
    assert platform.load() is registration.platform_hook


def test_general_plugin_adds_the_qimeng_member(registered):
    from qimeng_serve.vllm_plugin import registration
    from qimeng_serve.vllm_plugin.backend import QimengAttentionBackend

    enum = registered
    member = enum["QIMENG"]
    assert member.get_class() is QimengAttentionBackend
    assert member.get_path() == "qimeng_serve.vllm_plugin.backend.QimengAttentionBackend"
    # Attention.__init__ looks the layer's backend up by get_name(): it must name the member
    assert QimengAttentionBackend.get_name() == "QIMENG" and enum[QimengAttentionBackend.get_name()] is member
    # by value too (how a pickled member comes back); no alias of TORCH_SDPA's "" value
    assert enum(member.value) is member and enum("") is enum.TORCH_SDPA
    registration.register()
    assert registration.platform_hook() is None
    assert enum["QIMENG"] is member and list(enum.__members__).count("QIMENG") == 1
    assert not enum.CUSTOM.is_overridden()  # a vLLM that can add names leaves the CUSTOM slot to others
    assert registration.supports_named_backends() and registration.cli_name() == "qimeng"


@pytest.mark.parametrize("typed", ["qimeng", "QIMENG", "Qimeng"])
def test_attention_config_resolves_the_name(registered, typed):
    from vllm.config import AttentionConfig

    assert AttentionConfig(backend=typed).backend is registered.QIMENG


def test_engine_args_resolve_the_name(registered, tmp_path):
    from vllm.engine.arg_utils import EngineArgs

    args = EngineArgs(model=str(tmp_path), attention_backend="qimeng")
    assert args.attention_backend == "qimeng"  # a plain string until the engine config is built (below)


@pytest.fixture(scope="module")
def engine_run(tmp_path_factory, serving_registry):
    model = write_model_config(tmp_path_factory.mktemp("engine") / "model")
    # VLLM_TARGET_DEVICE=cpu: vLLM's CPU platform, so the engine config can be built without a GPU
    return _run_driver("engine_config", str(model), VLLM_TARGET_DEVICE="cpu", QIMENG_REGISTRY=str(serving_registry))


def test_cli_parser_and_engine_config_resolve_the_name(engine_run):
    assert engine_run["member"] == "QIMENG"
    assert engine_run["class"] == "qimeng_serve.vllm_plugin.backend.QimengAttentionBackend"


def test_serving_imports_nothing_the_gpu_machines_lack(engine_run):
    """GPU machines have torch, vLLM's payload, safetensors and jsonschema, not the build toolchain (lark,
    nvidia-cutlass) or the CLI's typer and rich: the driver refused those to qimeng_serve's modules."""
    assert engine_run["served"] == ["qimeng-default-sm_90-f16.safetensors", 512]


def test_a_spawned_child_unpickles_the_member_thanks_to_the_platform_hook():
    got = _run_driver("spawn")
    assert got["parent"] == "QIMENG"
    assert got["with_hook"] == {"exitcode": 0, "member": "QIMENG"}
    # the control: allowed only the general plugin (no platform hook), the child cannot unpickle the member
    assert got["general_only"]["exitcode"] != 0
    assert "is not a valid AttentionBackendEnum" in got["stderr"]
