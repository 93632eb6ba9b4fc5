"""traits.cuh refuses register splits the CTA cannot hold: setmaxnreg only moves registers between
warpgroups within what the CTA was launched with (per thread the register file over the threads,
rounded down to 8: 168 at 384 threads). 48 + 2 x 232 at 384 threads fits the 65536-register file but
not the launch, and such a kernel hung on an H100 (perf-notes "fourteenth run"): the consumers'
setmaxnreg.inc never returned. The build must fail instead."""

from __future__ import annotations

import shutil
import subprocess

import pytest

needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc on PATH")

SNIPPET = """#include <qimeng/sm90/traits.cuh>
using Split = qm::sm90::Traits<qm::sm90::bf16, 128, 128, 128, 3, 2, 48, 232>;
int main() { return Split::kLaunchRegs; }
"""


@needs_nvcc
def test_a_split_past_the_launch_allocation_does_not_compile(tmp_path):
    from qimeng_serve.build.toolchain import find_toolchain

    toolchain = find_toolchain()
    src = tmp_path / "split.cu"
    src.write_text(SNIPPET)
    proc = subprocess.run([str(toolchain.nvcc), "-std=c++17", "--expt-relaxed-constexpr", "-arch=sm_90a",
                           f"-I{toolchain.kernels_include}", f"-I{toolchain.cutlass_include}", "-c", "-o",
                           str(tmp_path / "split.o"), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "exceed what the CTA is launched with" in proc.stdout + proc.stderr
