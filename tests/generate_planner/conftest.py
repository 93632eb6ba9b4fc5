"""Shared fixtures: one planner cache per test session, so each (spec, target) is planned once."""

import pytest

from qimeng_serve.generate.planner import Planner
from qimeng_serve.spec import AttentionSpec
from qimeng_serve.targets import get_target


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("qimeng-cache")


@pytest.fixture
def cache_env(monkeypatch, shared_cache):
    """QIMENG_CACHE_DIR -> the session's cache (plans and nvcc results shared across tests)."""
    monkeypatch.setenv("QIMENG_CACHE_DIR", str(shared_cache))
    return shared_cache


@pytest.fixture
def plan(cache_env):
    """plan(op, arch, head_dim, dtype="f16") -> the planner's GeneratedProgram (cached for the session)."""

    def run(op: str, arch: str, head_dim: int, dtype: str = "f16"):
        spec = AttentionSpec(op, dtype, head_dim, 16 if op == "paged_decode" else 1)
        return Planner().generate(spec, get_target(arch))

    return run
