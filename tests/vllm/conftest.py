"""Fixtures for the vLLM plugin's CPU tests: a real vLLM 0.33 (installed by scripts/setup.sh without its
CUDA dependencies), a small registry, a tiny Llama config, and vLLM's own config objects."""

from __future__ import annotations

import os

import pytest

from qimeng_serve.vllm_plugin.harness import new_vllm_config, write_model_config
from tests.vllm.serving_registry import make_serving_registry

SKIP_REASON = "vLLM is not installed: scripts/setup.sh installs vllm 0.33 for these tests (unless QIMENG_SKIP_VLLM=1)"
QIMENG_VARS = ("QIMENG_REGISTRY", "QIMENG_REPO", "QIMENG_REVISION", "QIMENG_LOCK", "QIMENG_CAPABILITY")


@pytest.fixture(scope="session")
def serving_registry(tmp_path_factory):
    return make_serving_registry(tmp_path_factory.mktemp("serving") / "registry")


@pytest.fixture
def plugin_env(monkeypatch, serving_registry):
    """QIMENG_REGISTRY = the test registry, no other QIMENG_* from the caller, no artifact cached."""
    from qimeng_serve.vllm_plugin import artifacts

    for var in QIMENG_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("QIMENG_REGISTRY", str(serving_registry))
    artifacts.clear_cache()
    yield serving_registry
    artifacts.clear_cache()


@pytest.fixture(scope="session")
def registered():
    """The plugin registered the way vLLM does it: load_general_plugins() runs our entry point."""
    pytest.importorskip("vllm", reason=SKIP_REASON)
    from vllm.plugins import load_general_plugins

    load_general_plugins()
    from vllm.v1.attention.backends.registry import AttentionBackendEnum

    return AttentionBackendEnum


@pytest.fixture
def make_vllm_config(tmp_path, registered):
    """new_vllm_config for a tiny Llama with the given head counts."""

    def make(*, heads=8, kv_heads=2, head_dim=128, **kwargs):
        model = write_model_config(tmp_path / f"model-{heads}-{kv_heads}-{head_dim}", heads=heads, kv_heads=kv_heads,
                                   head_dim=head_dim)
        return new_vllm_config(model, device="cpu", **kwargs)

    return make


def subprocess_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in QIMENG_VARS and k != "VLLM_PLUGINS"}
    env.update(extra)
    return env
