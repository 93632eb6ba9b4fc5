"""`qimeng-serve build`: stage 1 (TL programs) -> stage 2 (CUDA) -> cubins (+PTX) -> bundles in a registry.

Stage 1 asks a generator (the planner by default, kernel_set.generator_for) for each job's TL
program; stage 2 lowers it; nvcc compiles in parallel through the content-addressed cache; a kernel
that spills registers is rejected with the reason. The manifest keeps each program's text, its hash
and the generator's record of how it was made.

On sm_90 the bundle also gets the Hopper kernels (kernel_set.hopper_jobs: `<family>_sm90.tl`, or with
hopper_generator="planner" the Hopper planner's program, lowered by emit_sm90 and compiled for sm_90a
through the same cache, spill check and ptxas feedback), as extra entries with
`"variant": "sm90a"` beside the portable kernels, which stay: their compute_90 PTX serves GPUs that
cannot run sm_90a SASS. `hopper=False` (`build --no-hopper`) leaves them out.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from qimeng_serve import __version__
from qimeng_serve.build import cache
from qimeng_serve.build.bundle import BUNDLE_SCHEMA, bundle_filename, read_blob, read_manifest, write_bundle
from qimeng_serve.build.inspect import observed_targets, sass_archs
from qimeng_serve.build.kernel_set import (
    GOLDEN_DIR,
    SM90A,
    TMA_LAYOUT,
    HopperPrograms,
    KernelJob,
    default_jobs,
    generator_for,
    hopper_jobs,
    kernel_set_name,
    long_generated,
    tuned_mask,
)
from qimeng_serve.build.nvcc import CompileError, CompileResult, compile_source, nvcc_flags
from qimeng_serve.build.toolchain import Toolchain, find_toolchain
from qimeng_serve.errors import QimengError
from qimeng_serve.generate.base import GenerationRecord, Generator
from qimeng_serve.lower.emit import CudaSource, lower
from qimeng_serve.registry.index import update_index
from qimeng_serve.targets import Target, get_target
from qimeng_serve.tl.printer import print_tl


# A few spilled bytes (ptxas keeps them outside the hot loop when it can) cost nothing measurable:
# 128 x 32 tiles at D = 128 spill 24 B and run 0.85-0.89x SDPA flash where the spill-free 8-warp
# tiles run 0.74-0.81x (docs/perf-notes.md). More than this is rejected; any spill is in the manifest.
SPILL_LIMIT_BYTES = 64
# A planner record holds thousands of attempts; the manifest keeps the measured / interpreted ones and
# the best-ranked, with every count (the whole record: `qimeng-serve generate --show-candidates`).
MANIFEST_ATTEMPTS = 40
# ptxas's register allocation is the one figure stage 1 can only estimate: a program that spills past
# the limit goes back to its generator for the next-best program this many times (Planner.next_program)
SPILL_RETRIES = 3


@dataclass
class KernelOutcome:
    arch: str
    job: KernelJob
    source: CudaSource
    result: CompileResult
    cached: bool
    observed: dict[str, list[str]]  # SASS and PTX targets really in the binary
    rejected: str = ""  # why the kernel is left out of the bundle
    spilled: bool = False  # rejected because ptxas spilled past SPILL_LIMIT_BYTES


@dataclass
class BuildReport:
    arch: str
    outcomes: list[KernelOutcome] = field(default_factory=list)
    bundles: list[Path] = field(default_factory=list)
    not_generated: list[tuple[KernelJob, str]] = field(default_factory=list)  # stage 1 failures: (job, why)


def compile_job(job: KernelJob, target: Target, toolchain: Toolchain, workdir: Path) -> KernelOutcome:
    """Stage 2 and nvcc for one job whose program stage 1 has made."""
    if job.variant == SM90A:
        return compile_hopper_job(job, target, toolchain, workdir)
    source = lower(job.program, target, job.spec, source_name=job.source_name)
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
            return _nvcc_failed(target, job, source, flags, exc)
        cache.store(key, hit)
    outcome = KernelOutcome(target.arch, job, source, hit, cached, observed_targets(hit.cubin, hit.ptx, toolchain))
    return _reject_spills(outcome)


def compile_hopper_job(job: KernelJob, target: Target, toolchain: Toolchain, workdir: Path) -> KernelOutcome:
    """Stage 2 (emit_sm90.lower_sm90) and nvcc for sm_90a (sm90_build.compile_sm90) for one sm90a job,
    through the same content-addressed cache and spill check as compile_job. A program the Hopper
    lowering refuses is reported as rejected (the portable kernel of its family still ships)."""
    from qimeng_serve.lower.emit_sm90 import lower_sm90
    from qimeng_serve.lower.sm90_build import compile_sm90, nvcc_flags_sm90a

    flags = nvcc_flags_sm90a()
    try:
        source = lower_sm90(job.program, target, job.spec, source_name=job.source_name)
    except QimengError as exc:  # TL check or lowering refusal: the Hopper program is not ready for this spec
        empty = CompileResult(b"", b"", flags, {}, exc.message)
        return KernelOutcome(target.arch, job, CudaSource("", [], {}, ""), empty, False, {"sass": [], "ptx": []},
                             rejected=f"the sm90a lowering refused {job.source_name} for {job.label}: {exc.message}")
    key = cache.build_key(source.text, "sm_90a", flags, toolchain.fingerprint(),
                          cache.headers_digest(toolchain.kernels_include))
    hit = cache.load(key)
    cached = hit is not None
    if hit is None:
        try:
            hit = compile_sm90(source, toolchain, keep_dir=workdir / SM90A)
        except CompileError as exc:
            return _nvcc_failed(target, job, source, flags, exc)
        cache.store(key, hit)
    # the cubin is the artifact: compute_90a PTX runs on no other GPU, so none goes into the bundle
    observed = {"sass": sass_archs(hit.cubin, toolchain), "ptx": []}
    return _reject_spills(KernelOutcome(target.arch, job, source, hit, cached, observed))


def _nvcc_failed(target: Target, job: KernelJob, source: CudaSource, flags: list[str],
                 exc: CompileError) -> KernelOutcome:
    """The outcome of a source nvcc rejected, kept under $TMP/qimeng-failed for a look."""
    keep = Path(tempfile.gettempdir()) / "qimeng-failed" / f"{source.entries[0].name}.cu"
    keep.parent.mkdir(parents=True, exist_ok=True)
    keep.write_text(source.text)
    empty = CompileResult(b"", b"", list(flags), {}, exc.message)
    return KernelOutcome(target.arch, job, source, empty, False, {"sass": [], "ptx": []},
                         rejected=f"nvcc failed on {keep}: {_first_error(exc.message)}")


def _reject_spills(outcome: KernelOutcome) -> KernelOutcome:
    spilling = [r for r in outcome.result.resources.values() if r.spill_stores + r.spill_loads > SPILL_LIMIT_BYTES]
    if spilling:
        r = spilling[0]
        outcome.spilled = True
        outcome.rejected = (f"{r.name} spills {r.spill_stores} B stores / {r.spill_loads} B loads at "
                            f"{r.registers} registers (limit {SPILL_LIMIT_BYTES} B): the program from "
                            f"{outcome.job.source_name} needs smaller tiles")
    return outcome


def _compile_with_feedback(job: KernelJob, target: Target, toolchain: Toolchain, workdir: Path,
                           generator: Generator) -> KernelOutcome:
    """compile_job; when ptxas spills past the limit and the generator can offer another program
    (the planner: its next-best candidate that needs fewer registers), compile that instead."""
    outcome = compile_job(job, target, toolchain, workdir)
    next_program = getattr(generator, "next_program", None)
    for _ in range(SPILL_RETRIES):
        if not outcome.spilled or next_program is None:
            break
        replacement = next_program(job.spec, target, job.generated, outcome.rejected)
        if replacement is None:
            break
        job = replace(job, generated=replacement)
        outcome = compile_job(job, target, toolchain, workdir)
    return outcome


def _first_error(log: str) -> str:
    return next((line.strip() for line in log.splitlines() if "error" in line), log.strip()[-200:])


def hopper_stage1(name: str, *, tune: bool = False, tune_top: int = 4, progress=None,
                  tl_dir: Path = GOLDEN_DIR) -> Generator:
    """Stage 1 of the sm90a jobs: `golden` (the measured <tl_dir>/<family>_sm90.tl, the default)
    or `planner` (the Hopper planner; docs/planner.md says how its choices compared when timed; with
    tune, its top candidates measured on this machine's sm_90 GPU)."""
    if name == "golden":
        return HopperPrograms(tl_dir)
    if name == "planner":
        from qimeng_serve.generate.hopper_planner import HopperPlanner

        return HopperPlanner(tune=tune, tune_top=tune_top, progress=progress)
    raise QimengError(f"unknown Hopper generator '{name}'", fix="use --hopper-generator golden (default) or planner")


def build_arch(arch: str, registry: Path, *, dtypes: list[str] | None = None, head_dims: list[int] | None = None,
               families: list[str] | None = None, softcap: float = 0.0, jobs_limit: int | None = None,
               generator: Generator | None = None, hopper: bool = True, hopper_generator: str = "golden",
               hopper_tune: bool = False, hopper_tune_top: int = 4, tl_dir: Path = GOLDEN_DIR,
               on_generated: Callable[[KernelJob, str], None] | None = None,
               on_kernel: Callable[[KernelOutcome], None] | None = None) -> BuildReport:
    """Build the default kernel set of arch into registry. on_generated(job, error) follows stage 1 of
    each job (error '' on success), on_kernel(outcome) stage 2 and nvcc. On sm_90, hopper=True adds
    the sm90a kernels of the families that have a Hopper program (same family / dtype / head filters):
    hopper_generator `golden` takes that program file (from tl_dir, kernels_src/tl by default),
    `planner` the Hopper planner's search (experimental)."""
    target = get_target(arch)
    toolchain = find_toolchain()
    jobs = default_jobs(target, dtypes, head_dims, families, softcap)
    extra = hopper_jobs(target, jobs, tl_dir) if hopper else []
    generator = generator or generator_for("planner")
    report = BuildReport(target.arch)
    jobs = _generate(jobs, target, generator, report, on_generated)
    hopper_gen = hopper_stage1(hopper_generator, tune=hopper_tune, tune_top=hopper_tune_top, tl_dir=tl_dir)
    if not isinstance(hopper_gen, HopperPrograms):  # the Hopper planner's programs have no LONG = 1 params:
        extra = [j for j in extra if not j.tuned_keys]  # no second (tuned) planner run for a job that would go
    extra = _generate(extra, target, hopper_gen, report, on_generated)
    workers = jobs_limit or max(1, os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="qimeng-build-") as tmp, ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(_compile_with_feedback, job, target, toolchain, Path(tmp), generator) for job in jobs]
        futures += [pool.submit(_compile_with_feedback, job, target, toolchain, Path(tmp), hopper_gen) for job in extra]
        for fut in futures:
            outcome = fut.result()
            report.outcomes.append(outcome)
            if on_kernel:
                on_kernel(outcome)
    for dtype in sorted({o.job.spec.dtype for o in report.outcomes}):
        chosen = [o for o in report.outcomes if o.job.spec.dtype == dtype]
        failed = [(j, why) for j, why in report.not_generated if j.spec.dtype == dtype]
        report.bundles.append(_write_bundle(registry, target, dtype, chosen, toolchain, kernel_set_name(softcap),
                                            failed))
    update_index(registry)
    return report


