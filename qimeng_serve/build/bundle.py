"""Bundles: one .safetensors file per (arch, dtype, kernel set).

The binaries are uint8 tensors (`<entry>.cubin`, `<entry>.ptx`, and the generated `<entry>.cu` for
provenance); the JSON manifest sits in the file's metadata under `qimeng.manifest`. No pickle, no
timestamps: the same inputs give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from qimeng_serve.errors import QimengError

MANIFEST_KEY = "qimeng.manifest"
BUNDLE_SCHEMA = "qimeng-bundle/1"


class BundleError(QimengError):
    """A bundle that cannot be read or has no manifest."""


def bundle_filename(arch: str, dtype: str, kernel_set: str) -> str:
    return f"qimeng-{kernel_set}-{arch}-{dtype}.safetensors"


def write_bundle(path: Path, manifest: dict, blobs: dict[str, bytes]) -> str:
    """Write atomically; returns the file's sha256."""
    tensors = {name: np.frombuffer(data, dtype=np.uint8).copy() for name, data in sorted(blobs.items())}
    meta = {MANIFEST_KEY: json.dumps(manifest, sort_keys=True, separators=(",", ":"))}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.chmod(tmp, 0o644)  # safetensors creates 0600 files; a registry is meant to be shared
    os.replace(tmp, path)
    return sha256_file(path)


def read_manifest(path: Path) -> dict:
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for a corrupt header
        raise BundleError(f"{path} is not a readable safetensors bundle: {exc}",
                          fix="rebuild it with `qimeng-serve build`, or pull it again") from None
    if MANIFEST_KEY not in meta:
        raise BundleError(f"{path} has no qimeng manifest", fix="rebuild it with `qimeng-serve build`")
    return json.loads(meta[MANIFEST_KEY])


def read_blob(path: Path, name: str) -> bytes:
    with safe_open(str(path), framework="numpy") as f:
        return f.get_tensor(name).tobytes()


def write_manifest(path: Path, manifest: dict) -> str:
    """Rewrite a bundle with an updated manifest (validation or benchmark results), same blobs."""
    with safe_open(str(path), framework="numpy") as f:
        blobs = {name: f.get_tensor(name).tobytes() for name in f.keys()}
    return write_bundle(path, manifest, blobs)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
