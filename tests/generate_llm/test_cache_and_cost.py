"""The reply cache (a rerun sends nothing) and the token / cost accounting."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from qimeng_serve.generate.llm_cache import ReplyCache, request_key
from qimeng_serve.generate.llm_cost import PRICES, CallUsage, Ledger, price_of
from tests.generate_llm.helpers import (
    RIGHT_PROGRAM,
    RIGHT_SKETCH,
    SPEC,
    TARGET,
    WRONG_SKETCH,
    fenced,
    generator,
)


def test_rerun_is_answered_from_the_cache_with_the_identical_program(messages_server, tmp_path):
    cache = tmp_path / "llm"
    messages_server.reply(fenced(WRONG_SKETCH))
    messages_server.reply(fenced(RIGHT_SKETCH))
    messages_server.reply(fenced(RIGHT_PROGRAM))
    first = generator(messages_server, cache).generate(SPEC, TARGET)
    assert len(messages_server.requests) == 3

    # a fresh generator, nothing scripted, and not even a key: every reply comes from disk
    second = generator(messages_server, cache, api_key=None).generate(SPEC, TARGET)

    assert len(messages_server.requests) == 3
    assert second.text == first.text and second.sketch_text == first.sketch_text
    assert second.record.attempts == first.record.attempts
    usage = second.record.details["usage"]
    assert usage["requests"] == 0 and usage["cached_replies"] == 3 and usage["cost_usd"] == 0.0
    entries = sorted(cache.rglob("*.json"))
    assert len(entries) == 3
    for path in entries:  # plain JSON: what was sent and what came back
        entry = json.loads(path.read_text())
        assert entry["key"] == path.stem
        assert entry["request"]["model"] == "claude-opus-5-5"
        assert entry["response"]["type"] == "message"


def test_another_model_is_another_cache_entry(messages_server, tmp_path):
    messages_server.reply(fenced(RIGHT_SKETCH))
    messages_server.reply(fenced(RIGHT_PROGRAM))
    generator(messages_server, tmp_path / "llm").generate(SPEC, TARGET)
    messages_server.reply(fenced(RIGHT_SKETCH))
    messages_server.reply(fenced(RIGHT_PROGRAM))

    generator(messages_server, tmp_path / "llm", model="claude-sonnet-5-5").generate(SPEC, TARGET)

    assert len(messages_server.requests) == 4
    assert messages_server.requests[2].body["model"] == "claude-sonnet-5-5"


def test_token_and_cost_accounting_sums_every_request(messages_server, tmp_path):
    messages_server.reply(fenced(WRONG_SKETCH), input_tokens=5200, output_tokens=900)
    messages_server.reply(fenced(RIGHT_SKETCH), input_tokens=7400, output_tokens=1100)
    messages_server.reply(fenced(RIGHT_PROGRAM), input_tokens=6100, output_tokens=1500)
    console_text = io.StringIO()
    console = Console(file=console_text, width=200)

    result = generator(messages_server, tmp_path / "llm", console=console).generate(SPEC, TARGET)

    usage = result.record.details["usage"]
    assert usage["input_tokens"] == 5200 + 7400 + 6100
    assert usage["output_tokens"] == 900 + 1100 + 1500
    expected = (18700 * 4.0 + 3500 * 20.0) / 1e6  # claude-opus-5-5: $4 / $20 per MTok
    assert usage["cost_usd"] == pytest.approx(expected)
    assert [c["label"] for c in usage["calls"]] == ["sketch 1", "sketch 2", "params 1"]
    assert usage["calls"][0]["cost_usd"] == pytest.approx((5200 * 4 + 900 * 20) / 1e6)
    printed = console_text.getvalue()
    assert "LLM usage: 3 request(s), 0 reply(ies) from the cache; 18,700 input + 3,500 output tokens; " \
           f"~${expected:.4f} (estimate)" in printed
    assert "sketch reply 1/4: rejected by the checker" in printed


def test_a_model_without_a_price_reports_unknown_cost_not_zero(messages_server, tmp_path):
    messages_server.reply(fenced(RIGHT_SKETCH))
    messages_server.reply(fenced(RIGHT_PROGRAM))

    result = generator(messages_server, tmp_path / "llm", model="claude-mythos-5-2").generate(SPEC, TARGET)

    assert result.record.details["usage"]["cost_usd"] is None
    assert result.record.details["usage"]["input_tokens"] == 2000


def test_price_table():
    assert price_of("claude-haiku-4-5-20251001") is PRICES["claude-haiku-4-5"]  # a dated snapshot
    assert price_of("claude-unknown-9") is None
    haiku = PRICES["claude-haiku-5-5"]
    assert haiku.cost(100_000, 1000) == pytest.approx((100_000 * 0.10 + 1000 * 0.50) / 1e6)
    assert haiku.cost(200_000, 1000) == pytest.approx((200_000 * 0.50 + 1000 * 2.50) / 1e6)  # long prompt tier
    ledger = Ledger([CallUsage("a", "claude-opus-5-5", 1000, 100, cached=False),
                     CallUsage("b", "claude-opus-5-5", 9999, 999, cached=True)])
    assert (ledger.input_tokens, ledger.output_tokens) == (1000, 100)
    assert ledger.cost_usd == pytest.approx((1000 * 4 + 100 * 20) / 1e6)


def test_an_unreadable_cache_entry_is_a_miss_and_is_rewritten(tmp_path):
    cache = ReplyCache(tmp_path)
    request = {"model": "m", "max_tokens": 5, "system": "s", "messages": [{"role": "user", "content": "x"}]}
    key = request_key(request, "v1")
    assert key != request_key(request, "v2") and key != request_key({**request, "max_tokens": 6}, "v1")
    path = cache.store(key, request, {"type": "message", "content": []})
    assert cache.load(key) == {"type": "message", "content": []}
    path.write_text('{"key": "' + key + '", "response": ')  # a truncated file
    assert cache.load(key) is None
    cache.store(key, request, {"type": "message", "content": [{"type": "text", "text": "ok"}]})
    assert cache.load(key)["content"][0]["text"] == "ok"