def _generate(jobs: list[KernelJob], target: Target, generator: Generator, report: BuildReport,
              on_generated: Callable[[KernelJob, str], None] | None) -> list[KernelJob]:
    """Stage 1 for every job; a job whose generator fails is reported and the others go on."""
    done = []
    for job in jobs:
        try:
            job = replace(job, generated=generator.generate(job.spec, target))
            if job.tuned_keys:  # a long-sequence job: the program with its LONG = 1 params, if it has any
                built = long_generated(job.generated, job.tuned_keys)
                if built is None:  # e.g. the Hopper planner's program: the job goes, nothing failed
                    continue
                job = replace(job, generated=built)
            error = ""
        except QimengError as exc:
            error = exc.message
            report.not_generated.append((job, error))
        else:
            done.append(job)
        if on_generated:
            on_generated(job, error)
    return done


def write_bundle_for(registry: Path, target: Target, outcome: KernelOutcome, toolchain: Toolchain,
                     kernel_set: str) -> Path:
    """A bundle holding one kernel outcome (a --tune candidate), written into registry."""
    return _write_bundle(registry, target, outcome.job.spec.dtype, [outcome], toolchain, kernel_set)


def manifest_record(record: GenerationRecord) -> dict:
    """The generation record as the manifest keeps it: every detail, the most telling attempts."""
    out = record.to_dict()
    attempts = out["attempts"]
    if len(attempts) > MANIFEST_ATTEMPTS:
        first = [a for a in attempts if a["stage"] in ("ptxas", "tune", "interpret")]
        ranked = sorted((a for a in attempts if a["stage"] not in ("ptxas", "tune", "interpret") and a["score"] is not None),
                        key=lambda a: a["score"])
        out["attempts"] = (first + ranked)[:MANIFEST_ATTEMPTS]
        out["attempts_total"] = len(attempts)
    return out


