"""Small real registries for the plugin's CPU tests.

Bundles written by the real bundle writer and indexed by the real indexer; the manifests carry what
`qimeng-serve build` records and the plugin reads (family, role, spec, tile params, launch, observed
SASS/PTX). The binaries are placeholder bytes: on the CPU the plugin reads manifests, never cubins.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from qimeng_serve.build.bundle import BUNDLE_SCHEMA, write_bundle
from qimeng_serve.registry.index import update_index
from qimeng_serve.registry.layout import bundle_path

SPLIT_KV = 512
DECODE_ROWS = 16


def _kernel(arch: str, family: str, role: str, dtype: str, hd: int, softcap: float) -> tuple[str, dict]:
    recipe = "sm75" if arch == "sm_75" else "sm80"
    name = f"qm_{family}_{recipe}_{role}_{dtype}_hd{hd}"
    if family == "paged_decode":
        params = {"BLOCK_M": DECODE_ROWS, "BLOCK_N": 64, "SPLIT_KV": SPLIT_KV, "STAGES": 1, "WARPS": 4}
        grid = ["cdiv(max_seq_k, 512)", "heads_kv", "batch"] if role == "split" else ["heads_q", "batch"]
    else:
        params = {"BLOCK_M": 128 if recipe == "sm80" else 64, "BLOCK_N": 32, "STAGES": 1, "WARPS": 4}
        grid = [f"cdiv(max_seq_q, {params['BLOCK_M']})", "heads_q", "batch"]
    return name, {
        "family": family, "role": role, "params": params,
        "spec": {"op": family, "dtype": dtype, "head_dim": hd, "softcap": softcap, "causal": True,
                 "gqa_group": 16 if family == "paged_decode" else 1, "sliding_window": 0, "decode_query_len": 1},
        "launch": {"grid": grid, "threads": 128, "smem_bytes": 49152},
        "runtime_features": ["causal", "sliding_window", "gqa", "paged_kv"],
        "observed": {"sass": [arch], "ptx": [arch.replace("sm_", "compute_")]},
        "tensors": {"cubin": f"{name}.cubin", "ptx": f"{name}.ptx", "cuda": f"{name}.cu"},
        "validation": {"status": "passed", "device": "NVIDIA H200", "method": f"{arch} on NVIDIA H200"},
        "benchmark": None,
    }


def make_serving_bundle(registry: Path, arch: str, dtype: str = "f16", *, head_dims=(64, 128, 256),
                        decode_head_dims=None, softcap: float = 0.0) -> Path:
    """One bundle with paged prefill (every head size) and split-KV decode (`decode_head_dims`)."""
    kernel_set = "default" if not softcap else f"softcap{softcap:g}"
    decode_head_dims = head_dims if decode_head_dims is None else decode_head_dims
    kernels, blobs = {}, {}
    jobs = [("paged_prefill", "attn", hd) for hd in head_dims]
    jobs += [("paged_decode", role, hd) for hd in decode_head_dims for role in ("split", "combine")]
    for family, role, hd in jobs:
        name, meta = _kernel(arch, family, role, dtype, hd, softcap)
        kernels[name] = meta
        seed = hashlib.sha256(f"{arch}/{dtype}/{kernel_set}/{name}".encode()).digest()
        blobs[meta["tensors"]["cubin"]] = seed * 32
        blobs[meta["tensors"]["ptx"]] = seed * 8
        blobs[meta["tensors"]["cuda"]] = f"// {name}\n".encode()
    manifest = {"schema": BUNDLE_SCHEMA, "kernel_set": kernel_set, "arch": arch, "dtype": dtype,
                "toolchain": {"nvcc": "13.0", "flags": []}, "created_by": "tests", "kernels": kernels,
                "rejected": []}
    path = registry / bundle_path(arch, dtype, kernel_set)
    write_bundle(path, manifest, blobs)
    return path


def make_serving_registry(registry: Path) -> Path:
    """Like a real registry: sm_75 f16 (no D=256 decode, as ptxas budgets dictate there), sm_80 f16 and
    bf16 with head sizes 64 and 128 only, sm_90 f16 and bf16, and a soft-capped (50) sm_90 f16 set."""
    registry.mkdir(parents=True, exist_ok=True)
    make_serving_bundle(registry, "sm_75", "f16", decode_head_dims=(64, 128))
    make_serving_bundle(registry, "sm_80", "f16", head_dims=(64, 128))
    make_serving_bundle(registry, "sm_80", "bf16", head_dims=(64, 128))
    make_serving_bundle(registry, "sm_90", "f16")
    make_serving_bundle(registry, "sm_90", "bf16")
    make_serving_bundle(registry, "sm_90", "f16", softcap=50.0)
    update_index(registry)
    return registry
