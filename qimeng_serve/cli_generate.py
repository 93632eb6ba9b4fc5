"""`qimeng-serve generate`: stage 1 alone, the TL program for one spec and target, and how it was made.

Registered on `qimeng_serve.cli.app` by an import at the end of cli.py. The stage 1 helpers here
(`stage1_generator`, `show_record`) are shared with `build`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from qimeng_serve.cli import app, err, out, user_errors
from qimeng_serve.errors import QimengError

GENERATORS = ("planner", "llm", "golden")

GeneratorOpt = Annotated[str, typer.Option(
    "--generator", help="Stage 1: planner (offline search, the default), llm (Anthropic API) or golden "
                        "(the hand-written programs of kernels_src/tl).")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="LLM model (llm only; default QIMENG_LLM_MODEL).")]
ApiKeyOpt = Annotated[str | None, typer.Option("--api-key", help="Anthropic API key (llm only; default "
                                                                    "ANTHROPIC_API_KEY).")]
BaseUrlOpt = Annotated[str | None, typer.Option("--base-url", help="Anthropic API base URL (llm only).")]
TuneOpt = Annotated[bool, typer.Option("--tune", help="Planner: compile the best candidates, validate and time them "
                                                      "on this machine's GPU (of the target's arch), keep the fastest.")]
TuneTopOpt = Annotated[int, typer.Option("--tune-top", help="Candidates --tune measures per kernel.", min=1)]


def stage1_generator(name: str, *, model: str | None = None, api_key: str | None = None, base_url: str | None = None,
                     tune: bool = False, tune_top: int = 4, use_cache: bool = True, archs: list[str] = ()):
    """The stage 1 generator for the CLI's options; options of another generator are refused, not dropped,
    and --tune is refused up front unless this machine's GPU is of each target arch."""
    from qimeng_serve.build.kernel_set import generator_for

    if name not in GENERATORS:
        raise QimengError(f"unknown generator '{name}'", fix="use --generator planner (offline default), llm or golden")
    llm_given = [flag for flag, v in (("--model", model), ("--api-key", api_key), ("--base-url", base_url)) if v]
    if name != "llm" and llm_given:
        raise QimengError(f"{', '.join(llm_given)} only apply to --generator llm", fix="drop them, or add --generator llm")
    if name != "planner" and tune:
        raise QimengError("--tune measures the planner's candidates", fix="use --generator planner with --tune")
    if tune:
        from qimeng_serve.generate.tune import gpu_name
        from qimeng_serve.targets import get_target

        for arch in archs:
            gpu_name(get_target(arch))
    if name == "llm":
        return generator_for("llm", model=model, api_key=api_key, base_url=base_url, console=err)
    if name == "planner":
        return generator_for("planner", tune=tune, tune_top=tune_top, use_cache=use_cache,
                             progress=lambda message: err.print(f"[dim]{escape(message)}[/]"))
    return generator_for("golden")


