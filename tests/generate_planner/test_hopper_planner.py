"""The Hopper planner (stage 1 for sm_90a): its sketches cover the measured programs, its search
gives checked, lowered, interpreter-verified programs, and ptxas feedback moves it to smaller ones."""

import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qimeng_serve.build import pipeline
from qimeng_serve.build.bundle import read_manifest
from qimeng_serve.build.kernel_set import hopper_variant_program
from qimeng_serve.cli import app
from qimeng_serve.errors import QimengError
from qimeng_serve.generate.hopper_cost import _tile_kv_counts, consumer_registers, estimate_hopper, kv_tile_cycles
from qimeng_serve.generate.hopper_planner import HopperPlanner, program_name
from qimeng_serve.generate.hopper_sketches import SHIPPED, HopperPoint, HopperSketch, hopper_program_text
from qimeng_serve.lower.emit_sm90 import lower_sm90
from qimeng_serve.spec import AttentionSpec
from qimeng_serve.targets import get_target
from qimeng_serve.tl.interpreter import resolve_params
from qimeng_serve.tl.parser import parse_tl

TL = Path(__file__).resolve().parents[2] / "kernels_src" / "tl"
SM90 = get_target("sm_90")
# the measured programs (kernels_src/tl/<op>_sm90.tl) as sketch + point; dense D 128 keeps 40 / 232,
# a split the planner does not make (it gives the consumers all but the producer's 24: 24 / 240)
MEASURED = {key: value for key, value in SHIPPED.items() if key != ("dense_prefill", 128)}


def _code(source_text: str) -> str:
    """Generated CUDA without comments (TL line numbers, program names and hashes live there)."""
    return "\n".join(line for line in (re.sub(r"//.*", "", ln).rstrip() for ln in source_text.splitlines()) if line)


@pytest.mark.parametrize("op,d", sorted(MEASURED))
def test_the_sketches_cover_the_measured_programs(op, d):
    """The planner's program for the measured sketch and point lowers to the very CUDA of the measured
    program: the search space holds what was timed fastest."""
    spec = AttentionSpec(op, "bf16", d, causal=True)
    sketch, point = MEASURED[(op, d)]
    planned = parse_tl(hopper_program_text(sketch, spec, "sm_90", name=f"{op}_sm90", params=point.params(sketch)))
    measured = parse_tl((TL / f"{op}_sm90.tl").read_text())
    assert _code(lower_sm90(planned, SM90, spec).text) == _code(lower_sm90(measured, SM90, spec).text)


def test_the_register_split_fills_the_launch():
    """Consumers keep what the launch gives once the producer has its minimum; the producer the rest."""
    dense, paged = HopperSketch("dense_prefill"), HopperSketch("paged_prefill")
    assert HopperPoint(2, 128, 3).registers(dense) == (24, 240)  # 384 threads launch with 168: 64512
    assert HopperPoint(3, 96, 3).registers(dense) == (32, 160)  # 512 threads with 128: all 65536
    assert HopperPoint(2, 128, 3).registers(paged) == (56, 224)  # the gather needs 56
    assert HopperPoint(3, 96, 3).registers(paged) == (56, 152)


def test_the_register_estimate_prunes_what_ptxas_spilled():
    """The outcomes the estimate is fitted to (docs/perf-notes.md): pinned spills D 256 128 x 80 at 240
    and D 64 192 x 96 at 160; overlap=softmax fits both; D 128 128 x 176 spills at 240."""
    spec = lambda op, d: AttentionSpec(op, "bf16", d, causal=True)  # noqa: E731
    pinned, softmax = HopperSketch("dense_prefill", overlap="pinned"), HopperSketch("dense_prefill", overlap="softmax")
    assert not estimate_hopper(pinned, HopperPoint(2, 80, 2), spec("dense_prefill", 256)).feasible
    assert not estimate_hopper(pinned, HopperPoint(3, 96, 3), spec("dense_prefill", 64)).feasible
    assert estimate_hopper(softmax, HopperPoint(2, 80, 2), spec("dense_prefill", 256)).feasible
    assert estimate_hopper(softmax, HopperPoint(3, 96, 3), spec("dense_prefill", 64)).feasible
    assert estimate_hopper(pinned, HopperPoint(2, 128, 3), spec("dense_prefill", 128)).feasible
    assert consumer_registers(softmax, HopperPoint(2, 176, 2), 128) > 240


