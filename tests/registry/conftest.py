"""Fixtures for registry tests: a local Hub-compatible server, an isolated HF cache, small bundles.

The huggingface_hub client is the real one. HF_HUB_DISABLE_XET=1 sends uploads through the legacy LFS
protocol the fake Hub speaks (Xet would go to a CAS service); HF_HOME and the hub cache live in tmp.
"""

from __future__ import annotations

import os

import pytest

from tests.registry.bundles import make_registry
from tests.registry.hub_server import FakeHub

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

TOKEN = "hf_test_publisher"


@pytest.fixture
def hf_env(tmp_path, monkeypatch):
    """An isolated HF home and cache, online, Xet off, a write token; no QIMENG_* from the caller."""
    from huggingface_hub import constants

    home = tmp_path / "hf-home"
    cache = home / "hub"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    for var in ("QIMENG_REGISTRY", "QIMENG_REPO", "QIMENG_REVISION", "QIMENG_LOCK", "QIMENG_ALLOWED_REPOS",
                "QIMENG_ALLOW_UNTRUSTED", "QIMENG_HUB_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    return cache


@pytest.fixture
def hub(hf_env):
    server = FakeHub()
    yield server
    server.stop()


@pytest.fixture
def local_registry(tmp_path):
    """sm_75 f16, sm_80 f16 (+bench) and bf16, sm_90 f16: all validated."""
    return make_registry(tmp_path / "built")
