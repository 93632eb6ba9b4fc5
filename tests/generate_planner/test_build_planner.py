"""`build` from the planner's programs with real nvcc: the manifest says how each program was made,
the CLI shows the stages, and a kernel that spills goes back to the planner for its next program."""

import hashlib
import shutil

import pytest
from typer.testing import CliRunner

from qimeng_serve.build import pipeline
from qimeng_serve.build.bundle import read_manifest
from qimeng_serve.cli import app
from qimeng_serve.generate.planner import Planner
from qimeng_serve.spec import AttentionSpec
from qimeng_serve.targets import get_target

pytestmark = pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc on PATH")
JOB = {"dtypes": ["f16"], "head_dims": [64], "families": ["paged_prefill"], "jobs_limit": 1}


def test_build_records_the_generated_program(cache_env, tmp_path):
    report = pipeline.build_arch("sm_75", tmp_path / "reg", **JOB)
    (outcome,) = report.outcomes
    assert not outcome.rejected and not report.not_generated
    (meta,) = read_manifest(report.bundles[0])["kernels"].values()
    tl = meta["tl"]
    assert tl["generator"] == "planner" and tl["file"] == "planner:paged_prefill:sm_75:f16:hd64"
    assert tl["source"] == outcome.job.generated.text and tl["source"].startswith("# Planned by qimeng-serve")
    assert tl["sha256"] == hashlib.sha256(tl["source"].encode()).hexdigest()
    record = tl["record"]
    assert record["details"]["counts"]["candidates"] == 1536 and record["attempts_total"] > 1000
    assert record["attempts"][0]["stage"] == "interpret" and record["attempts"][0]["verdict"] == "ok"
    assert len(record["attempts"]) == pipeline.MANIFEST_ATTEMPTS
    assert f"BLOCK_M = {meta['params']['BLOCK_M']}" in tl["source"] and "cp.async" not in tl["source"]


def test_build_cli_shows_each_stage(cache_env, tmp_path):
    args = ["build", "--arch", "sm_75", "--family", "paged_prefill", "--head-dim", "64", "--dtype", "f16",
            "--registry", str(tmp_path / "reg")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for stage in ("stage 1 (planner)", "stage 2 + nvcc", "registry: "):
        assert stage in result.output
    assert "hit" in result.output  # the same program as the test before: nvcc is not run again
    (meta,) = read_manifest(tmp_path / "reg/sm_75/f16/qimeng-default-sm_75-f16.safetensors")["kernels"].values()
    assert meta["tl"]["generator"] == "planner"
    bad = CliRunner().invoke(app, args + ["--tune"])
    assert bad.exit_code == 2 and "--tune measures candidates on a CUDA GPU" in bad.output


def test_a_kernel_past_the_spill_limit_goes_back_to_the_planner(cache_env, tmp_path, monkeypatch):
    """With a spill limit no kernel can meet (-1 B), every compiled program is past it: the build asks
    the planner SPILL_RETRIES (here 2) times for a program predicted to need fewer registers, compiles each
    with real nvcc, records every ptxas verdict, and finally rejects the kernel with the reason.
    (No shipped kernel spills since the building blocks' register diet, and `-maxrregcount` does not
    bind kernels with __launch_bounds__, so the limit is what makes ptxas's verdict fail here.)"""
    monkeypatch.setattr(pipeline, "SPILL_LIMIT_BYTES", -1)
    monkeypatch.setattr(pipeline, "SPILL_RETRIES", 2)  # two replacements show the loop; each is an nvcc run
    report = pipeline.build_arch("sm_75", tmp_path / "reg", generator=Planner(use_cache=False), **JOB)
    (outcome,) = report.outcomes
    assert outcome.spilled and "limit -1 B" in outcome.rejected
    record = outcome.job.generated.record
    rejected = record.details["ptxas_rejected"]
    assert len(rejected) == pipeline.SPILL_RETRIES
    assert all("registers" in r["ptxas"] for r in rejected) and record.attempts[0].stage == "ptxas"
    candidates = [r["candidate"] for r in rejected]
    assert len(set(candidates)) == len(candidates)  # a new program each time, never the same one again


def test_next_program_needs_fewer_registers_and_replaces_the_cached_plan(tmp_path, monkeypatch):
    monkeypatch.setenv("QIMENG_CACHE_DIR", str(tmp_path))  # its own cache: the replaced plan stays here
    spec, target = AttentionSpec("dense_prefill", "f16", 64), get_target("sm_90")
    planner = Planner()
    first = planner.generate(spec, target)
    assert "Q in registers" in first.record.details["chosen"]["sketch"]  # 22 registers over 255 predicted
    second = planner.next_program(spec, target, first, "qm_x spills 40 B stores / 40 B loads at 255 registers")
    est = second.record.details["chosen"]["estimate"]
    assert est["registers"] + est["spill_regs"] < 255 + 22 and second.text != first.text
    assert planner.generate(spec, target).text == second.text  # a warm build gets the program that compiled


def test_tune_compiles_each_candidate_from_its_own_source(tmp_path, monkeypatch):
    """--tune compiles a kernel's candidates in parallel; they share an entry name, so each needs a
    folder of its own. Every candidate's cubin must be the one its own source makes alone."""
    from qimeng_serve.build.toolchain import find_toolchain
    from qimeng_serve.generate.tune import _job, compile_candidates

    spec, target = AttentionSpec("paged_prefill", "f16", 64), get_target("sm_75")
    search = Planner(use_cache=False).search(spec, target)
    jobs = [_job(search, c) for c in search.passed[:3]]
    assert len({j.generated.text for j in jobs}) == 3
    assert len({pipeline.lower(j.program, target, spec).entries[0].name for j in jobs}) == 1  # one entry name
    toolchain = find_toolchain()
    monkeypatch.setenv("QIMENG_CACHE_DIR", str(tmp_path / "cache-parallel"))  # no cache hit: nvcc runs
    together = compile_candidates(jobs, target, toolchain, tmp_path / "together")
    monkeypatch.setenv("QIMENG_CACHE_DIR", str(tmp_path / "cache-alone"))
    alone = [pipeline.compile_job(j, target, toolchain, (tmp_path / f"alone{i}").resolve()) for i, j in enumerate(jobs)
             if (tmp_path / f"alone{i}").mkdir() is None]
    from qimeng_serve.lower.sm90_build import sass_text

    for t, a in zip(together, alone):  # the SASS, not the bytes: a cubin's line info names its .cu path
        assert not t.rejected and sass_text(t.result.cubin, toolchain) == sass_text(a.result.cubin, toolchain)
