"""`--tune`: the planner's best candidates, measured on this machine's GPU; the fastest that validates wins.

The cost model ranks; measurement decides. The top K interpreter-verified candidates of a job are
lowered and compiled exactly as `build` does (in parallel, through the build cache), each is
validated by `qimeng_serve.validate` (NaN-poisoned outputs, ragged lengths, GQA, windows) and timed
by the bench timer (L2 flushed, CUDA events, median) on the cost model's own workload shapes, all
candidates on the same inputs. The measured times go into the generation record, and from there
into the bundle manifest.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from qimeng_serve.errors import QimengError
from qimeng_serve.generate.cost_model import Case, workload
from qimeng_serve.spec import AttentionSpec
from qimeng_serve.targets import Target

if TYPE_CHECKING:
    from qimeng_serve.generate.planner import Candidate, Search

PAGE = 16


def gpu_name(target: Target) -> str:
    """The GPU that will measure target's candidates; a clear error when there is none that can."""
    try:
        import torch
    except ImportError:
        raise QimengError("--tune needs PyTorch with CUDA", fix="install a CUDA build of torch, or drop --tune") from None
    if not torch.cuda.is_available():
        raise QimengError("--tune measures candidates on a CUDA GPU and none is visible",
                          fix="drop --tune (the cost model ranks candidates offline), or run on a GPU machine")
    from qimeng_serve.runtime.loader import device_arch

    here = device_arch()
    if here != target.arch:
        raise QimengError(f"--tune measures on this machine's GPU ({here}, {torch.cuda.get_device_name()}), "
                          f"but the target is {target.arch}: timings of another arch would choose the wrong tiles",
                          fix=f"tune --arch {here} here, and {target.arch} on an {target.arch} GPU (or drop --tune)")
    return torch.cuda.get_device_name()


def tune(search: Search, top: int, progress: Callable[[str], None]) -> Candidate:
    """Measure the top candidates of search; returns the fastest that validates (marked in place)."""
    candidates = search.passed[:top]
    best, device = measure(search.spec, search.target, candidates, lambda c: _job(search, c), progress)
    search.counts["tuned"], search.counts["tuned_on"] = len(candidates), device
    return best


def measure(spec: AttentionSpec, target: Target, candidates: list, job_for: Callable, progress: Callable[[str], None]):
    """(the fastest candidate that validates, the GPU's name): each candidate (with .stage, .verdict,
    .measured_ms, .estimate, .summary()) compiled as job_for(candidate) makes it, validated and timed."""
    from qimeng_serve.build.pipeline import write_bundle_for
    from qimeng_serve.build.toolchain import find_toolchain

    device = gpu_name(target)
    toolchain = find_toolchain()
    with tempfile.TemporaryDirectory(prefix="qimeng-tune-") as tmp:
        jobs = [job_for(c) for c in candidates]
        progress(f"tune: compiling {len(jobs)} candidates for {spec.key()}")
        outcomes = compile_candidates(jobs, target, toolchain, Path(tmp))
        timed = []
        for i, (c, outcome) in enumerate(zip(candidates, outcomes)):
            c.stage = "tune"
            if outcome.rejected:
                c.verdict = f"not built: {outcome.rejected}"
                progress(f"tune: {c.summary()}: {c.verdict}")
                continue
            bundle = write_bundle_for(Path(tmp) / f"cand{i}", target, outcome, toolchain, f"tune{i}")
            failed = _validate(bundle, progress, c)
            if failed:
                c.verdict = f"validation failed on {device}: {failed}"
                continue
            timed.append((c, bundle))
        per_case = _time(timed, spec, progress) if timed else {}
    # the model's rank, not its time: the Hopper model scores another workload (L 1k-16k, the spec's
    # mask) than the one timed here, so its microseconds would not compare
    by_model = sorted(candidates, key=lambda c: c.estimate.score)
    for c, _ in timed:
        cases = per_case[id(c)]
        c.measured_ms = round(math.exp(sum(math.log(ms) for ms in cases.values()) / len(cases)), 4)
        c.verdict = (f"validated; measured on {device} (geo-mean {c.measured_ms:.3f} ms; the cost model ranked it "
                     f"{by_model.index(c) + 1} of {len(candidates)}): "
                     + ", ".join(f"{label} {ms:.3f} ms" for label, ms in cases.items()))
    if not timed:
        why = "; ".join(dict.fromkeys(c.verdict for c in candidates))  # each reason once: not built, or failed
        raise QimengError(f"none of the {len(candidates)} tuned candidates for {spec.key()} validated on {device}: "
                          f"{why}",
                          fix="report it with the build log; `qimeng-serve build` without --tune keeps the "
                              "cost model's choice, which `qimeng-serve validate` then checks")
    best = min((c for c, _ in timed), key=lambda c: (c.measured_ms, candidates.index(c)))
    return best, device


