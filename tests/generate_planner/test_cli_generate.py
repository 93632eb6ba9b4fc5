"""`qimeng-serve generate`: the program on stdout, the candidates table, and bad input as error/fix."""

import pytest
from typer.testing import CliRunner

from qimeng_serve.cli import app
from qimeng_serve.tl.parser import parse_tl

runner = CliRunner()
SM75_PREFILL = ["generate", "--arch", "sm_75", "--op", "paged_prefill", "--head-dim", "64"]


def test_generate_prints_a_program_that_checks(cache_env, tmp_path):
    result = runner.invoke(app, SM75_PREFILL)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert text.startswith("# Planned by qimeng-serve") and "targets sm_75" in text
    program = parse_tl(text)
    assert program.op == "paged_prefill" and "cp.async" not in text and "m16n8k8" in text
    out = tmp_path / "k.tl"
    written = runner.invoke(app, SM75_PREFILL + ["--out", str(out)])
    assert written.exit_code == 0 and out.read_text() == text
    check = runner.invoke(app, ["tl", "check", str(out), "--arch", "sm_75", "--head-dim", "64", "--dtype", "f16"])
    assert check.exit_code == 0, check.output
    sketch = runner.invoke(app, SM75_PREFILL + ["--sketch"])
    assert sketch.exit_code == 0 and "params" not in sketch.stdout and " with " not in sketch.stdout


def test_show_candidates_lists_verdicts_and_scores(cache_env):
    result = runner.invoke(app, SM75_PREFILL + ["--show-candidates", "--limit", "8"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "stage 1 (planner)" in out and "interpret" in out
    # the checker's verdict on a pruned instruction choice (the program itself has no cp.async)
    assert "copy-path" in out and "cp.async" in out
    assert "counts: " in out and "candidates 1536" in out and "pruned by: " in out


def test_golden_generator_prints_the_hand_written_program(cache_env):
    result = runner.invoke(app, ["generate", "--arch", "sm_80", "--op", "dense_prefill", "--generator", "golden"])
    assert result.exit_code == 0 and "program dense_prefill_sm80" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--arch", "sm_75", "--op", "dense_prefill", "--dtype", "bf16"], "sm_75 has no bf16 tensor cores"),
    (["--arch", "sm_61", "--op", "dense_prefill"], "unknown GPU architecture 'sm_61'"),
    (["--arch", "sm_80", "--op", "flash"], "unknown op 'flash'"),
    (["--arch", "sm_80", "--op", "dense_prefill", "--head-dim", "96"], "unsupported head size 96"),
    (["--arch", "sm_80", "--op", "dense_prefill", "--model", "m"], "--model only apply to --generator llm"),
    (["--arch", "sm_80", "--op", "dense_prefill", "--generator", "magic"], "unknown generator 'magic'"),
    (["--arch", "sm_80", "--op", "dense_prefill", "--generator", "golden", "--tune"], "--tune measures the planner"),
])
def test_bad_input_is_error_and_fix(args, message, cache_env):
    result = runner.invoke(app, ["generate", *args])
    assert result.exit_code == 2, result.output
    assert f"error: {message}" in result.output and "fix: " in result.output and "Traceback" not in result.output


def test_tune_without_a_gpu_is_a_clear_error(cache_env):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: --tune would measure")
    result = runner.invoke(app, SM75_PREFILL + ["--tune"])
    assert result.exit_code == 2
    assert "error: --tune measures candidates on a CUDA GPU and none is visible" in result.output
    assert "fix: drop --tune" in result.output


def test_the_candidates_table_keeps_every_tuned_row_and_one_row_per_pruning_reason():
    """Session 14's H100 tune printed only its winner: pruning reasons that differ in a number
    ("needs about 168 registers" / "180") each took a row and crowded the tuned rows out."""
    from qimeng_serve.cli_generate import _telling
    from qimeng_serve.generate.base import Attempt

    tuned = [Attempt("tune", f"tuned {i}", "validated", ms) for i, ms in enumerate((1.9, 1.8, 2.0))]
    unbuilt = Attempt("tune", "tuned 3", "not built: spills 72 B")
    ranked = [Attempt("ranked", f"ranked {i}", "ok", 700.0 + i) for i in range(5)]
    pruned = [Attempt("cost", f"cost {n}", f"the consumer needs about {n} registers a thread, keeps 160: it would spill")
              for n in (168, 180, 192)] + [Attempt("checker", "smem", "smem-budget: 240 KB > 227 KB")]
    rows = _telling(tuned + [unbuilt] + ranked + pruned, limit=6)
    assert [r.summary for r in rows[:4]] == ["tuned 1", "tuned 0", "tuned 2", "tuned 3"]  # fastest first
    assert [r.summary for r in rows[4:]] == ["cost 168", "smem"]  # one per reason, no ranked row left
    assert [r.summary for r in _telling(tuned + ranked + pruned, limit=8)][3:] == [
        "ranked 0", "ranked 1", "ranked 2", "cost 168", "smem"]
