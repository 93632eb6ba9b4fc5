"""One nvcc run: CUDA source -> cubin (SASS) + PTX for one target, with the ptxas report.

The PTX is what a newer GPU (or the H100 standing in for an older arch) JIT-compiles; the
cubin is what a GPU of the target's own family runs directly.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from qimeng_serve.build.toolchain import Toolchain, ToolchainError
from qimeng_serve.errors import QimengError
from qimeng_serve.targets import Target

NVCC_TIMEOUT_S = 900
BASE_FLAGS = ("-std=c++17", "-O3", "--expt-relaxed-constexpr", "-lineinfo", "-Xptxas=-v", "-DNDEBUG")


class CompileError(QimengError):
    """nvcc rejected a generated source."""


@dataclass(frozen=True)
class KernelResources:
    """What ptxas reported for one entry function."""

    name: str
    registers: int
    smem_static: int
    stack: int
    spill_stores: int
    spill_loads: int

    @property
    def spills(self) -> bool:
        return self.spill_stores > 0 or self.spill_loads > 0


@dataclass
class CompileResult:
    cubin: bytes
    ptx: bytes
    flags: list[str]
    resources: dict[str, KernelResources] = field(default_factory=dict)
    log: str = ""


def nvcc_flags(target: Target) -> list[str]:
    """Flags that decide the binary: part of the build cache key.

    The SM80 recipe needs no arch-specific (`a`) features, so sm_90 builds plain sm_90: its
    compute_90 PTX then stays JIT-compilable on newer GPUs, which compute_90a PTX is not.
    """
    sm = target.arch
    compute = sm.replace("sm_", "compute_")
    return [*BASE_FLAGS, f"-gencode=arch={compute},code={sm}"]


def compile_source(source: Path, target: Target, toolchain: Toolchain) -> CompileResult:
    """Compile one .cu to a cubin for the target; keep the PTX nvcc made on the way."""
    return run_nvcc(source, nvcc_flags(target), toolchain, target.arch,
                    fix=f"read the generated source {source}; the lowering or a building block is at fault")


def run_nvcc(source: Path, flags: list[str], toolchain: Toolchain, arch_label: str, *, fix: str) -> CompileResult:
    """nvcc with these flags (they decide the binary) -> cubin, the kept PTX and the ptxas report.
    `fix` is what a compile error tells the user to look at."""
    includes = [f"-I{toolchain.kernels_include}", f"-I{toolchain.cutlass_include}"]
    with tempfile.TemporaryDirectory(prefix="qimeng-nvcc-") as tmp:
        tmpdir = Path(tmp)
        cubin = tmpdir / (source.stem + ".cubin")
        argv = [str(toolchain.nvcc), *flags, *includes, "-cubin", "--keep", f"--keep-dir={tmpdir}",
                "-o", str(cubin), str(source)]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=NVCC_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise CompileError(f"nvcc ran longer than {NVCC_TIMEOUT_S} s on {source}",
                               fix="reduce the number of kernels per source or check the machine's load") from None
        except OSError as exc:
            raise ToolchainError(f"cannot run {toolchain.nvcc}: {exc}", fix="check the CUDA toolkit installation") from None
        log = proc.stdout + proc.stderr
        if proc.returncode != 0:
            tail = "\n".join(log.strip().splitlines()[-25:])
            raise CompileError(f"nvcc failed on {source} for {arch_label}:\n{tail}", fix=fix)
        ptx_files = sorted(tmpdir.glob("*.ptx"))
        if not ptx_files:
            raise CompileError(f"nvcc left no PTX for {source}", fix="check that --keep works with this nvcc")
        return CompileResult(cubin.read_bytes(), ptx_files[0].read_bytes(), list(flags), parse_ptxas_report(log), log)


_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(\w+)'")
_USED = re.compile(r"Used (\d+) registers(?:, used \d+ barriers)?(?:, (\d+) bytes smem)?")


def parse_ptxas_report(log: str) -> dict[str, KernelResources]:
    """Per entry function: registers, static shared memory, stack and spills, from `ptxas -v` output."""
    out: dict[str, KernelResources] = {}
    current = None
    stack = stores = loads = 0
    for line in log.splitlines():
        if m := _ENTRY.search(line):
            current, stack, stores, loads = m.group(1), 0, 0, 0
            continue
        if current is None:
            continue
        if "bytes stack frame" in line:
            nums = [int(x) for x in re.findall(r"(\d+) bytes", line)]
            if len(nums) >= 3:
                stack, stores, loads = nums[0], nums[1], nums[2]
        elif m := _USED.search(line):
            out[current] = KernelResources(current, int(m.group(1)), int(m.group(2) or 0), stack, stores, loads)
            current = None
    return out
