"""The sm_90a kernels compile with nvcc here: no spills, and the SASS holds the Hopper path
(HGMMA warpgroup MMAs, UTMALDG bulk tensor loads, USETMAXREG register reallocation); the host-side
layout check proves the shared tiles match the TMA boxes and the register re-layouts keep every
value's (row, column). Needs nvcc and the CuTe headers; skipped with the reason otherwise."""

import subprocess

import pytest

from qimeng_serve.build.toolchain import ToolchainError, find_toolchain
from qimeng_serve.lower.emit_sm90 import lower_sm90
from qimeng_serve.lower.sm90_build import compile_sm90, opcode_counts, sass_text
from qimeng_serve.spec import AttentionSpec
from qimeng_serve.targets import get_target
from qimeng_serve.tl.parser import parse_tl_file
from tests.conftest import GOLDEN_DIR, REPO


@pytest.fixture(scope="module")
def toolchain():
    try:
        return find_toolchain()
    except ToolchainError as exc:
        pytest.skip(f"no CUDA toolchain: {exc}")


@pytest.mark.parametrize("dtype, d", [("bf16", 128), ("f16", 256)])
def test_compiles_without_spills_and_uses_gmma_and_tma(toolchain, dtype, d):
    program = parse_tl_file(GOLDEN_DIR / "dense_prefill_sm90.tl")
    source = lower_sm90(program, get_target("sm_90"), AttentionSpec("dense_prefill", dtype, d, 4, True))
    result = compile_sm90(source, toolchain)
    assert "-gencode=arch=compute_90a,code=sm_90a" in result.flags
    res = result.resources[source.entries[0].name]
    assert not res.spills and res.stack == 0, res
    assert "C7508" not in result.log  # ptxas would say so if it ignored setmaxnreg
    if toolchain.cuobjdump is None:
        pytest.skip("cuobjdump is missing: pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm")
    counts = opcode_counts(sass_text(result.cubin, toolchain))
    assert counts["HGMMA"] > 0 and counts["UTMALDG"] > 0 and counts["USETMAXREG"] == 2, counts
    assert opcode_counts(sass_text(result.cubin, toolchain), ("HMMA",))["HMMA"] == 0  # no warp-level MMA fallback


def test_layouts_match_tma_and_gmma_on_the_host(toolchain, tmp_path):
    exe = tmp_path / "sm90_layout_check"
    build = subprocess.run([str(toolchain.nvcc), "-std=c++17", "--expt-relaxed-constexpr",
                            f"-I{toolchain.kernels_include}", f"-I{toolchain.cutlass_include}", "-o", str(exe),
                            str(REPO / "tests" / "unit" / "lower" / "sm90_layout_check.cu")],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout
    assert run.stdout.count(": ok (0 mismatches)") == 5, run.stdout


def test_persistent_tile_walk_covers_every_tile_once_on_the_host(toolchain, tmp_path):
    exe = tmp_path / "sm90_scheduler_check"
    build = subprocess.run([str(toolchain.nvcc), "-std=c++17", f"-I{toolchain.kernels_include}", "-o", str(exe),
                            str(REPO / "tests" / "unit" / "lower" / "sm90_scheduler_check.cu")],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "ok (0 mismatches)" in run.stdout, run.stdout
