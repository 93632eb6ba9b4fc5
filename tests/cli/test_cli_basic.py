"""CLI without GPU: targets, fmt, and bad input (exit 2 with `error:` and `fix:`, no traceback)."""

import json

from typer.testing import CliRunner

from qimeng_serve.cli import app
from tests.conftest import GOLDEN_DIR

runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("targets", "tl"):
        assert name in result.output
    tl_help = runner.invoke(app, ["tl", "--help"]).output
    for name in ("check", "run", "fmt"):
        assert name in tl_help


def test_targets_table_and_json():
    result = runner.invoke(app, ["targets"])
    assert result.exit_code == 0 and "sm_75" in result.output and "T4" in result.output
    rows = json.loads(runner.invoke(app, ["targets", "--json"]).output)
    by_arch = {r["arch"]: r for r in rows}
    assert by_arch["sm_75"]["cp_async"] is False and by_arch["sm_90"]["gmma"] is True


def test_fmt_check_passes_on_golden_programs():
    files = [str(p) for p in sorted(GOLDEN_DIR.glob("*.tl"))]
    result = runner.invoke(app, ["tl", "fmt", "--check", *files])
    assert result.exit_code == 0, result.output


def test_fmt_write_rewrites_and_keeps_comments(tmp_path):
    f = tmp_path / "k.tl"
    f.write_text("# keep me\nop dense_prefill\nkernel k grid(i:1){let x=(1+2)*3   # inline\n}\n")
    assert runner.invoke(app, ["tl", "fmt", "--check", str(f)]).exit_code == 1
    result = runner.invoke(app, ["tl", "fmt", "--write", str(f)])
    assert result.exit_code == 0
    assert f.read_text() == "# keep me\nop dense_prefill\n\nkernel k grid (i : 1) {\n  let x = (1 + 2) * 3  # inline\n}\n"
    assert runner.invoke(app, ["tl", "fmt", "--check", str(f)]).exit_code == 0


def _assert_user_error(result, needle):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert needle in result.output
    assert "fix:" in result.output


def test_malformed_tl_is_exit_2_with_caret(tmp_path):
    f = tmp_path / "bad.tl"
    f.write_text("op dense_prefill\nkernel k grid (i : 1) {\n  Copy sQ <- \n}\n")
    result = runner.invoke(app, ["tl", "fmt", str(f)])
    _assert_user_error(result, f"{f}:4:1: error: unexpected '}}'")
    assert "^" in result.output


def test_missing_file_is_exit_2(tmp_path):
    _assert_user_error(runner.invoke(app, ["tl", "fmt", str(tmp_path / "nope.tl")]), "no such TL file")
