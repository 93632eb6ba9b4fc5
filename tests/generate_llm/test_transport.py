"""Transport failures through the real anthropic client: retries, time-outs, a missing key."""

from __future__ import annotations

import time

import pytest

from qimeng_serve.errors import QimengError
from tests.generate_llm.helpers import (
    GOLDEN,
    RIGHT_PROGRAM,
    RIGHT_SKETCH,
    SPEC,
    TARGET,
    fenced,
    generator,
)


def test_rate_limit_is_retried_after_the_servers_retry_after(messages_server, tmp_path):
    messages_server.error(429, "rate limited: 50 requests per minute", headers={"retry-after": "1"})
    messages_server.reply(fenced(RIGHT_SKETCH))
    messages_server.reply(fenced(RIGHT_PROGRAM))

    result = generator(messages_server, tmp_path / "llm", max_retries=2).generate(SPEC, TARGET)

    first, retried = messages_server.requests[:2]
    assert len(messages_server.requests) == 3  # the 429, its retry, the params call
    assert retried.body == first.body
    assert retried.headers["x-stainless-retry-count"] == "1"
    # the SDK's own back-off would wait at most 0.5 s before a first retry: this wait is the server's
    assert retried.at - first.at >= 0.95
    assert result.program == GOLDEN
    assert result.record.details["usage"]["requests"] == 2  # a 429 bills nothing and is no reply


@pytest.mark.parametrize("status", [500, 529])
def test_server_errors_are_retried(messages_server, tmp_path, status):
    messages_server.error(status, "Overloaded" if status == 529 else "Internal server error",
                          headers={"retry-after": "0.1"})
    messages_server.reply(fenced(RIGHT_SKETCH))
    messages_server.reply(fenced(RIGHT_PROGRAM))

    result = generator(messages_server, tmp_path / "llm", max_retries=1).generate(SPEC, TARGET)

    assert len(messages_server.requests) == 3
    assert messages_server.requests[1].body == messages_server.requests[0].body
    assert result.program == GOLDEN


def test_server_errors_beyond_max_retries_give_a_clear_error(messages_server, tmp_path):
    for _ in range(2):
        messages_server.error(500, "Internal server error", headers={"retry-after": "0.1"})

    with pytest.raises(QimengError) as exc:
        generator(messages_server, tmp_path / "llm", max_retries=1).generate(SPEC, TARGET)

    assert len(messages_server.requests) == 2
    assert exc.value.message == "the Messages API failed with HTTP 500 after 2 tries: Internal server error"
    assert "rerun later" in exc.value.fix


def test_a_time_out_is_a_clear_error(messages_server, tmp_path):
    messages_server.slow_reply(fenced(RIGHT_SKETCH), delay_s=10)
    gen = generator(messages_server, tmp_path / "llm", timeout=0.5, max_retries=0)

    started = time.monotonic()
    with pytest.raises(QimengError) as exc:
        gen.generate(SPEC, TARGET)

    assert time.monotonic() - started < 5
    assert len(messages_server.requests) == 1
    assert exc.value.message == f"the Messages API at {messages_server.url} did not answer within 0.5 s (1 try)"
    assert "QIMENG_LLM_TIMEOUT" in exc.value.fix


def test_missing_key_is_a_clear_error_before_any_request(messages_server, tmp_path):
    gen = generator(messages_server, tmp_path / "llm", api_key=None)  # and no ANTHROPIC_API_KEY (conftest)

    with pytest.raises(QimengError) as exc:
        gen.generate(SPEC, TARGET)

    assert messages_server.requests == []
    assert exc.value.message == "no Anthropic API key for the LLM generator"
    assert exc.value.fix == "set ANTHROPIC_API_KEY or pass --api-key; the offline default is --generator planner"


def test_the_key_and_endpoint_come_from_the_environment(messages_server, tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-from-env")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", messages_server.url)
    monkeypatch.setenv("QIMENG_LLM_MODEL", "claude-sonnet-5-5")
    monkeypatch.setenv("QIMENG_LLM_CACHE", str(tmp_path / "env-cache"))
    messages_server.reply(fenced(RIGHT_SKETCH))
    messages_server.reply(fenced(RIGHT_PROGRAM))

    from qimeng_serve.generate.llm import LLMGenerator

    result = LLMGenerator.from_options().generate(SPEC, TARGET)

    assert messages_server.requests[0].headers["authorization"] == "Bearer sk-from-env"
    assert messages_server.requests[0].body["model"] == "claude-sonnet-5-5"
    assert len(list((tmp_path / "env-cache").rglob("*.json"))) == 2
    assert result.record.details["model"] == "claude-sonnet-5-5"


def test_an_unknown_model_is_a_clear_error(messages_server, tmp_path):
    messages_server.error(404, "model: claude-nope")

    with pytest.raises(QimengError) as exc:
        generator(messages_server, tmp_path / "llm", model="claude-nope").generate(SPEC, TARGET)

    assert exc.value.message == "the Messages API does not know model 'claude-nope': model: claude-nope"
    assert "QIMENG_LLM_MODEL" in exc.value.fix
