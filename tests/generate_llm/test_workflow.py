"""The two-call workflow against the scripted Messages API: real client, real checker, real interpreter."""

from __future__ import annotations

import pytest

from qimeng_serve.errors import QimengError
from qimeng_serve.generate.base import make_generator
from qimeng_serve.generate.llm import LLMGenerator
from qimeng_serve.generate.llm_gates import InterpreterCheck, check_program, interpret
from qimeng_serve.generate.llm_prompts import sketch_form
from qimeng_serve.generate.llm_reply import Rejected
from qimeng_serve.spec import AttentionSpec
from qimeng_serve.targets import get_target
from qimeng_serve.tl.checker import check_tl, render_all
from qimeng_serve.tl.parser import parse_tl, parse_tl_file
from qimeng_serve.tl.printer import print_tl
from tests.conftest import GOLDEN_DIR, REPO
from tests.generate_llm.helpers import (
    GOLDEN,
    RIGHT_PROGRAM,
    RIGHT_SKETCH,
    SPEC,
    TARGET,
    WRONG_RESCALE_PROGRAM,
    WRONG_SKETCH,
    fenced,
    generator,
)


def test_wrong_sketch_goes_back_with_the_checkers_exact_message(messages_server, tmp_path):
    messages_server.reply(fenced(WRONG_SKETCH))
    messages_server.reply(fenced(RIGHT_SKETCH))
    messages_server.reply(fenced(RIGHT_PROGRAM))

    result = generator(messages_server, tmp_path / "llm").generate(SPEC, TARGET)

    assert len(messages_server.requests) == 3
    expected = render_all([d for d in check_tl(parse_tl(WRONG_SKETCH), TARGET, SPEC, form="sketch")
                           if d.severity == "error"], "sketch.tl")
    assert "gemm operand S is an accumulator" in expected  # the Reshape rule fired
    second = messages_server.requests[1].body["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert second[1]["content"] == fenced(WRONG_SKETCH)  # the rejected reply stays in the conversation
    assert "The checker says:" in second[2]["content"]
    assert expected in second[2]["content"]
    # the accepted program is the golden one, and the record says how it got there
    assert result.program == GOLDEN
    assert result.text == print_tl(GOLDEN)
    assert result.sketch_text == RIGHT_SKETCH
    assert [(a.stage, a.verdict.split(":")[0]) for a in result.record.attempts] == [
        ("sketch", "checker"), ("sketch", "ok"), ("params", "ok")]
    assert result.record.generator == "llm"
    interp = result.record.details["interpreter"]
    assert interp["max_rel_error"] < 1e-12  # float64 inputs: exact up to rounding
    assert [c["spec"] for c in interp["cases"]] == ["paged_prefill_f16_hd64_g4_causal",
                                                    "paged_prefill_f16_hd64_g4_full_win71"]


def test_params_call_is_a_fresh_conversation_that_carries_the_checked_sketch(messages_server, tmp_path):
    # a sketch reply that carries params and options anyway: they are dropped, the statements kept
    messages_server.reply(fenced(RIGHT_PROGRAM), thinking="Let me plan the tiles first.")
    messages_server.reply(fenced(RIGHT_PROGRAM))

    result = generator(messages_server, tmp_path / "llm").generate(SPEC, TARGET)

    first, second = (r.body for r in messages_server.requests)
    assert (REPO / "docs" / "tl.md").read_text().strip() in first["system"]  # the TL reference is sent
    opening = first["messages"][0]["content"]
    assert "program dense_prefill_sm80" in opening  # the example is another family...
    assert "program paged_prefill_sm80" not in opening  # ...never the answer
    assert "`sm_80` (Ampere" in opening and "op `paged_prefill`, input dtype f16, head size D = 64" in opening
    assert len(second["messages"]) == 1
    assert f"```tl\n{RIGHT_SKETCH.rstrip()}\n```" in second["messages"][0]["content"]
    assert "params {" not in RIGHT_SKETCH
    assert first["model"] == "claude-opus-5-5" and first["max_tokens"] == 16000
    assert "temperature" not in first  # current models refuse sampling parameters
    headers = messages_server.requests[0].headers  # this SDK sends the key as a bearer token
    assert "sk-test-key" in (headers.get("x-api-key", ""), headers.get("authorization", "").removeprefix("Bearer "))
    assert result.program == GOLDEN


def test_program_that_passes_the_checker_but_misses_the_reference_gets_the_interpreters_message(
        messages_server, tmp_path):
    messages_server.reply(fenced(RIGHT_SKETCH))
    messages_server.reply(fenced(WRONG_RESCALE_PROGRAM))
    messages_server.reply(fenced(RIGHT_PROGRAM))

    result = generator(messages_server, tmp_path / "llm").generate(SPEC, TARGET)

    wrong = check_program(WRONG_RESCALE_PROGRAM, SPEC, TARGET)  # the checker accepts it
    with pytest.raises(Rejected) as rejected:
        interpret(wrong, WRONG_RESCALE_PROGRAM, SPEC, InterpreterCheck())
    feedback = messages_server.requests[2].body["messages"][-1]["content"]
    assert "The interpreter says:" in feedback
    assert rejected.value.message in feedback
    assert "differs from the float64 reference attention" in feedback
    # lengths around the program's own tiles (BLOCK_M 128, BLOCK_N 64 here): 131 rows, 264 keys
    assert "ragged chunked prefill: seqlen_q=[1, 17, 131], seqlen_k=[1, 90, 264]" in feedback
    assert result.program == GOLDEN
    assert [a.verdict.split(":")[0] for a in result.record.attempts] == ["ok", "interpreter", "ok"]


def test_malformed_replies_are_fed_back_and_retried(messages_server, tmp_path):
    messages_server.reply("I would write the sketch like the example, with a Reshape.")  # no code block
    messages_server.reply(None, stop_reason="refusal")  # empty content, refused
    messages_server.reply(fenced(RIGHT_SKETCH))
    messages_server.reply(fenced(RIGHT_PROGRAM))

    result = generator(messages_server, tmp_path / "llm").generate(SPEC, TARGET)

    assert len(messages_server.requests) == 4
    turn2 = messages_server.requests[1].body["messages"]
    assert "The reply format says:" in turn2[-1]["content"]
    assert "the reply has no ```tl block (found: no fenced block)" in turn2[-1]["content"]
    turn3 = messages_server.requests[2].body["messages"]
    assert turn3[3]["content"] == "(a reply with no text; stop_reason=refusal)"  # never an empty assistant turn
    assert "the reply stopped with stop_reason=refusal" in turn3[-1]["content"]
    assert result.program == GOLDEN


def test_gives_up_with_the_last_message_and_the_number_of_attempts(messages_server, tmp_path):
    messages_server.reply(fenced(WRONG_SKETCH))
    messages_server.reply(fenced(WRONG_SKETCH))

    gen = generator(messages_server, tmp_path / "llm", retries_per_call=1)
    with pytest.raises(QimengError) as exc:
        gen.generate(SPEC, TARGET)

    assert len(messages_server.requests) == 2
    assert "no acceptable sketch in 2 attempt(s)" in exc.value.message
    assert "gemm operand S is an accumulator" in exc.value.message
    assert "--generator planner" in exc.value.fix


def test_a_syntax_error_goes_back_with_line_and_caret(messages_server, tmp_path):
    broken = RIGHT_SKETCH.replace("Reshape P <- S", "Reshape P <= S")
    messages_server.reply(fenced(broken))
    messages_server.reply(fenced(RIGHT_SKETCH))
    messages_server.reply(fenced(RIGHT_PROGRAM))

    generator(messages_server, tmp_path / "llm").generate(SPEC, TARGET)

    feedback = messages_server.requests[1].body["messages"][-1]["content"]
    line = next(i for i, text in enumerate(broken.splitlines(), 1) if "Reshape P <= S" in text)
    assert "The parser says:" in feedback
    assert f"sketch.tl:{line}:" in feedback and "    Reshape P <= S" in feedback and "^" in feedback


def test_make_generator_builds_the_llm_generator_from_cli_options(tmp_path):
    gen = make_generator("llm", model="claude-sonnet-5-5", api_key="k", base_url="http://127.0.0.1:9",
                         cache_dir=tmp_path, max_retries=1, translate=False, console=None,
                         jobs=4)  # an option of another generator: ignored
    assert isinstance(gen, LLMGenerator) and gen.name == "llm"
    assert gen.settings.model == "claude-sonnet-5-5" and gen.settings.max_retries == 1
    assert gen.settings.cache_dir == tmp_path


@pytest.mark.parametrize("golden, spec, arch", [
    ("paged_decode_sm75.tl", AttentionSpec("paged_decode", "f16", 64, gqa_group=8, causal=True), "sm_75"),
    ("paged_decode_sm80.tl", AttentionSpec("paged_decode", "bf16", 64, gqa_group=4, decode_query_len=2), "sm_90"),
    ("dense_prefill_sm75.tl", AttentionSpec("dense_prefill", "f16", 64, gqa_group=2, causal=False), "sm_75"),
])
def test_every_family_runs_the_whole_path(messages_server, tmp_path, golden, spec, arch):
    program = parse_tl_file(GOLDEN_DIR / golden)
    messages_server.reply(fenced(print_tl(sketch_form(program))))
    messages_server.reply(fenced((GOLDEN_DIR / golden).read_text()))

    result = generator(messages_server, tmp_path / "llm").generate(spec, get_target(arch))

    assert result.program == program
    interp = result.record.details["interpreter"]
    assert interp["max_rel_error"] < 1e-12 and len(interp["cases"]) == 2
    if spec.op == "paged_decode":  # several KV splits, so the combine kernel really merges
        first = interp["cases"][0]
        assert max(first["seqlen_k"]) > 512 and max(first["seqlen_q"]) == spec.decode_query_len
    assert f"op `{spec.op}`" in messages_server.requests[0].body["messages"][0]["content"]
