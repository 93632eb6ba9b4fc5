"""Fixtures of the LLM generator tests: a scripted Messages API server and a generator pointed at it."""

from __future__ import annotations

import pytest

from tests.generate_llm.messages_server import MessagesServer


@pytest.fixture
def messages_server():
    server = MessagesServer().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No developer key, endpoint or cache leaks into a test; compiled kernels cache under tmp_path."""
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "QIMENG_LLM_MODEL",
                 "QIMENG_LLM_CACHE", "QIMENG_LLM_MAX_RETRIES", "QIMENG_LLM_TIMEOUT", "ANTHROPIC_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("QIMENG_CACHE_DIR", str(tmp_path / "qimeng-cache"))
