"""The `qimeng-serve` command line. The only module that prints or exits.

Exit status: 0 success; 1 the work found a problem (a TL program fails its checks, an interpreter
run misses the reference); 2 bad input (malformed TL, unknown arch, unsupported dtype or head
size), with `error:` and `fix:` lines and no traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from qimeng_serve.errors import QimengError, TLError

app = typer.Typer(
    help="Generate attention kernels for NVIDIA GPUs through the Thinking-Language (TL) workflow.",
    no_args_is_help=True,
    add_completion=False,
)
tl_app = typer.Typer(help="Work with Thinking-Language programs: check, run, format.", no_args_is_help=True)
app.add_typer(tl_app, name="tl")

out = Console()
err = Console(stderr=True, soft_wrap=True)


def _fail(exc: QimengError, source: str | None = None) -> None:
    if isinstance(exc, TLError):
        err.print(exc.render(source), markup=False, highlight=False)
    else:
        err.print(f"error: {exc.message}", markup=False, highlight=False)
        if exc.fix:
            err.print(f"fix: {exc.fix}", markup=False, highlight=False)
    raise typer.Exit(2)


def user_errors(fn):
    """Turn QimengError into `error:`/`fix:` and exit status 2; let real bugs show their traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except QimengError as exc:
            _fail(exc, getattr(exc, "_source", None))

    return wrapper


def _read_tl(path: Path):
    """Read and parse a TL file; a syntax error carries its source for the caret display."""
    from qimeng_serve.tl.parser import parse_tl

    if not path.is_file():
        raise QimengError(f"no such TL file: {path}", fix="pass the path of a .tl file, e.g. kernels_src/tl/dense_prefill_sm80.tl")
    source = path.read_text()
    try:
        return parse_tl(source, source_name=str(path)), source
    except TLError as exc:
        exc._source = source
        raise


# ------------------------------------------------------------------ targets
@app.command()
@user_errors
def targets(as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False) -> None:
    """List the GPU architectures qimeng-serve knows and what each offers an attention kernel."""
    from qimeng_serve.targets import TARGETS

    if as_json:
        rows = []
        for t in TARGETS.values():
            rows.append({
                "arch": t.arch, "family": t.family, "smem_default": t.smem_default, "smem_optin_max": t.smem_optin_max,
                "regs_per_sm": t.regs_per_sm, "max_regs_per_thread": t.max_regs_per_thread, "mma": t.mma,
                "ldmatrix": t.ldmatrix, "cp_async": t.cp_async, "tma": t.tma, "gmma": t.gmma, "dtypes": t.dtypes,
                "compile_only": t.compile_only, "sass_arch": t.sass_arch, "examples": t.examples,
            })
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="GPU targets")
    for col in ("arch", "family", "smem/block KB\n(default/opt-in)", "tensor-core MMA", "copy & MMA paths", "example GPUs"):
        table.add_column(col)
    for t in TARGETS.values():
        mma = "\n".join(f"{dt} {' '.join(shapes)}" for dt, shapes in t.mma.items())
        paths = " ".join(name for name, has in (("ldmatrix", t.ldmatrix), ("cp.async", t.cp_async), ("TMA", t.tma),
                                                  ("GMMA", t.gmma)) if has)
        arch = t.arch + ("\n(compile-only)" if t.compile_only else "")
        table.add_row(arch, t.family, f"{t.smem_default // 1024} / {t.smem_optin_max // 1024}", mma, paths,
                      "\n".join(t.examples))
    out.print(table)
    out.print("bf16 needs sm_80+; fp8 (e4m3) MMA needs sm_89+; sm_90 builds as sm_90a for GMMA/TMA.")


