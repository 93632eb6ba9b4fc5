"""`tl check` and `tl run` end to end through the CLI (CPU only)."""

from typer.testing import CliRunner

from qimeng_serve.cli import app
from tests.conftest import GOLDEN_DIR

runner = CliRunner()
DENSE80 = str(GOLDEN_DIR / "dense_prefill_sm80.tl")
DENSE75 = str(GOLDEN_DIR / "dense_prefill_sm75.tl")


def test_check_every_golden_program_on_its_targets():
    files = [str(p) for p in sorted(GOLDEN_DIR.glob("*.tl"))]
    result = runner.invoke(app, ["tl", "check", *files])
    assert result.exit_code == 0, result.output
    assert "error" not in result.output


def test_check_sm80_program_on_sm75_fails_with_fixes():
    result = runner.invoke(app, ["tl", "check", DENSE80, "--arch", "sm_75", "--head-dim", "128"])
    assert result.exit_code == 1
    assert "sm_75 has no cp.async" in result.output and "via=ldg" in result.output
    assert "dense_prefill_sm80.tl:" in result.output  # file:line:col


def test_run_matches_reference():
    result = runner.invoke(app, ["tl", "run", DENSE75, "--seqlen-q", "17", "--seqlen-q", "5",
                                 "--seqlen-k", "40", "--seqlen-k", "5"])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output


def test_run_reports_a_mismatch(tmp_path):
    buggy = tmp_path / "buggy.tl"
    text = (GOLDEN_DIR / "dense_prefill_sm75.tl").read_text()
    assert "    Compute acc = acc * alpha\n" in text
    buggy.write_text(text.replace("    Compute acc = acc * alpha\n", ""))
    result = runner.invoke(app, ["tl", "run", str(buggy), "--head-dim", "64", "--seqlen-q", "100", "--seqlen-k", "300"])
    assert result.exit_code == 1
    assert "MISMATCH" in result.output


def _user_error(args, needle):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert needle in result.output and "fix:" in result.output and "Traceback" not in result.output


def test_unknown_arch_is_exit_2():
    _user_error(["tl", "check", DENSE80, "--arch", "sm_61"], "unknown GPU architecture 'sm_61'")


def test_bf16_on_sm75_is_exit_2():
    _user_error(["tl", "check", DENSE75, "--arch", "sm_75", "--dtype", "bf16"], "sm_75 has no bf16 tensor cores")


def test_bad_head_size_is_exit_2():
    _user_error(["tl", "run", DENSE80, "--head-dim", "96"], "unsupported head size 96")


def test_bad_lengths_are_exit_2():
    _user_error(["tl", "run", DENSE80, "--seqlen-q", "50", "--seqlen-k", "10"], "seqlen_k[0] = 10 < seqlen_q[0] = 50")
