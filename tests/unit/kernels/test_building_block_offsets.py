"""The SM80 building blocks compute some shared-memory offsets by hand (ldmatrix rows in gemm.cuh,
16-byte copy chunks in traits.cuh) to keep them out of registers; a host program checks them
against CuTe's layouts for every thread of the tile shapes in use (needs nvcc, no GPU)."""

import re
import subprocess

import pytest

from qimeng_serve.build.toolchain import ToolchainError, find_toolchain
from tests.conftest import REPO

HARNESS = REPO / "tests" / "unit" / "kernels" / "building_block_offsets.cu"


@pytest.mark.nvcc
def test_hand_computed_offsets_match_cute_for_every_thread(tmp_path):
    try:
        tc = find_toolchain()
    except ToolchainError as exc:
        pytest.skip(f"no CUDA toolchain: {exc}")
    exe = tmp_path / "offsets"
    build = subprocess.run([str(tc.nvcc), "-std=c++17", "--expt-relaxed-constexpr", f"-I{tc.kernels_include}",
                            f"-I{tc.cutlass_include}", "-o", str(exe), str(HARNESS)],
                           check=False, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout + build.stderr
    run = subprocess.run([str(exe)], check=False, capture_output=True, text=True, timeout=120)
    shapes = re.findall(r"^D=\d+ .*: (\d+) offsets, (\d+) wrong$", run.stdout, flags=re.MULTILINE)
    assert len(shapes) == 7, run.stdout
    assert all(int(n) > 0 and int(w) == 0 for n, w in shapes), run.stdout
    assert run.returncode == 0, run.stdout
