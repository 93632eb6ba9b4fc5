"""Content-addressed build cache: an unchanged kernel is never compiled twice.

The key covers everything that decides the binary: the generated CUDA source, the building-block
headers it includes, the target's SASS arch, the nvcc flags and the toolchain versions.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

from qimeng_serve.build.nvcc import CompileResult, KernelResources


def cache_root() -> Path:
    env = os.environ.get("QIMENG_CACHE_DIR")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "qimeng-serve"
    return base / "build"


@lru_cache(maxsize=4)
def headers_digest(include_dir: Path) -> str:
    """sha256 over every building-block header (path and bytes), so editing one invalidates the cache."""
    h = hashlib.sha256()
    for path in sorted(include_dir.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(include_dir)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


# 2: --tune compiled a kernel's candidates in one folder under one file name, so an entry could hold
# another candidate's cubin (session 13); a new schema leaves those entries behind
CACHE_SCHEMA = 2


def build_key(cuda_source: str, sass_arch: str, flags: list[str], toolchain_fingerprint: str, headers: str) -> str:
    blob = json.dumps([CACHE_SCHEMA, cuda_source, sass_arch, flags, toolchain_fingerprint, headers], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def load(key: str) -> CompileResult | None:
    """The cached result, or None on a miss (an incomplete entry counts as a miss)."""
    entry = cache_root() / key[:2] / key
    try:
        report = json.loads((entry / "report.json").read_text())
        cubin = (entry / "kernel.cubin").read_bytes()
        ptx = (entry / "kernel.ptx").read_bytes()
    except (OSError, ValueError):
        return None
    resources = {name: KernelResources(**r) for name, r in report["resources"].items()}
    return CompileResult(cubin, ptx, report["flags"], resources, report.get("log", ""))


def store(key: str, result: CompileResult) -> None:
    """Write atomically: a temp folder renamed into place, so readers never see half an entry."""
    final = cache_root() / key[:2] / key
    if final.exists():
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
    (tmp / "kernel.cubin").write_bytes(result.cubin)
    (tmp / "kernel.ptx").write_bytes(result.ptx)
    report = {"flags": result.flags, "log": result.log,
              "resources": {n: vars(r) for n, r in result.resources.items()}}
    (tmp / "report.json").write_text(json.dumps(report, indent=1))
    try:
        tmp.rename(final)
    except OSError:  # another build stored the same key first: theirs is as good as ours
        shutil.rmtree(tmp, ignore_errors=True)
