"""Taking the code block out of a reply, and resolving the generator's settings from arguments and env."""

from __future__ import annotations

from pathlib import Path

import pytest

from qimeng_serve.errors import QimengError
from qimeng_serve.generate.llm_client import DEFAULT_MODEL, LLMSettings
from qimeng_serve.generate.llm_prompts import sketch_form
from qimeng_serve.generate.llm_reply import Rejected, Reply, fenced_block
from tests.generate_llm.helpers import GOLDEN, RIGHT_SKETCH


def _reply(text: str, stop_reason: str = "end_turn") -> Reply:
    return Reply(text, stop_reason, "claude-opus-5-5", 1, 1, cached=False)


def test_the_last_tagged_block_is_taken():
    text = "Draft:\n```tl\nprogram a\n```\nFinal:\n```tl\nprogram b\n```\n"
    assert fenced_block(_reply(text), ("tl",), "the sketch") == "program b\n"


def test_a_single_untagged_block_is_taken_but_a_block_of_another_language_is_not():
    assert fenced_block(_reply("```\nprogram a\n```"), ("tl",), "the sketch") == "program a\n"
    with pytest.raises(Rejected) as exc:
        fenced_block(_reply("```python\nprint(1)\n```"), ("tl",), "the sketch")
    assert exc.value.message == "the reply has no ```tl block (found: ```python)"


def test_a_reply_cut_off_at_max_tokens_says_so():
    with pytest.raises(Rejected) as exc:
        fenced_block(_reply("```tl\nprogram a\nop dense_pre", "max_tokens"), ("tl",), "the sketch")
    assert exc.value.message == "the reply was cut off at max_tokens before its code block closed"


def test_thinking_blocks_are_not_part_of_the_text():
    reply = Reply.from_response({"content": [{"type": "thinking", "thinking": "```tl\nwrong\n```", "signature": "s"},
                                             {"type": "text", "text": "```tl\nright\n```"}],
                                 "stop_reason": "end_turn", "model": "m",
                                 "usage": {"input_tokens": 3, "output_tokens": 4}}, cached=False)
    assert fenced_block(reply, ("tl",), "x") == "right\n"
    assert (reply.input_tokens, reply.output_tokens) == (3, 4)


def test_sketch_form_drops_params_and_options_and_keeps_statements():
    sketch = sketch_form(GOLDEN)
    assert sketch.is_sketch and sketch.kernels[0].name == "attn"
    assert "with " not in RIGHT_SKETCH and "Reshape P <- S" in RIGHT_SKETCH
    assert sketch_form(sketch) == sketch


def test_settings_precedence_and_defaults(monkeypatch, tmp_path):
    s = LLMSettings.resolve()
    assert s.model == DEFAULT_MODEL and s.api_key is None and s.base_url is None
    assert s.cache_dir == tmp_path / "qimeng-cache" / "llm"  # conftest sets QIMENG_CACHE_DIR
    monkeypatch.delenv("QIMENG_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert LLMSettings.resolve().cache_dir == tmp_path / "xdg" / "qimeng-serve" / "llm"
    monkeypatch.setenv("QIMENG_LLM_MODEL", "claude-haiku-5-5")
    monkeypatch.setenv("QIMENG_LLM_CACHE", "~/llm-replies")
    monkeypatch.setenv("QIMENG_LLM_TIMEOUT", "90")
    s = LLMSettings.resolve()
    assert (s.model, s.cache_dir, s.timeout_s) == ("claude-haiku-5-5", Path.home() / "llm-replies", 90.0)
    assert LLMSettings.resolve(model="claude-sonnet-5-5", timeout=5).model == "claude-sonnet-5-5"


def test_bad_numbers_are_clear_errors(monkeypatch):
    monkeypatch.setenv("QIMENG_LLM_TIMEOUT", "ten minutes")
    with pytest.raises(QimengError) as exc:
        LLMSettings.resolve()
    assert exc.value.message == "QIMENG_LLM_TIMEOUT='ten minutes' is not a number"
    with pytest.raises(QimengError):
        LLMSettings.resolve(timeout=60, max_retries=-1)