@pytest.mark.parametrize("op,d", [("dense_prefill", 128), ("paged_prefill", 256)])
def test_the_search_gives_a_checked_lowered_interpreted_program(op, d):
    spec = AttentionSpec(op, "bf16", d, causal=True)
    result = HopperPlanner(use_cache=False).generate(spec, SM90)
    details = result.record.details
    assert result.program.name == program_name(spec) and result.text.startswith("# Planned by qimeng-serve")
    assert details["counts"]["candidates"] == 16 * 2 * 9 * 3 and details["counts"]["interpreted"] >= 1
    assert result.record.attempts[0].stage == "interpret" and result.record.attempts[0].verdict == "ok"
    source = lower_sm90(result.program, SM90, spec)
    params = resolve_params(result.program, spec)
    assert source.entries[0].threads == 128 * (params["CONSUMERS"] + 1)
    if (op, d) == ("paged_prefill", 256):  # the planner's pick, timed in three runs, is the shipped program
        measured = hopper_variant_program(parse_tl((TL / f"{op}_sm90.tl").read_text()))  # as the build names it
        assert _code(source.text) == _code(lower_sm90(measured, SM90, spec).text)
    # the measured program's candidate is not pruned: the model prices it
    if (op, d) in MEASURED:
        sketch, point = MEASURED[(op, d)]
        summary = f"{sketch.summary()} | {point.summary(sketch)}"
        (attempt,) = [a for a in result.record.attempts if a.summary == summary]
        assert attempt.stage in ("ranked", "interpret") and attempt.score is not None


def test_ptxas_feedback_takes_a_candidate_needing_fewer_registers():
    spec = AttentionSpec("dense_prefill", "bf16", 64, causal=True)
    planner = HopperPlanner(use_cache=False)
    first = planner.generate(spec, SM90)
    following = planner.next_program(spec, SM90, first, "spills 20 B stores / 52 B loads")
    assert following is not None
    before = first.record.details["chosen"]["estimate"]["registers"]
    assert following.record.details["chosen"]["estimate"]["registers"] < before
    assert following.record.attempts[0].stage == "ptxas" and "spills 20 B" in following.record.attempts[0].verdict


def test_the_hopper_planner_plans_sm90_prefill_only():
    with pytest.raises(QimengError, match="plans for sm_90"):
        HopperPlanner(use_cache=False).generate(AttentionSpec("dense_prefill", "f16", 128), get_target("sm_80"))
    with pytest.raises(QimengError, match="no Hopper form"):
        HopperPlanner(use_cache=False).generate(AttentionSpec("paged_decode", "f16", 128, 16), SM90)


def test_generate_hopper_on_the_cli(cache_env):
    ok = CliRunner().invoke(app, ["generate", "--arch", "sm_90", "--op", "paged_prefill", "--head-dim", "256",
                                  "--dtype", "bf16", "--hopper", "--sketch"])
    assert ok.exit_code == 0, ok.output
    assert "program paged_prefill_sm90a" in ok.output and "Role consumer {" in ok.output
    bad = CliRunner().invoke(app, ["generate", "--arch", "sm_80", "--op", "dense_prefill", "--hopper"])
    assert bad.exit_code != 0 and "Traceback" not in bad.output and "sm_90" in bad.output


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc on PATH")
def test_build_takes_the_hopper_kernels_from_the_planner(cache_env, tmp_path):
    """`build --hopper-generator planner`: the sm90a job's program is the Hopper planner's, compiled
    for sm_90a and recorded as such in the manifest; golden stays the default."""
    report = pipeline.build_arch("sm_90", tmp_path / "reg", dtypes=["bf16"], head_dims=[256],
                                 families=["dense_prefill"], jobs_limit=2, hopper_generator="planner")
    (hopper,) = [o for o in report.outcomes if o.job.variant == "sm90a"]
    assert not hopper.rejected and hopper.result.resources
    assert hopper.job.source_name == "planner:dense_prefill:sm_90a:bf16:hd256"
    meta = read_manifest(report.bundles[0])["kernels"]["qm_dense_prefill_sm90a_attn_bf16_hd256"]
    assert meta["variant"] == "sm90a" and meta["tl"]["generator"] == "planner"
    assert meta["tl"]["source"].startswith("# Planned by qimeng-serve (Hopper planner")
    with pytest.raises(QimengError, match="unknown Hopper generator"):
        pipeline.hopper_stage1("llm")


