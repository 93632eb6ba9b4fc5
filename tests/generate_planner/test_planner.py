"""The planner's search: what it enumerates, what the checker and the lowering prune, the interpreter
gate, determinism, the record and the cache."""

import pytest

from qimeng_serve.errors import QimengError, SpecError
from qimeng_serve.generate import sketches
from qimeng_serve.generate.base import make_generator
from qimeng_serve.generate.interpret_gate import interpret
from qimeng_serve.generate.param_space import ParamPoint
from qimeng_serve.generate.planner import Planner
from qimeng_serve.generate.sketches import Sketch, program_text
from qimeng_serve.spec import AttentionSpec
from qimeng_serve.targets import get_target
from qimeng_serve.tl.checker import check_tl
from qimeng_serve.tl.parser import parse_tl

SM75, SM90 = get_target("sm_75"), get_target("sm_90")


@pytest.fixture(scope="module")
def turing_d256():
    """One full search (no cache): dense prefill, D = 256, on Turing's 64 KB of shared memory."""
    return Planner(use_cache=False).search(AttentionSpec("dense_prefill", "f16", 256), SM75)


def test_counts_add_up(turing_d256):
    s = turing_d256
    c = s.counts
    assert c["sketches"] == 96
    # Turing: no cp.async and no m16n8k16, so 3 of every 4 instruction choices fail the checker
    assert c["sketches_pruned_checker"] == 72 and c["sketches_superseded"] == 0
    per_stage = {st: sum(1 for x in s.candidates if x.stage == st) for st in ("checker", "lowering", "cost")}
    ranked = len(s.ranked)
    assert c["candidates"] == per_stage["checker"] + per_stage["lowering"] + per_stage["cost"] + ranked
    assert c["ranked"] == ranked > 0 and c["interpreted"] >= 3
    assert per_stage["checker"] > 0 and per_stage["lowering"] > 0


def test_turing_never_gets_cp_async_or_the_sm80_mma(turing_d256):
    for c in turing_d256.candidates:
        if c.stage not in ("sketch",):
            assert c.sketch.copy_path == "ldg" and c.sketch.mma == "m16n8k8", c.summary()
    pruned = [c.verdict for c in turing_d256.candidates if c.sketch.copy_path == "cp.async"]
    assert pruned and all("sm_75 has no cp.async" in v for v in pruned)
    with pytest.raises(SpecError, match="sm_75 has no bf16 tensor cores"):
        Planner(use_cache=False).generate(AttentionSpec("dense_prefill", "bf16", 64), SM75)


def test_big_tiles_at_d256_are_pruned_by_the_shared_memory_budget(turing_d256):
    smem = [c for c in turing_d256.candidates if c.stage == "checker" and c.verdict.startswith("smem")]
    assert smem, "no candidate hit Turing's 64 KB"
    big = [c for c in turing_d256.candidates if c.point and c.point.block_m == 128 and c.point.block_n == 64
           and c.sketch.overlap == "pingpong"]  # (the other schedules are refused by the lowering first)
    assert big and all(c.stage == "checker" and c.verdict.startswith("smem") for c in big)
    assert all(c.point.block_m * 256 * 2 + 2 * c.point.block_n * 256 * 2 <= 64 * 1024 for c in turing_d256.ranked)


def test_stage2_refusals_are_pruned_with_the_lowerings_message(turing_d256):
    refused = {c.verdict for c in turing_d256.candidates if c.stage == "lowering"}
    assert any("schedule=sequential is not lowered" in v for v in refused)
    assert any("pipeline=2 is not lowered for sm_75" in v for v in refused)


def test_the_record_has_every_candidate(plan):
    g = plan("dense_prefill", "sm_75", 256)
    c = g.record.details["counts"]
    assert len(g.record.attempts) == c["candidates"] + c["sketches_pruned_checker"] + c["sketches_superseded"]
    first = g.record.attempts[0]
    assert first.stage == "interpret" and first.verdict == "ok" and first.score == min(
        a.score for a in g.record.attempts if a.score is not None)
    assert g.record.details["chosen"]["params"] in g.text
    assert "m16n8k8" in g.text and "cp.async" not in g.text and "bf16" not in g.text


def test_same_program_twice():
    spec = AttentionSpec("paged_decode", "f16", 64, 16)
    first = Planner(use_cache=False).generate(spec, SM75)
    second = Planner(use_cache=False).generate(spec, SM75)
    assert first.text == second.text and first.record == second.record
    assert parse_tl(first.text) == first.program


def test_the_cache_serves_the_same_program(cache_env, monkeypatch):
    spec = AttentionSpec("paged_prefill", "f16", 64)
    planned = Planner().generate(spec, SM75)

    def no_search(*args, **kwargs):
        raise AssertionError("planned again instead of using the cache")

    monkeypatch.setattr(Planner, "search", no_search)
    cached = Planner().generate(spec, SM75)
    assert cached.text == planned.text and cached.record == planned.record and cached.program == planned.program


def test_the_interpreter_gate_catches_what_the_checker_cannot():
    spec = AttentionSpec("dense_prefill", "f16", 64)
    sketch, point = Sketch("dense_prefill", masking="mask"), ParamPoint(block_n=32, warps=4, block_m=64)
    good = program_text(sketch, spec, "sm_80", name="t", params=point.params(sketch))
    bad = good.replace("let n_end = cdiv(Lk, BLOCK_N)", "let n_end = Lk / BLOCK_N")  # drops the last partial tile
    assert bad != good
    params = {"BLOCK_M": 64, "BLOCK_N": 32, "WARPS": 4}
    assert [d for d in check_tl(parse_tl(bad), "sm_80", spec) if d.severity == "error"] == []
    assert interpret(parse_tl(good), spec, params) == ""
    assert "relative error" in interpret(parse_tl(bad), spec, params)


def test_a_seeded_wrong_sketch_loses_at_the_interpreter(monkeypatch):
    """Break the causal tile bound of the `skip` sketches (no chunked-prefill offset): the checker passes
    them, the cost model ranks them first, the interpreter rejects them, a correct program wins."""
    real = sketches._prefill_bounds

    def wrong(s):
        return [line.replace("q0 + BLOCK_M + Lk - Lq", "q0 + BLOCK_M") for line in real(s)]

    monkeypatch.setattr(sketches, "_prefill_bounds", wrong)
    s = Planner(use_cache=False, interpret_top=1).search(AttentionSpec("paged_prefill", "f16", 64), SM90)
    failed = [c for c in s.ranked if c.stage == "interpret" and "relative error" in c.verdict]
    skipped = [c for c in s.ranked if c.verdict.startswith("skipped: the same sketch missed the reference")]
    assert failed and all(c.sketch.masking == "skip" for c in failed + skipped)
    assert s.ranked[0] in failed and s.passed[0].sketch.masking == "mask"
    assert s.counts["interpreter_failed"] == len(failed) < 10


def test_options_meant_for_the_llm_are_refused():
    assert isinstance(make_generator("planner", tune_top=2, use_cache=False), Planner)
    with pytest.raises(QimengError, match="--model only apply to --generator llm"):
        make_generator("planner", model="claude-x")