@app.command()
@user_errors
def generate(
    arch: Annotated[str, typer.Option("--arch", help="Target GPU architecture, e.g. sm_75.")],
    op: Annotated[str, typer.Option("--op", help="paged_prefill, paged_decode or dense_prefill.")],
    dtype: Annotated[str, typer.Option("--dtype", help="f16 or bf16 (bf16 needs sm_80+).")] = "f16",
    head_dim: Annotated[int, typer.Option("--head-dim", help="64, 128 or 256.")] = 128,
    gqa_group: Annotated[int | None, typer.Option(
        "--gqa-group", help="Query heads per KV head the kernel packs (default: 16 for paged_decode, 1 otherwise; "
                            "prefill kernels take any group at run time).")] = None,
    softcap: Annotated[float, typer.Option("--softcap", help="Logits soft-cap compiled in (0 = none).")] = 0.0,
    generator: GeneratorOpt = "planner",
    model: ModelOpt = None,
    api_key: ApiKeyOpt = None,
    base_url: BaseUrlOpt = None,
    tune: TuneOpt = False,
    tune_top: TuneTopOpt = 4,
    show_candidates: Annotated[bool, typer.Option(
        "--show-candidates", help="Also print what the generator tried: candidates, verdicts, scores.")] = False,
    limit: Annotated[int, typer.Option("--limit", help="Rows of --show-candidates (0 = every attempt).", min=0)] = 25,
    sketch: Annotated[bool, typer.Option("--sketch", help="Print the sketch form (statements only) instead.")] = False,
    output: Annotated[Path | None, typer.Option("--out", "-o", help="Write the TL program to this file.")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Plan again instead of reusing a cached plan.")] = False,
    hopper: Annotated[bool, typer.Option(
        "--hopper", help="sm_90: plan the Hopper (sm_90a: TMA + GMMA, warp-specialised) program of dense or "
                         "paged prefill instead of the portable one (the Hopper planner; experimental: the "
                         "build ships the measured kernels_src/tl/<op>_sm90.tl). With --tune, on an H100 / "
                         "H200, its top --tune-top candidates and the shipped program are measured and the "
                         "fastest wins.")] = False,
) -> None:
    """Stage 1 only: write the TL program for one kernel (op, dtype, head size) on one GPU architecture.

    The default planner works offline and deterministically: it enumerates sketches (loop order,
    where Q lives, ping-pong or pipelined copies, masking, split-KV and GQA packing for decode) and
    their tile parameters, prunes them with the TL checker and the lowering, ranks the survivors with
    its cost model, and runs the best in the TL interpreter against a float64 reference. With --hopper
    (sm_90) it searches the warp-specialised programs instead: tiles, consumer schedule, softmax overlap,
    tile sizes and register split. The program goes to stdout (or --out); `qimeng-serve tl check/run`
    take it as it is."""
    from qimeng_serve.build.kernel_set import DECODE_GROUP
    from qimeng_serve.spec import AttentionSpec
    from qimeng_serve.targets import get_target

    target = get_target(arch)
    group = gqa_group if gqa_group is not None else (DECODE_GROUP if op == "paged_decode" else 1)
    spec = AttentionSpec(op, dtype, head_dim, group, causal=True, softcap=softcap)
    spec.validate_for(target)
    if hopper:
        from qimeng_serve.generate.hopper_planner import HopperPlanner

        if generator != "planner":
            raise QimengError("--hopper plans with the Hopper planner", fix="drop --generator")
        gen = HopperPlanner(tune=tune, tune_top=tune_top, use_cache=not no_cache,
                            progress=lambda message: err.print(f"[dim]{escape(message)}[/]"))
    else:
        gen = stage1_generator(generator, model=model, api_key=api_key, base_url=base_url, tune=tune,
                               tune_top=tune_top, use_cache=not no_cache, archs=[target.arch])
    result = gen.generate(spec, target)
    text = result.sketch_text if sketch else result.text
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        err.print(f"wrote {output} ({result.name})", markup=False, highlight=False)
    else:
        out.print(text, end="", markup=False, highlight=False, soft_wrap=True)
    if show_candidates:
        show_record(result.record, limit)


def show_record(record, limit: int = 25) -> None:
    """A table of a generation record's attempts (best first), then its counts."""
    details = record.details
    attempts = list(record.attempts)
    rows = attempts if limit == 0 else _telling(attempts, limit)
    table = Table(title=f"stage 1 ({record.generator}): {len(rows)} of {len(attempts)} attempts")
    for col in ("#", "stage", "candidate", "score", "verdict"):
        table.add_column(col, overflow="fold")
    for i, a in enumerate(rows, 1):
        score = "-" if a.score is None else (f"{a.score:.3f} ms" if a.stage == "tune" else f"{a.score:.1f}")
        color = "green" if a.verdict == "ok" or a.verdict.startswith("validated") else "red" if a.stage in (
            "interpret", "tune") else "yellow"
        table.add_row(str(i), a.stage, escape(a.summary), score, f"[{color}]{escape(a.verdict)}[/]")
    out.print(table)
    if "counts" in details:
        out.print("counts: " + ", ".join(f"{k} {v}" for k, v in details["counts"].items()), markup=False)
    if details.get("pruned_by"):
        out.print("pruned by: " + ", ".join(f"{k} {v}" for k, v in details["pruned_by"].items()), markup=False)
    if record.generator == "planner":
        out.print("score: the cost model's predicted time in microseconds (geometric mean over "
                  f"{', '.join(details.get('workload', []))} on {details.get('device_model', '?')}); lower is better; "
                  "tune rows are measured milliseconds", markup=False)


def _telling(attempts: list, limit: int) -> list:
    """Every measured and interpreted attempt (the tuned ones fastest first), then the best-scored up
    to the limit, then one attempt per pruning reason (its numbers left out: "needs about 168
    registers" and "needs about 180" are one reason)."""
    shown = ("ptxas", "tune", "interpret")
    first = sorted((a for a in attempts if a.stage in shown),
                   key=lambda a: (a.stage != "tune", a.score is None, a.score if a.stage == "tune" else 0))
    scored = sorted((a for a in attempts if a.stage not in shown and a.score is not None), key=lambda a: a.score)
    seen, pruned = set(), []
    for a in attempts:
        reason = (a.stage, re.sub(r"\d+", "N", a.verdict.split(":")[0]))
        if a.score is None and a.stage not in shown and reason not in seen:
            seen.add(reason)
            pruned.append(a)
    return first + scored[: max(0, limit - len(first) - len(pruned))] + pruned


def validate_if_gpu(bundles: list[Path]) -> bool | None:
    """`build`'s last stage: validate the new bundles when a CUDA GPU is visible (True: all passed,
    False: a check failed, None: no GPU here, nothing done)."""
    import shutil

    if not Path("/dev/nvidiactl").exists() and shutil.which("nvidia-smi") is None:
        return None  # no driver: skip importing torch just to be told so
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    from qimeng_serve.validate import validate_bundle

    passed = True
    for bundle in bundles:
        report = validate_bundle(bundle)
        bad = [c for c in report.checks if not c.ok]
        passed &= not bad
        err.print(f"validate {bundle.name} on {report.device}: {len(report.checks) - len(bad)}/{len(report.checks)} "
                  "checks passed" + (f"; failed: {bad[0].kernel} {bad[0].case}" if bad else ""),
                  markup=False, highlight=False)
    return passed