def test_tuning_the_hopper_planner_needs_an_sm90_gpu():
    """--tune measures on this machine's GPU; without one it says so before any search."""
    with pytest.raises(QimengError, match="GPU|CUDA"):
        HopperPlanner(tune=True).generate(AttentionSpec("dense_prefill", "bf16", 128), SM90)
    result = CliRunner().invoke(app, ["generate", "--arch", "sm_90", "--op", "dense_prefill", "--hopper", "--tune"])
    assert result.exit_code != 0 and "Traceback" not in result.output


# (sketch, point, D, cycles a KV tile measured on the H100): the steady states hopper_cost is fitted to
STEADY_STATES = [
    (HopperSketch("dense_prefill", "persistent", "pingpong", "pinned"), HopperPoint(2, 128, 3), 128, 2727),
    (HopperSketch("dense_prefill", "persistent", "cooperative", "softmax"), HopperPoint(2, 80, 2), 256, 3252),
    (HopperSketch("dense_prefill", "persistent", "cooperative", "softmax"), HopperPoint(3, 96, 3), 64, 2183),
    (HopperSketch("dense_prefill", "persistent", "pingpong", "pinned"), HopperPoint(2, 176, 4), 64, 2869),
    (HopperSketch("dense_prefill", "persistent", "pingpong", "pinned"), HopperPoint(2, 128, 4), 64, 2144),
    (HopperSketch("dense_prefill", "persistent", "pingpong", "pinned"), HopperPoint(2, 64, 2), 256, 2768),
    # session 15's build (its KV loop: docs/results/hopper-h100-v13/dense-d64-kv-loop.txt); session 13's
    # build of the same params, scheduled otherwise, measured 2888
    (HopperSketch("dense_prefill", "persistent", "pingpong", "gemms"), HopperPoint(3, 128, 4), 64, 2790),
    (HopperSketch("dense_prefill", "persistent", "pingpong", "pinned"), HopperPoint(3, 80, 4), 64, 2010),
    (HopperSketch("dense_prefill", "persistent", "cooperative", "none"), HopperPoint(3, 144, 4), 64, 3121),
    (HopperSketch("dense_prefill", "persistent", "pingpong", "none"), HopperPoint(2, 80, 2), 256, 3687),
]


@pytest.mark.parametrize("sketch,point,d,measured", STEADY_STATES)
def test_the_kv_tile_model_meets_the_measured_steady_states(sketch, point, d, measured):
    assert kv_tile_cycles(sketch, point, d) == pytest.approx(measured, rel=0.07)


def test_the_model_ranks_the_measured_pairs_as_the_h100_did():
    """Where two programs were timed in one run, the model orders them the same way (per score: a
    KV tile's cycles over its BM x BN scores)."""
    per_score = {i: kv_tile_cycles(s, p, d) / (p.block_m * p.block_n) for i, (s, p, d, _) in enumerate(STEADY_STATES)}
    assert per_score[2] < per_score[3] and per_score[2] < per_score[4]  # D 64: 3 warpgroups on 192 rows won
    assert per_score[1] < per_score[5]  # D 256: 128 x 80 softmax beat 128 x 64 pinned + ping-pong
    assert per_score[6] < per_score[2]  # D 64: 192 x 128 gemms + ping-pong on three won (session 15)
    assert per_score[2] < per_score[7]  # D 64: 192 x 80 pinned + ping-pong on three lost
    assert per_score[8] < per_score[2]  # D 64: 192 x 144 without overlap beat it at 16k without a mask
    assert per_score[1] < per_score[9]  # D 256: no overlap + ping-pong lost


