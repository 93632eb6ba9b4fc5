"""Find the tools stage 2 needs: nvcc, the CuTe/CUTLASS headers, cuobjdump.

Each lookup raises ToolchainError with the install step when the tool is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from qimeng_serve.errors import QimengError

REPO_ROOT = Path(__file__).resolve().parents[2]
KERNELS_INCLUDE = REPO_ROOT / "kernels_src" / "include"


class ToolchainError(QimengError):
    """nvcc, the CUTLASS headers or cuobjdump cannot be found or do not work."""


@dataclass(frozen=True)
class Toolchain:
    nvcc: Path
    nvcc_version: str  # e.g. "13.0.88"
    cutlass_include: Path
    kernels_include: Path
    cuobjdump: Path | None

    def fingerprint(self) -> str:
        """What the build cache keys on besides the source: the compiler and header versions."""
        return f"nvcc-{self.nvcc_version}+cutlass-{cutlass_version()}"


def find_nvcc() -> Path:
    candidates = [os.environ.get("QIMENG_NVCC"), shutil.which("nvcc")]
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if cuda_home:
        candidates.append(str(Path(cuda_home) / "bin" / "nvcc"))
    candidates.append("/usr/local/cuda/bin/nvcc")
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return Path(c)
    raise ToolchainError(
        "nvcc not found (looked at QIMENG_NVCC, PATH, CUDA_HOME and /usr/local/cuda)",
        fix="install the CUDA toolkit (12.8 or newer) or `pip install nvidia-cuda-nvcc`, and put nvcc on PATH",
    )


def nvcc_version(nvcc: Path) -> str:
    try:
        text = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolchainError(f"{nvcc} --version failed: {exc}", fix="check the CUDA toolkit installation") from None
    match = re.search(r"release [\d.]+, V([\d.]+)", text)
    if not match:
        raise ToolchainError(f"cannot read the version from `{nvcc} --version`", fix="check the CUDA toolkit installation")
    return match.group(1)


def find_cutlass_include() -> Path:
    env = os.environ.get("QIMENG_CUTLASS_INCLUDE")
    if env:
        path = Path(env)
    else:
        try:
            import cutlass_library
        except ImportError:
            raise ToolchainError(
                "the CuTe/CUTLASS headers are missing (python package nvidia-cutlass is not installed)",
                fix="pip install nvidia-cutlass==4.2.0.0, or set QIMENG_CUTLASS_INCLUDE to a CUTLASS include/ folder",
            ) from None
        path = Path(cutlass_library.__file__).parent / "source" / "include"
    if not (path / "cute" / "tensor.hpp").is_file():
        raise ToolchainError(
            f"no CuTe headers under {path} (cute/tensor.hpp missing)",
            fix="reinstall nvidia-cutlass, or point QIMENG_CUTLASS_INCLUDE at a CUTLASS include/ folder",
        )
    return path


def cutlass_version() -> str:
    try:
        from importlib.metadata import version

        return version("nvidia-cutlass")
    except Exception:  # a headers-only checkout given by QIMENG_CUTLASS_INCLUDE has no package metadata
        return "external"


def find_cuobjdump() -> Path | None:
    """cuobjdump from PATH or from the nvidia-cuda-cuobjdump wheel; None if neither."""
    found = shutil.which("cuobjdump")
    if found:
        return Path(found)
    try:
        import nvidia.cu13 as cu13  # the wheel's namespace package

        path = Path(list(cu13.__path__)[0]) / "bin" / "cuobjdump"
        return path if path.is_file() else None
    except ImportError:
        return None


@lru_cache(maxsize=1)
def find_toolchain() -> Toolchain:
    nvcc = find_nvcc()
    return Toolchain(nvcc, nvcc_version(nvcc), find_cutlass_include(), KERNELS_INCLUDE, find_cuobjdump())
