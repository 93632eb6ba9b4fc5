"""The registry's index.json: every bundle with what it holds and its sha256.

The registry work (publish, pull, verify, lock) builds on this file; `build` keeps it current.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from qimeng_serve.build.bundle import read_manifest, sha256_file

INDEX_SCHEMA = "qimeng-registry/1"


def bundle_entry(registry: Path, path: Path) -> dict:
    m = read_manifest(path)
    kernels = m["kernels"].values()
    return {
        "path": path.relative_to(registry).as_posix(),
        "arch": m["arch"],
        "dtype": m["dtype"],
        "kernel_set": m["kernel_set"],
        "head_dims": sorted({k["spec"]["head_dim"] for k in kernels}),
        "ops": sorted({k["family"] for k in kernels}),
        "sass": sorted({a for k in kernels for a in k["observed"]["sass"]}),
        "ptx": sorted({a for k in kernels for a in k["observed"]["ptx"]}),
        "size": path.stat().st_size,
        "sha256": sha256_file(path),
        "validation": _summary(kernels, "validation"),
        "benchmark": _summary(kernels, "benchmark"),
    }


def _summary(kernels, key: str) -> str:
    done = [k[key] for k in kernels if k.get(key)]
    if not done:
        return "not run"
    if key == "validation":
        bad = [v for v in done if v.get("status") != "passed"]
        return f"{len(done) - len(bad)}/{len(done)} passed" + (f" ({done[0].get('method', '')})" if done else "")
    return f"{len(done)} measured"


def update_index(registry: Path) -> Path:
    bundles = sorted(registry.glob("sm_*/*/*.safetensors"))
    index = {"schema": INDEX_SCHEMA, "bundles": [bundle_entry(registry, b) for b in bundles]}
    path = registry / "index.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path