def test_causal_tiles_are_counted_with_their_padding_at_the_front():
    """192 x 96 tiles over 1024 queries: the 128 rows of padding sit before the first tile's queries;
    it visits one KV tile, and the last all 11 (41 tiles a head without the shift)."""
    point = HopperPoint(3, 96, 3)
    assert _tile_kv_counts(point, 1024, True) == [11, 9, 7, 5, 3, 1]
    assert sum(_tile_kv_counts(point, 4096, True)) == 484  # 505 with the padding in the last tile
    assert sum(_tile_kv_counts(point, 2048, True)) == 132  # 64 rows of padding move no tile boundary
    assert _tile_kv_counts(point, 1024, False) == [11] * 6
    assert sum(_tile_kv_counts(HopperPoint(3, 128, 4), 2048, True)) == 96  # 192 x 128: 101 unshifted
    assert sum(_tile_kv_counts(HopperPoint(2, 128, 3), 2048, True)) == sum(range(1, 17))  # whole tiles: no padding
    # paged prefill shifts by multiples of gcd(192, 96) = 96: at 2k the 64 rows of padding stay put
    assert _tile_kv_counts(point, 2048, True, aligned=True) == _tile_kv_counts(point, 2048, True)
    assert sum(_tile_kv_counts(point, 1024, True, aligned=True)) == 36  # 96 of the 128 rows move


def test_where_the_model_ranks_the_shipped_program_among_the_picks_it_is_tuned_once():
    """Dense D 64: cost model 4 puts the shipped 192 x 128 gemms + ping-pong second; tune then times
    it in its place, marked shipped, and adds nothing."""
    spec = AttentionSpec("dense_prefill", "bf16", 64, causal=True)
    planner = HopperPlanner(use_cache=False, tune_top=2)
    search = planner.search(spec, SM90, want=2)
    candidates = planner.tune_candidates(search)
    assert candidates == search.passed[:2]
    assert [(c.sketch, c.point) for c in candidates if c.shipped] == [SHIPPED[("dense_prefill", 64)]]


def test_a_warm_cache_plans_nothing_again(tmp_path, monkeypatch):
    """The plan cache (planner_cache) serves the same program; ptxas feedback replaces the entry."""
    monkeypatch.setenv("QIMENG_CACHE_DIR", str(tmp_path))  # empty: the first call plans
    spec, said = AttentionSpec("paged_prefill", "bf16", 256, causal=True), []
    planner = HopperPlanner(progress=said.append)
    first = planner.generate(spec, SM90)
    again = planner.generate(spec, SM90)
    assert again.text == first.text and again.record.details == first.record.details
    assert said == ["sm_90a paged_prefill bf16 hd256: planned program from the cache"]
    following = planner.next_program(spec, SM90, first, "spills 80 B")
    assert planner.generate(spec, SM90).text == following.text != first.text


@pytest.mark.parametrize("op,d", [("dense_prefill", 256), ("paged_prefill", 64)])
def test_tuning_times_the_shipped_program_beside_the_picks(op, d):
    """--tune measures the shipped program (SHIPPED) with the planner's top candidates, so a tuned
    plan is never one the measurement found slower than what the build ships."""
    spec = AttentionSpec(op, "bf16", d, causal=True)
    planner = HopperPlanner(use_cache=False, tune_top=2)
    search = planner.search(spec, SM90, want=2)
    candidates = planner.tune_candidates(search)
    sketch, point = SHIPPED[(op, d)]
    assert len(candidates) == 3 and [c.shipped for c in candidates] == [False, False, True]
    shipped = candidates[-1]
    assert (shipped.sketch, shipped.point) == (sketch, point) and shipped.verdict == "ok"
    assert shipped.summary().endswith("(shipped)") and shipped.stage == "interpret"
    assert (shipped.sketch, shipped.point) not in [(c.sketch, c.point) for c in search.passed[:2]]
    for c in candidates:  # as measure() leaves them: each tuned row is in the record once
        c.stage, c.measured_ms = "tune", 1.0
    summaries = [a.summary for a in planner._program(search, candidates[0]).record.attempts]
    assert len(summaries) == len(set(summaries)) and sum(a.endswith("(shipped)") for a in summaries) == 1
