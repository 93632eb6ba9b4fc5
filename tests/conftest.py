"""Shared test helpers: where the golden TL programs live, and host programs built with nvcc."""

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GOLDEN_DIR = REPO / "kernels_src" / "tl"


def golden_paths() -> list[Path]:
    return sorted(GOLDEN_DIR.glob("*.tl"))


@pytest.fixture
def repo() -> Path:
    return REPO


def build_host_program(source: Path, exe: Path, *flags: str) -> Path:
    """nvcc a host-only harness against the building blocks and CuTe (no GPU needed); the test is
    skipped where no CUDA toolchain is found, and fails with nvcc's output where the build fails."""
    from qimeng_serve.build.toolchain import ToolchainError, find_toolchain

    try:
        tc = find_toolchain()
    except ToolchainError as exc:
        pytest.skip(f"no CUDA toolchain: {exc}")
    build = subprocess.run([str(tc.nvcc), "-std=c++17", *flags, f"-I{tc.kernels_include}", f"-I{tc.cutlass_include}",
                            "-o", str(exe), str(source)], check=False, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout + build.stderr
    return exe
