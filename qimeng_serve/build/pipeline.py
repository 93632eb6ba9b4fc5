"""`qimeng-serve build`: TL programs -> CUDA -> cubins (+PTX) -> bundles in a local registry.

Stage 1 here takes the golden TL program of each family (the planner replaces it later); stage 2
lowers it; nvcc compiles in parallel through the content-addressed cache; a candidate that spills
registers is rejected with the reason.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from qimeng_serve import __version__
from qimeng_serve.build import cache
from qimeng_serve.build.bundle import BUNDLE_SCHEMA, bundle_filename, read_blob, read_manifest, write_bundle
from qimeng_serve.build.inspect import observed_targets
from qimeng_serve.build.kernel_set import KernelJob, default_jobs, kernel_set_name
from qimeng_serve.build.nvcc import CompileError, CompileResult, compile_source, nvcc_flags
from qimeng_serve.build.toolchain import Toolchain, find_toolchain
from qimeng_serve.lower.emit import CudaSource, lower
from qimeng_serve.registry.index import update_index
from qimeng_serve.targets import Target, get_target
from qimeng_serve.tl.printer import print_tl


# A few spilled bytes (ptxas keeps them outside the hot loop when it can) cost nothing measurable:
# 128 x 32 tiles at D = 128 spill 24 B and run 0.85-0.89x SDPA flash where the spill-free 8-warp
# tiles run 0.74-0.81x (docs/perf-notes.md). More than this is rejected; any spill is in the manifest.
SPILL_LIMIT_BYTES = 64


@dataclass
class KernelOutcome:
    arch: str
    job: KernelJob
    source: CudaSource
    result: CompileResult
    cached: bool
    observed: dict[str, list[str]]  # SASS and PTX targets really in the binary
    rejected: str = ""  # why the kernel is left out of the bundle


@dataclass
class BuildReport:
    arch: str
    outcomes: list[KernelOutcome] = field(default_factory=list)
    bundles: list[Path] = field(default_factory=list)


def _compile_one(job: KernelJob, target: Target, toolchain: Toolchain, workdir: Path) -> KernelOutcome:
    source = lower(job.program, target, job.spec, source_name=str(job.program_path))
    flags = nvcc_flags(target)
    key = cache.build_key(source.text, target.arch, flags, toolchain.fingerprint(),
                          cache.headers_digest(toolchain.kernels_include))
    hit = cache.load(key)
    cached = hit is not None
    if hit is None:
        cu = workdir / f"{source.entries[0].name}.cu"
        cu.write_text(source.text)
        try:
            hit = compile_source(cu, target, toolchain)
        except CompileError as exc:  # one bad candidate must not sink the others: report it, keep going
            keep = Path(tempfile.gettempdir()) / "qimeng-failed" / cu.name
            keep.parent.mkdir(parents=True, exist_ok=True)
            keep.write_text(source.text)
            empty = CompileResult(b"", b"", nvcc_flags(target), {}, exc.message)
            return KernelOutcome(target.arch, job, source, empty, False, {"sass": [], "ptx": []},
                                 rejected=f"nvcc failed on {keep}: {_first_error(exc.message)}")
        cache.store(key, hit)
    outcome = KernelOutcome(target.arch, job, source, hit, cached, observed_targets(hit.cubin, hit.ptx, toolchain))
    spilling = [r for r in hit.resources.values() if r.spill_stores + r.spill_loads > SPILL_LIMIT_BYTES]
    if spilling:
        r = spilling[0]
        outcome.rejected = (f"{r.name} spills {r.spill_stores} B stores / {r.spill_loads} B loads at "
                            f"{r.registers} registers (limit {SPILL_LIMIT_BYTES} B): choose smaller tiles in "
                            f"{job.program_path.name}")
    return outcome


def _first_error(log: str) -> str:
    return next((line.strip() for line in log.splitlines() if "error" in line), log.strip()[-200:])


def build_arch(arch: str, registry: Path, *, dtypes: list[str] | None = None, head_dims: list[int] | None = None,
               families: list[str] | None = None, softcap: float = 0.0, jobs_limit: int | None = None,
               on_kernel: Callable[[KernelOutcome], None] | None = None) -> BuildReport:
    target = get_target(arch)
    toolchain = find_toolchain()
    jobs = default_jobs(target, dtypes, head_dims, families, softcap)
    report = BuildReport(target.arch)
    workers = jobs_limit or max(1, os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="qimeng-build-") as tmp, ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(_compile_one, job, target, toolchain, Path(tmp)) for job in jobs]
        for fut in futures:
            outcome = fut.result()
            report.outcomes.append(outcome)
            if on_kernel:
                on_kernel(outcome)
    for dtype in sorted({o.job.spec.dtype for o in report.outcomes}):
        chosen = [o for o in report.outcomes if o.job.spec.dtype == dtype]
        report.bundles.append(_write_bundle(registry, target, dtype, chosen, toolchain, kernel_set_name(softcap)))
    update_index(registry)
    return report


def _write_bundle(registry: Path, target: Target, dtype: str, outcomes: list[KernelOutcome], toolchain: Toolchain,
                  kernel_set: str) -> Path:
    kernels, blobs, rejected = {}, {}, []
    for o in outcomes:
        if o.rejected:
            rejected.append({"program": o.job.program.name, "spec": o.job.spec.to_dict(), "reason": o.rejected})
            continue
        tl_text = print_tl(o.job.program)
        for entry in o.source.entries:
            res = o.result.resources.get(entry.name)
            kernels[entry.name] = {
                "family": o.job.spec.op,
                "role": entry.role,
                "tl_kernel": entry.tl_kernel,
                "spec": o.job.spec.to_dict(),
                "runtime_features": ["causal", "sliding_window", "gqa", "paged_kv" if "paged" in o.job.spec.op else "dense_kv"],
                "compiled_features": {"softcap": o.job.spec.softcap},
                "tl": {"program": o.job.program.name, "file": o.job.program_path.name, "source": tl_text,
                       "sha256": hashlib.sha256(tl_text.encode()).hexdigest()},
                "cuda_sha256": o.source.sha256,
                "params": o.source.params,
                "launch": {"threads": entry.threads, "grid": entry.grid, "smem_bytes": entry.smem_bytes},
                "resources": vars(res) if res else None,
                "observed": o.observed,
                "tensors": {"cubin": f"{entry.name}.cubin", "ptx": f"{entry.name}.ptx", "cuda": f"{entry.name}.cu"},
                "validation": None,
                "benchmark": None,
            }
            # one module holds every entry of a TL program: the same cubin under each entry name
            blobs[f"{entry.name}.cubin"] = o.result.cubin
            blobs[f"{entry.name}.ptx"] = o.result.ptx
            blobs[f"{entry.name}.cu"] = o.source.text.encode()
    manifest = {
        "schema": BUNDLE_SCHEMA,
        "kernel_set": kernel_set,
        "arch": target.arch,
        "dtype": dtype,
        "target": {"family": target.family, "smem_optin_max": target.smem_optin_max, "examples": list(target.examples)},
        "toolchain": {"nvcc": toolchain.nvcc_version, "cutlass": toolchain.fingerprint().split("+cutlass-")[1],
                      "flags": nvcc_flags(target)},
        "created_by": f"qimeng-serve {__version__}",
        "kernels": kernels,
        "rejected": rejected,
    }
    path = registry / target.arch / dtype / bundle_filename(target.arch, dtype, kernel_set)
    _keep_other_kernels(path, manifest, blobs, {(o.job.spec.op, o.job.spec.head_dim) for o in outcomes})
    write_bundle(path, manifest, blobs)
    return path


def _keep_other_kernels(path: Path, manifest: dict, blobs: dict[str, bytes], rebuilt: set) -> None:
    """A partial build (--family / --head-dim) keeps the bundle's other kernels instead of dropping
    them, when they were made by the same toolchain; a toolchain change replaces the whole bundle."""
    if not path.is_file():
        return
    old = read_manifest(path)
    if old.get("toolchain") != manifest["toolchain"]:
        return
    for name, meta in old["kernels"].items():
        if (meta["family"], meta["spec"]["head_dim"]) in rebuilt or name in manifest["kernels"]:
            continue
        manifest["kernels"][name] = meta
        for tensor in meta["tensors"].values():
            blobs[tensor] = read_blob(path, tensor)
