"""The SM80 building blocks compute some shared-memory offsets by hand (ldmatrix rows in gemm.cuh,
16-byte copy chunks in traits.cuh) to keep them out of registers; a host program checks them
against CuTe's layouts for every thread of the tile shapes in use (needs nvcc, no GPU)."""

import re
import subprocess

import pytest

from tests.conftest import REPO, build_host_program

HARNESS = REPO / "tests" / "unit" / "kernels" / "building_block_offsets.cu"


@pytest.mark.nvcc
def test_hand_computed_offsets_match_cute_for_every_thread(tmp_path):
    exe = build_host_program(HARNESS, tmp_path / "offsets", "--expt-relaxed-constexpr")
    run = subprocess.run([str(exe)], check=False, capture_output=True, text=True, timeout=120)
    shapes = re.findall(r"^D=\d+ .*: (\d+) offsets, (\d+) wrong$", run.stdout, flags=re.MULTILINE)
    assert len(shapes) == 7, run.stdout
    assert all(int(n) > 0 and int(w) == 0 for n, w in shapes), run.stdout
    assert run.returncode == 0, run.stdout