def compile_candidates(jobs: list, target: Target, toolchain, workdir: Path) -> list:
    """compile_job for each job, in parallel, each in a folder of its own: the candidates of one kernel
    share its entry name, so in one folder they wrote the same `<entry>.cu` and nvcc could compile
    another candidate's source under this one's manifest (an sm90a candidate then faulted in
    validation, session 13's run 4)."""
    from qimeng_serve.build.pipeline import compile_job

    folders = [workdir / f"cand{i}" for i in range(len(jobs))]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max(1, len(jobs))) as pool:
        return list(pool.map(lambda jf: compile_job(jf[0], target, toolchain, jf[1]), zip(jobs, folders)))


def _job(search: Search, c: Candidate):
    from qimeng_serve.build.kernel_set import KernelJob
    from qimeng_serve.generate.planner import candidate_program

    return KernelJob(search.spec, candidate_program(search, c))


def _validate(bundle: Path, progress, c) -> str:
    from qimeng_serve.validate import validate_bundle

    report = validate_bundle(bundle, write=False, prefer="sass")
    bad = [ch for ch in report.checks if not ch.ok]
    progress(f"tune: {c.summary()}: {len(report.checks) - len(bad)}/{len(report.checks)} checks passed")
    return "" if not bad else f"{bad[0].case}: rel. L2 {bad[0].rel_l2:.2e}"


def _time(timed: list, spec: AttentionSpec, progress) -> dict[int, dict[str, float]]:
    """Median ms per workload case of every validated candidate, all on the same inputs."""
    from qimeng_serve.bench import Timer
    from qimeng_serve.runtime.ops import KernelSet

    timer = Timer(runs=10)
    kernel_sets = [(c, KernelSet(bundle, prefer="sass")) for c, bundle in timed]
    out: dict[int, dict[str, float]] = {id(c): {} for c, _ in timed}
    for case in workload(spec):
        run = _runner(spec, case)
        for c, ks in kernel_sets:
            out[id(c)][case.label] = timer.median_ms(lambda run=run, ks=ks: run(ks))
        progress(f"tune: timed {case.label}")
    return out


def _runner(spec: AttentionSpec, case: Case):
    """Inputs for one case, made once; returns ks -> launch."""
    import torch

    dt = {"f16": torch.float16, "bf16": torch.bfloat16}[spec.dtype]
    d, b, hq, hkv, lq, lk = spec.head_dim, case.batch, case.heads_q, case.heads_kv, case.seqlen_q, case.seqlen_k
    if spec.op == "dense_prefill":
        q = torch.randn(b, hq, lq, d, dtype=dt, device="cuda")
        k, v = (torch.randn(b, hkv, lk, d, dtype=dt, device="cuda") for _ in range(2))
        out = torch.empty_like(q)
        return lambda ks: ks.dense_prefill(q, k, v, causal=case.causal, out=out)
    pages = math.ceil(lk / PAGE)
    kc, vc = (torch.randn(b * pages, PAGE, hkv, d, dtype=dt, device="cuda") for _ in range(2))
    table = torch.randperm(b * pages, device="cuda", dtype=torch.int32).view(b, pages)
    q = torch.randn(b * lq, hq, d, dtype=dt, device="cuda")
    cu = torch.arange(b + 1, dtype=torch.int32, device="cuda") * lq
    seqlens = torch.full((b,), lk, dtype=torch.int32, device="cuda")
    out = torch.empty_like(q)
    if spec.op == "paged_prefill":
        return lambda ks: ks.paged_prefill(q, kc, vc, table, cu, seqlens, lq, lk, causal=case.causal, out=out)
    workspaces = {}

    def decode(ks):
        ws = workspaces.setdefault(id(ks), ks.decode_workspace(b * lq, hq, d, lk, "cuda"))
        return ks.paged_decode(q, kc, vc, table, cu, seqlens, lq, lk, workspace=ws, out=out)

    return decode
