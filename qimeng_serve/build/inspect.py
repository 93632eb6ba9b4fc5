"""What a built binary really contains, read without a GPU: SASS arch (cuobjdump) and PTX target."""

from __future__ import annotations

import re
import subprocess
import tempfile

from qimeng_serve.build.toolchain import Toolchain


def ptx_target(ptx: bytes) -> str:
    """The `.target sm_XX` line of a PTX module, as compute_XX."""
    m = re.search(rb"^\s*\.target\s+(sm_\w+)", ptx, re.M)
    return m.group(1).decode().replace("sm_", "compute_") if m else "unknown"


def sass_archs(cubin: bytes, toolchain: Toolchain) -> list[str]:
    """SASS architectures cuobjdump lists in the binary; empty when cuobjdump is unavailable."""
    if toolchain.cuobjdump is None:
        return []
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        proc = subprocess.run([str(toolchain.cuobjdump), "-lelf", f.name], capture_output=True, text=True, timeout=60)
    return sorted(set(re.findall(r"\.(sm_\w+)\.cubin", proc.stdout)))


def observed_targets(cubin: bytes, ptx: bytes, toolchain: Toolchain) -> dict[str, list[str]]:
    return {"sass": sass_archs(cubin, toolchain), "ptx": [ptx_target(ptx)]}