# ------------------------------------------------------------------ build
@app.command()
@user_errors
def build(
    arch: Annotated[str, typer.Option("--arch", help="Target such as sm_75, or `all` for every primary target.")],
    registry: Annotated[Optional[Path], typer.Option("--registry", help="Local registry folder (default: QIMENG_REGISTRY or ./registry).")] = None,
    dtype: DtypeOpt = None,
    head_dim: HeadDimOpt = None,
    family: Annotated[Optional[list[str]], typer.Option("--family", help="paged_prefill, paged_decode or dense_prefill. Default: all.")] = None,
    softcap: Annotated[float, typer.Option("--softcap", help="Compile in a logits soft-cap (e.g. 50 for Gemma 2); its own kernel set.")] = 0.0,
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", help="Parallel nvcc processes (default: CPU count).")] = None,
    generator: GeneratorOpt = "planner",
    model: ModelOpt = None,
    api_key: ApiKeyOpt = None,
    base_url: BaseUrlOpt = None,
    tune: TuneOpt = False,
    tune_top: TuneTopOpt = 4,
    validate: Annotated[bool, typer.Option("--validate/--no-validate", help="Validate the bundles when a CUDA GPU is visible.")] = True,
    hopper: Annotated[bool, typer.Option("--hopper/--no-hopper", help="sm_90: also build the Hopper (sm_90a, TMA + GMMA) kernels of the families that have a `<family>_sm90.tl` program, into the same bundle.")] = True,
    hopper_generator: Annotated[str, typer.Option("--hopper-generator", help="Stage 1 of those Hopper kernels: golden (the measured `<family>_sm90.tl`, default) or planner (the Hopper planner's search; experimental, docs/planner.md).")] = "golden",
) -> None:
    """Build the default kernel set for a GPU architecture: stage 1 writes a TL program per kernel (the
    offline planner by default), stage 2 lowers it to CUDA on CuTe, nvcc makes cubins (+PTX), and one
    bundle per dtype goes into the registry. Needs nvcc, not a GPU; plans and unchanged kernels come
    from the cache. On a machine with a GPU the bundles are validated too (`qimeng-serve validate`).
    sm_90 bundles also hold sm_90a kernels (H100 / H200 only) beside the portable ones; --no-hopper
    leaves them out."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from qimeng_serve.build.kernel_set import default_jobs, hopper_jobs
    from qimeng_serve.build.pipeline import build_arch, hopper_stage1
    from qimeng_serve.cli_generate import stage1_generator, validate_if_gpu
    from qimeng_serve.env import default_registry
    from qimeng_serve.targets import PRIMARY_ARCHS, get_target

    archs = list(PRIMARY_ARCHS) if arch == "all" else [get_target(arch).arch]
    hopper_stage1(hopper_generator)  # an unknown name fails before any work
    reg = registry or default_registry()
    total = 0
    for a in archs:
        portable = default_jobs(get_target(a), dtype, head_dim, family, softcap)
        total += len(portable) + (len(hopper_jobs(get_target(a), portable)) if hopper else 0)
    gen = stage1_generator(generator, model=model, api_key=api_key, base_url=base_url, tune=tune, tune_top=tune_top,
                           archs=archs)
    table = Table(title=f"qimeng-serve build -> {reg}")
    for col in ("arch", "kernel", "regs", "smem KB", "spills", "SASS / PTX", "cache", "result"):
        table.add_column(col)
    bundles, rejected, not_generated = [], [], []
    hopper_ok = 0
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err) as progress:
        stage1 = progress.add_task(f"stage 1: TL programs ({generator})", total=total)
        task = progress.add_task("stage 2: lower to CUDA + nvcc", total=total)

        def on_generated(job, error):
            # the sm90a jobs' program: their Hopper TL file (golden) or the Hopper planner's
            progress.update(stage1, advance=1,
                            description=f"stage 1 ({hopper_generator if job.variant else generator}): {job.label}")
            if error:
                progress.update(task, advance=1)  # nothing to lower for this job

        def on_kernel(o):
            progress.update(task, advance=1, description=f"stage 2 + nvcc: {o.arch} {o.job.label}")
            targets = " / ".join(",".join(v) for v in o.observed.values())
            if not o.source.entries:  # stage 2 refused the program: nothing was compiled
                table.add_row(o.arch, o.job.label, "-", "-", "-", "-", "-", "[red]rejected[/]")
            for e in o.source.entries:
                r = o.result.resources.get(e.name)
                table.add_row(o.arch, e.name, str(r.registers if r else "?"),
                              f"{e.smem_bytes / 1024:.0f}", "yes" if r and r.spills else "no", targets,
                              "hit" if o.cached else "built", "[red]rejected[/]" if o.rejected else "[green]ok[/]")

        for a in archs:
            report = build_arch(a, reg, dtypes=dtype, head_dims=head_dim, families=family, softcap=softcap,
                                jobs_limit=jobs, generator=gen, hopper=hopper, hopper_generator=hopper_generator,
                                hopper_tune=tune and hopper_generator == "planner", hopper_tune_top=tune_top,
                                on_generated=on_generated,
                                on_kernel=on_kernel)
            bundles += report.bundles
            rejected += [o for o in report.outcomes if o.rejected]
            not_generated += [(a, job, why) for job, why in report.not_generated]
            hopper_ok += sum(len(o.source.entries) for o in report.outcomes if o.job.variant and not o.rejected)
    out.print(table)
    if hopper_ok:
        out.print(f"sm90a: {hopper_ok} Hopper kernel(s) (TMA + GMMA, sm_90a SASS) in the sm_90 bundles beside the "
                  "portable ones; they run on H100 / H200 (compute capability 9.0), other GPUs use the portable "
                  "kernels' compute_90 PTX", markup=False, highlight=False)
    for a, job, why in not_generated:
        err.print(f"error: stage 1 made no program for {a} {job.label}: {why}", markup=False, highlight=False)
    for b in bundles:
        out.print(f"bundle {b} ({b.stat().st_size / 1e6:.1f} MB)")
    for o in rejected:
        err.print(f"warning: rejected {o.arch} {o.job.label}: {o.rejected}", markup=False, highlight=False)
    if rejected:
        err.print(f"warning: {len(rejected)} kernel(s) left out of the bundles (listed under `rejected` in their "
                  "manifests); the TL programs named above need other tiles", markup=False)
    validated = validate_if_gpu(bundles) if validate and bundles else None
    out.print(f"registry: {reg} (index.json updated)")
    if any(o.rejected.startswith("nvcc failed") for o in rejected) or not_generated or validated is False:
        raise typer.Exit(1)  # a compiler error is a defect of the lowering or a building block, not a tuning miss
    if validated is None:
        out.print("next: on a GPU, `qimeng-serve validate` fills in correctness; `qimeng-serve bench` speed.")


# ------------------------------------------------------------------ validate
@app.command()
@user_errors
def validate(
    registry: Annotated[Optional[Path], typer.Option("--registry", help="Local registry folder (default: QIMENG_REGISTRY or ./registry).")] = None,
    arch: ArchOpt = None,
    dtype: DtypeOpt = None,
    prefer: Annotated[str, typer.Option(help="auto (SASS when the GPU runs it, else PTX JIT), sass or ptx.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the random inputs.")] = 0,
) -> None:
    """Check every kernel of the registry's bundles on this machine's GPU against an fp32 reference
    (NaN-poisoned outputs, ragged lengths, GQA 1/4/8, shuffled block tables) and record the result in
    each bundle's manifest. Exit 1 if any check fails. sm_75 / sm_80 code runs here through its PTX."""
    from qimeng_serve.env import default_registry
    from qimeng_serve.registry.index import update_index
    from qimeng_serve.validate import validate_bundle

    try:
        import torch
    except ImportError:
        raise QimengError("validate needs PyTorch with CUDA", fix="install a CUDA build of torch on a GPU machine") from None
    if not torch.cuda.is_available():
        raise QimengError("validate needs a CUDA GPU and none is visible", fix="run it on a GPU machine (build needs none)")
    reg = registry or default_registry()
    bundles = sorted(reg.glob("sm_*/*/*.safetensors"))
    if dtype:
        bundles = [b for b in bundles if b.parts[-2] in dtype]
    if arch:
        from qimeng_serve.targets import get_target

        wanted = {get_target(a).arch for a in arch}
        bundles = [b for b in bundles if b.parts[-3] in wanted]
    if not bundles:
        raise QimengError(f"no bundles in {reg}", fix="run `qimeng-serve build --arch sm_XX` first")
    table = Table(title=f"qimeng-serve validate on {torch.cuda.get_device_name()}")
    for col in ("bundle", "kernel", "checks", "max rel. L2", "how", "result"):
        table.add_column(col)
    failed = False
    for bundle in bundles:
        def progress(name, method, checks):
            worst = max(c.rel_l2 for c in checks)
            err.print(f"{name} ({method}): {sum(c.ok for c in checks)}/{len(checks)} checks passed, "
                      f"max rel. L2 {worst:.2e}", markup=False, highlight=False)

        report = validate_bundle(bundle, seed=seed, prefer=prefer, on_kernel=progress)
        by_kernel: dict[str, list] = {}
        for c in report.checks:
            by_kernel.setdefault(c.kernel, []).append(c)
        for name, checks in by_kernel.items():
            ok = all(c.ok for c in checks)
            failed |= not ok
            worst = max(c.rel_l2 for c in checks)
            table.add_row(bundle.parts[-3] + "/" + bundle.parts[-2], name, str(len(checks)), f"{worst:.2e}",
                          report.method_of(name), "[green]passed[/]" if ok else "[red]FAILED[/]")
            for c in checks:
                if not c.ok:
                    err.print(f"failed: {name} {c.case}: rel. L2 {c.rel_l2:.3e}", markup=False)
        for name, why in report.skipped.items():  # e.g. sm90a kernels on a GPU that is not compute capability 9.0
            table.add_row(bundle.parts[-3] + "/" + bundle.parts[-2], name, "0", "-", "-", "[yellow]skipped[/]")
            err.print(f"skipped: {name}: {why}", markup=False, highlight=False)
    update_index(reg)
    out.print(table)
    if failed:
        raise typer.Exit(1)


