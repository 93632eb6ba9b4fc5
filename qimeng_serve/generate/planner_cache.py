"""The planner's result cache: a warm `build` re-plans nothing.

The key covers what decides the plan: the spec, the target, the planner's settings, and a digest
of the code the plan depends on (the planner and cost model, the TL checker and interpreter, the
lowering), so editing any of them re-plans instead of serving a stale program. Entries live next
to the build cache (QIMENG_CACHE_DIR/planner) and are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

from qimeng_serve.build.cache import cache_root
from qimeng_serve.spec import AttentionSpec

_PACKAGE = Path(__file__).resolve().parents[1]
# the code a plan depends on; the LLM generator's module is not among it
_PLAN_INPUTS = ("generate/sketches.py", "generate/param_space.py", "generate/features.py", "generate/cost_model.py",
                "generate/interpret_gate.py", "generate/planner.py", "generate/tune.py", "generate/hopper_sketches.py",
                "generate/hopper_cost.py", "generate/hopper_planner.py", "tl", "lower")


@lru_cache(maxsize=1)
def code_digest() -> str:
    h = hashlib.sha256()
    for rel in _PLAN_INPUTS:
        path = _PACKAGE / rel
        files = sorted(p for p in path.rglob("*") if p.suffix in (".py", ".lark")) if path.is_dir() else [path]
        for f in files:
            h.update(str(f.relative_to(_PACKAGE)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def plan_key(spec: AttentionSpec, arch: str, settings: dict) -> str:
    blob = json.dumps([spec.to_dict(), arch, settings, code_digest()], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _path(key: str) -> Path:
    return cache_root().parent / "planner" / key[:2] / f"{key}.json"


def load(key: str) -> dict | None:
    try:
        return json.loads(_path(key).read_text())
    except (OSError, ValueError):
        return None


def store(key: str, payload: dict) -> None:
    path = _path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(payload, fh, sort_keys=True)
    os.replace(tmp, path)  # readers see the old entry or the new one, never half of one
