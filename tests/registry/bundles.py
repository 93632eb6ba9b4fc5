"""Small real bundles for registry tests: safetensors files with uint8 blobs and a manifest shaped
like the one `qimeng-serve build` writes (written by the real bundle writer)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from qimeng_serve.build.bundle import BUNDLE_SCHEMA, write_bundle
from qimeng_serve.registry.index import update_index
from qimeng_serve.registry.layout import bundle_path

OPS = ("dense_prefill", "paged_decode", "paged_prefill")


def _blob(*parts: object, size: int = 3000) -> bytes:
    seed = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def make_bundle(registry: Path, arch: str = "sm_80", dtype: str = "f16", kernel_set: str = "default", *,
                head_dims=(64, 128), ops=OPS, sass=None, ptx=None, validation: str | None = "passed",
                device: str = "NVIDIA H100", benchmark: bool = False, salt: str = "") -> Path:
    """Write one bundle into `registry` at its layout path; returns the path."""
    sass = [arch] if sass is None else list(sass)
    ptx = [arch.replace("sm_", "compute_").rstrip("a")] if ptx is None else list(ptx)
    kernels, blobs = {}, {}
    for op in ops:
        for hd in head_dims:
            for role in (("split", "combine") if op == "paged_decode" else ("attn",)):
                name = f"qm_{op}_{role}_{dtype}_hd{hd}"
                kernels[name] = {
                    "family": op, "role": role,
                    "spec": {"op": op, "dtype": dtype, "head_dim": hd, "softcap": 0.0},
                    "observed": {"sass": sass, "ptx": ptx},
                    "tensors": {"cubin": f"{name}.cubin", "ptx": f"{name}.ptx", "cuda": f"{name}.cu"},
                    "validation": None if validation is None else {
                        "status": validation, "device": device, "method": f"validated via {arch} SASS on {device}",
                        "checks": 12, "failed": [] if validation == "passed" else ["case 3"]},
                    "benchmark": None if not benchmark else {
                        "device": device, "method": f"{arch} SASS",
                        "rows": [{"unit": "TFLOPS", "ours": 300.0 + hd, "fa2": 330.0, "head_dim": hd},
                                 {"unit": "GB/s", "ours": 2500.0, "sdpa": 2000.0, "head_dim": hd}]},
                }
                blobs[f"{name}.cubin"] = _blob(arch, dtype, kernel_set, name, salt, "cubin")
                blobs[f"{name}.ptx"] = _blob(arch, dtype, kernel_set, name, salt, "ptx", size=800)
                blobs[f"{name}.cu"] = f"// {name} {salt}\n".encode()
    manifest = {"schema": BUNDLE_SCHEMA, "kernel_set": kernel_set, "arch": arch, "dtype": dtype,
                "toolchain": {"nvcc": "13.0", "flags": []}, "created_by": "tests", "kernels": kernels, "rejected": []}
    path = registry / bundle_path(arch, dtype, kernel_set)
    write_bundle(path, manifest, blobs)
    return path


def make_registry(registry: Path, specs: list[dict] | None = None) -> Path:
    """A local registry with a few bundles and its index (and generated card)."""
    specs = specs if specs is not None else [
        {"arch": "sm_75", "dtype": "f16"},
        {"arch": "sm_80", "dtype": "f16", "benchmark": True},
        {"arch": "sm_80", "dtype": "bf16"},
        {"arch": "sm_90", "dtype": "f16"},
    ]
    registry.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        make_bundle(registry, **spec)
    update_index(registry)
    return registry