# ------------------------------------------------------------------ bench
@app.command()
@user_errors
def bench(
    registry: Annotated[Optional[Path], typer.Option("--registry", help="Local registry folder (default: QIMENG_REGISTRY or ./registry).")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Where bench.json and bench.png go.")] = Path("bench-results"),
    dtype: DtypeOpt = None,
    quick: Annotated[bool, typer.Option(help="Fewer timed runs per point.")] = False,
) -> None:
    """Time this GPU's bundle (SASS for this GPU's arch) beside SDPA flash (FA2), cuDNN SDPA and
    FlexAttention measured in the same run; paged decode in GB/s beside dense SDPA decode. Writes
    JSON, a PNG plot (TFLOPS vs sequence length) and the figures into the bundles' manifests."""
    from qimeng_serve.bench import fmt, run_bench
    from qimeng_serve.build.bundle import read_manifest, write_manifest
    from qimeng_serve.env import default_registry
    from qimeng_serve.runtime.loader import device_arch
    from qimeng_serve.runtime.ops import KernelSet

    try:
        import torch
    except ImportError:
        raise QimengError("bench needs PyTorch with CUDA", fix="install a CUDA build of torch on a GPU machine") from None
    if not torch.cuda.is_available():
        raise QimengError("bench needs a CUDA GPU and none is visible", fix="run it on a GPU machine")
    reg = registry or default_registry()
    arch = device_arch()
    from qimeng_serve.build.bundle import bundle_filename

    # the default kernel set only: a soft-capped set computes another function than the anchors
    bundles = {b.parts[-2]: b for b in sorted(reg.glob(f"{arch}/*/{bundle_filename(arch, '*', 'default')}"))}
    if dtype:
        bundles = {k: v for k, v in bundles.items() if k in dtype}
    if not bundles:
        raise QimengError(f"no {arch} bundle in {reg} for this GPU", fix=f"qimeng-serve build --arch {arch}")
    kernel_sets = {dt: KernelSet(path, prefer="sass") for dt, path in bundles.items()}
    rows = run_bench(kernel_sets, out_dir, quick=quick)
    table = Table(title=f"qimeng-serve bench on {torch.cuda.get_device_name()} ({arch} SASS)")
    for col in ("config", "dtype", "B", "Hq/Hkv", "L", "D", "causal", "unit", "kernel", "qimeng", "FA2", "cuDNN", "Flex", "SDPA", "vs FA2"):
        table.add_column(col)
    loaded = {name: k for ks in kernel_sets.values() for name, k in ks.kernels.items()}
    for r in rows:
        anchor = r.fa2 if r.unit == "TFLOPS" else r.sdpa
        ratio = f"{r.ours / anchor:.2f}x" if r.ours and anchor else "-"
        kind = loaded[r.kernel].meta.get("variant", "portable") if r.kernel in loaded else "-"
        table.add_row(r.tag, r.dtype, str(r.batch), f"{r.heads_q}/{r.heads_kv}", str(r.seqlen), str(r.head_dim),
                      "yes" if r.causal else "no", r.unit, kind, fmt(r.ours), fmt(r.fa2), fmt(r.cudnn), fmt(r.flex),
                      fmt(r.sdpa), ratio)
    out.print(table)
    from qimeng_serve.bench import REJECTED

    for note in REJECTED:
        err.print(f"warning: {note}", markup=False)
    device = torch.cuda.get_device_name()
    for dt, path in bundles.items():
        manifest = read_manifest(path)
        for name, meta in manifest["kernels"].items():
            # by name: the rows a kernel really ran (a kernel that did not run keeps its earlier figures)
            mine = [vars(r) for r in rows if r.dtype == dt and r.kernel == name]
            if mine:
                method = loaded[name].method if name in loaded else f"{arch} SASS"
                meta["benchmark"] = {"device": device, "method": method, "rows": mine}
        write_manifest(path, manifest)
    from qimeng_serve.registry.index import update_index

    update_index(reg)  # the manifests changed, so did the bundles' sha256
    out.print(f"wrote {out_dir / 'bench.json'} and {out_dir / 'bench.png'}")


# ------------------------------------------------------------------ shared options
ArchOpt = Annotated[Optional[list[str]], typer.Option("--arch", help="Target(s), e.g. sm_75. Default: the program's `targets`.")]
DtypeOpt = Annotated[Optional[list[str]], typer.Option("--dtype", help="f16 or bf16. Default: every dtype the target has.")]
HeadDimOpt = Annotated[Optional[list[int]], typer.Option("--head-dim", help="64, 128 or 256. Default: all three.")]
GroupOpt = Annotated[int, typer.Option("--group", help="GQA group size (query heads per KV head).")]
CausalOpt = Annotated[bool, typer.Option("--causal/--no-causal", help="Causal mask.")]


def _specs(program, arches, dtypes, head_dims, group, causal, window=0, softcap=0.0, qlen=1):
    """Every (target, spec) combination asked for; validates names before any work."""
    from qimeng_serve.spec import HEAD_DIMS, AttentionSpec
    from qimeng_serve.targets import get_target

    if not program.op:
        raise QimengError("the TL program declares no op", fix="add a line `op dense_prefill` (or paged_prefill / paged_decode)")
    names = arches or list(program.targets)
    if not names:
        raise QimengError("the program declares no targets and no --arch was given", fix="pass --arch sm_80 (or add `targets sm_80`)")
    combos = []
    for name in names:
        target = get_target(name)
        for dtype in dtypes or [d for d in ("f16", "bf16") if d in target.dtypes]:
            for hd in head_dims or list(HEAD_DIMS):
                spec = AttentionSpec(program.op, dtype, hd, group, causal, window, softcap, qlen)
                spec.validate_for(target)
                combos.append((target, spec))
    return combos


# ------------------------------------------------------------------ tl check
@tl_app.command("check")
@user_errors
def tl_check(
    files: Annotated[list[Path], typer.Argument(help="TL files to check.")],
    arch: ArchOpt = None,
    dtype: DtypeOpt = None,
    head_dim: HeadDimOpt = None,
    group: GroupOpt = 1,
    causal: CausalOpt = True,
    form: Annotated[str, typer.Option(help="auto, sketch or program.")] = "auto",
) -> None:
    """Check TL programs against their GPU targets: names, shapes, tile divisibility, shared-memory and
    register budgets, instruction legality and attention semantics. Exit 1 when any check fails."""
    from qimeng_serve.tl.checker import check_tl

    if form not in ("auto", "sketch", "program"):
        raise QimengError(f"unknown --form '{form}'", fix="use auto, sketch or program")
    table = Table(title="tl check")
    for col in ("file", "arch", "dtype", "head_dim", "result"):
        table.add_column(col)
    failed = False
    for path in files:
        program, _source = _read_tl(path)
        seen: set[str] = set()
        for target, spec in _specs(program, arch, dtype, head_dim, group, causal):
            diags = [d for d in check_tl(program, target, spec, form=form) if d.severity == "error"]
            table.add_row(path.name, target.arch, spec.dtype, str(spec.head_dim),
                          "[green]ok[/]" if not diags else f"[red]{len(diags)} error(s)[/]")
            for d in diags:
                text = d.render(str(path))
                if text not in seen:  # the same rule often fails for every head size
                    seen.add(text)
                    err.print(text, markup=False, highlight=False)
            failed |= bool(diags)
    out.print(table)
    if failed:
        raise typer.Exit(1)


# ------------------------------------------------------------------ tl run
@tl_app.command("run")
@user_errors
def tl_run(
    file: Annotated[Path, typer.Argument(help="TL program to execute on the CPU.")],
    dtype: Annotated[str, typer.Option(help="Input dtype of the spec: f16 or bf16.")] = "f16",
    head_dim: Annotated[int, typer.Option("--head-dim", help="64, 128 or 256.")] = 64,
    group: GroupOpt = 4,
    causal: CausalOpt = True,
    window: Annotated[int, typer.Option(help="Sliding window (0 = none).")] = 0,
    softcap: Annotated[float, typer.Option(help="Logits soft-cap (0 = none).")] = 0.0,
    heads_kv: Annotated[int, typer.Option("--heads-kv", help="KV heads.")] = 2,
    seqlen_q: Annotated[Optional[list[int]], typer.Option("--seqlen-q", help="Query length per sequence (repeat).")] = None,
    seqlen_k: Annotated[Optional[list[int]], typer.Option("--seqlen-k", help="KV length per sequence (repeat).")] = None,
    emulate: Annotated[bool, typer.Option(help="Round stores to the program's dtypes instead of exact fp32.")] = False,
    seed: Annotated[int, typer.Option(help="Random seed for the inputs.")] = 0,
    tolerance: Annotated[Optional[float], typer.Option(help="Max relative error. Default 1e-5 exact, 5e-3 emulated.")] = None,
) -> None:
    """Execute a TL program with the CPU interpreter on random inputs and compare with a reference
    attention in float64. Prints the relative error; exit 1 when it exceeds the tolerance."""
    from qimeng_serve.spec import AttentionSpec
    from qimeng_serve.tl.interpreter import max_rel_error, run_tl
    from qimeng_serve.tl.problem import make_problem
    from qimeng_serve.tl.reference import reference_attention

    program, _ = _read_tl(file)
    if not program.op:
        raise QimengError("the TL program declares no op", fix="add a line `op dense_prefill` (or paged_prefill / paged_decode)")
    spec = AttentionSpec(program.op, dtype, head_dim, group, causal, window, softcap,
                         decode_query_len=max(seqlen_q or [1]) if program.op == "paged_decode" else 1)
    lq, lk = _default_lengths(program.op, seqlen_q, seqlen_k)
    problem = make_problem(spec, batch=len(lq), heads_kv=heads_kv, seqlen_q=lq, seqlen_k=lk, seed=seed)
    outs = run_tl(program, spec, problem, emulate_dtypes=emulate)
    error = max_rel_error(outs, reference_attention(problem, spec))
    tol = tolerance if tolerance is not None else (5e-3 if emulate else 1e-5)
    table = Table(title=f"tl run {file.name}")
    for col in ("op", "spec", "seqlen_q", "seqlen_k", "rel. error", "tolerance", "result"):
        table.add_column(col)
    ok = error <= tol
    table.add_row(program.op, spec.key(), str(lq), str(lk), f"{error:.3e}", f"{tol:.0e}",
                  "[green]ok[/]" if ok else "[red]MISMATCH[/]")
    out.print(table)
    if not ok:
        raise typer.Exit(1)


def _default_lengths(op, seqlen_q, seqlen_k):
    """Ragged lengths that are not tile multiples, with a chunked-prefill offset, unless given."""
    if op == "paged_decode":
        lq = seqlen_q or [1, 1, 1]
        lk = seqlen_k or [1, 300, 1100][: len(lq)] + [700] * max(0, len(lq) - 3)
    else:
        lq = seqlen_q or [1, 17, 129]
        lk = seqlen_k or [q + extra for q, extra in zip(lq, [0, 40, 3])] + [q for q in lq[3:]]
    if len(lq) != len(lk):
        raise QimengError(f"{len(lq)} --seqlen-q values but {len(lk)} --seqlen-k values", fix="give one of each per sequence")
    return list(lq), list(lk)


# ------------------------------------------------------------------ tl fmt
@tl_app.command("fmt")
@user_errors
def tl_fmt(
    files: Annotated[list[Path], typer.Argument(help="TL files to format.")],
    write: Annotated[bool, typer.Option("--write", "-w", help="Rewrite the files in place.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Exit 1 if a file is not formatted; change nothing.")] = False,
) -> None:
    """Print TL files in canonical form (comments kept), or rewrite them with --write."""
    from qimeng_serve.tl.printer import print_tl

    unformatted = []
    for path in files:
        program, source = _read_tl(path)
        text = print_tl(program)
        if check:
            if text != source:
                unformatted.append(str(path))
        elif write:
            if text != source:
                tmp = path.with_suffix(path.suffix + ".tmp")
                tmp.write_text(text)
                tmp.replace(path)  # atomic: a crash never leaves half a file
                out.print(f"formatted {path}")
        else:
            sys.stdout.write(text)
    if unformatted:
        err.print("not formatted: " + ", ".join(unformatted), markup=False)
        err.print("fix: qimeng-serve tl fmt --write " + " ".join(unformatted), markup=False)
        raise typer.Exit(1)


from qimeng_serve import cli_registry  # noqa: E402,F401  (registers publish/pull/list/verify)
from qimeng_serve import cli_doctor  # noqa: E402,F401  (registers doctor)
from qimeng_serve.cli_generate import (  # noqa: E402,F401  (registers generate; build's stage 1 options)
    ApiKeyOpt, BaseUrlOpt, GeneratorOpt, ModelOpt, TuneOpt, TuneTopOpt,
)

if __name__ == "__main__":
    # `python -m qimeng_serve.cli`: this file runs as __main__, a second copy of the module, and the
    # commands that other modules register on `qimeng_serve.cli.app` attach to the imported copy
    from qimeng_serve.cli import app as registered_app

    registered_app()