def _write_bundle(registry: Path, target: Target, dtype: str, outcomes: list[KernelOutcome], toolchain: Toolchain,
                  kernel_set: str, not_generated: list[tuple[KernelJob, str]] = ()) -> Path:
    kernels, blobs = {}, {}
    rejected = [{"program": None, "spec": j.spec.to_dict(), "reason": f"stage 1 made no program: {why}",
                 **({"variant": j.variant} if j.variant else {})} for j, why in not_generated]
    # portable kernels first: an sm90a entry never displaces one of them
    for o in sorted(outcomes, key=lambda o: o.job.variant == SM90A):
        variant = {"variant": o.job.variant} if o.job.variant else {}
        collide = [e.name for e in o.source.entries if e.name in kernels]
        if collide and not o.rejected:
            o.rejected = f"entry name {collide[0]} is already taken by another kernel of the bundle"
        if o.rejected:
            rejected.append({"program": o.job.program.name, "spec": o.job.spec.to_dict(), "reason": o.rejected,
                             **variant})
            continue
        tl_text = print_tl(o.job.program)
        generated = o.job.generated
        for entry in o.source.entries:
            res = o.result.resources.get(entry.name)
            kernels[entry.name] = {
                "family": o.job.spec.op,
                "role": entry.role,
                "tl_kernel": entry.tl_kernel,
                "spec": o.job.spec.to_dict(),
                "runtime_features": ["causal", "sliding_window", "gqa", "paged_kv" if "paged" in o.job.spec.op else "dense_kv"],
                "compiled_features": {"softcap": o.job.spec.softcap},
                "tl": {"program": o.job.program.name, "file": o.job.source_name, "source": tl_text,
                       "sha256": hashlib.sha256(tl_text.encode()).hexdigest(),
                       "generator": generated.record.generator, "record": manifest_record(generated.record)},
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
            blobs[f"{entry.name}.cu"] = o.source.text.encode()
            if o.job.variant == SM90A:
                # sm_90a SASS only (no PTX: compute_90a runs on no other GPU); the TmaDescs parameter
                del kernels[entry.name]["tensors"]["ptx"]
                kernels[entry.name].update({
                    "variant": SM90A,
                    "abi": entry.abi,
                    "tensor_maps": dict(entry.tensor_maps),
                    **({"split_tail": dict(entry.split_tail)} if entry.split_tail else {}),
                    "tma_layout": TMA_LAYOUT[o.job.spec.op],
                    "tuned_mask": tuned_mask(o.job.spec, o.job.tuned_keys),
                    **({"min_seqlen_k": o.job.tuned_keys} if o.job.tuned_keys else {}),
                    "nvcc_flags": list(o.result.flags),
                })
            else:
                blobs[f"{entry.name}.ptx"] = o.result.ptx
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
