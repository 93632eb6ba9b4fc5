"""`qimeng-serve doctor`: what the plugin would do here (no GPU) and on another GPU (--capability)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from qimeng_serve.cli import app
from tests.vllm.conftest import SKIP_REASON

vllm = pytest.importorskip("vllm", reason=SKIP_REASON)


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """A wide terminal, so a table row (bundle name, how it runs, decode) stays on one line."""
    from qimeng_serve import cli

    monkeypatch.setattr(cli.out, "_width", 200)


def _doctor(*args):
    return CliRunner().invoke(app, ["doctor", *args])


def test_without_a_gpu_it_says_so_and_still_reports_vllm_and_the_registry(plugin_env, registered):
    result = _doctor()
    assert result.exit_code == 0, result.output
    assert "GPU: no CUDA GPU visible to torch" in result.output
    assert "vLLM: 0.33.0; type --attention-backend qimeng" in result.output
    assert f"registry: local {plugin_env} (QIMENG_REGISTRY)" in result.output
    assert "pass --capability" in result.output


def test_for_a_turing_gpu_it_lists_the_bundle_per_head_size(plugin_env, registered):
    result = _doctor("--capability", "7.5")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if "qimeng-default-sm_75-f16.safetensors" in line]
    assert len(rows) == 3 and all("sm_75 SASS" in r for r in rows)
    assert sum("split-KV, 512 keys/split" in r for r in rows) == 2 and sum("through prefill" in r for r in rows) == 1
    assert "bf16" not in result.output  # Turing has no bf16: not even offered


def test_an_unservable_request_explains_every_candidate_and_exits_1(plugin_env, registered):
    result = _doctor("--capability", "8.6", "--dtype", "bf16", "--head-dim", "256")
    assert result.exit_code == 1
    assert "head size 256 missing (has 64, 128)" in result.output and "fix:" in result.output


def test_bad_input_is_an_error_line_and_exit_2(plugin_env, registered):
    result = _doctor("--capability", "seven")
    assert result.exit_code == 2 and "error: 'seven' is not a compute capability" in result.output
    result = _doctor("--capability", "9.0", "--dtype", "fp8")
    assert result.exit_code == 2 and "use f16 or bf16" in result.output
