"""Which kernels a `build --arch sm_XX` makes: the default kernel set, and where their TL comes from.

One job per (family, dtype, head size) for the target. Causal masking, sliding window, GQA ratio
and page size are run-time arguments of each kernel, so they multiply nothing here; a logits
soft-cap is compiled in, and the default set is built without it. Stage 1 fills each job's program
from a generator: the planner (default), the LLM generator, or the golden programs of
kernels_src/tl/ (`--generator golden`, hand-written and measured: the planner's regression baseline).

On sm_90 a family may also have a Hopper program, `kernels_src/tl/<family>_sm90.tl` (exactly that
name; `_pingpong` / `_overlap` variants are experiments, not shipped): a warp-specialised TMA + GMMA
program that the planner does not know. Each such family gets extra jobs (variant "sm90a") whose
program is that file (HopperPrograms, recorded as golden; `--hopper-generator planner` takes the Hopper
planner's instead, generate/hopper_planner.py); they are lowered by emit_sm90 and compiled
for sm_90a into the same bundle, next to the portable kernels.

A Hopper program may tune its params to the mask (`params when D = 64 and CAUSAL = 0 { ... }`). Its
family then gets a second sm90a job per dtype and head size, built with a non-causal spec, whose
entries carry the suffix `_full` and `"tuned_mask": "full"` in the manifest. Both kernels still
take the mask as a run-time argument and run any call; the runtime (KernelSet.find) prefers the one
tuned for the call's mask.

It may also tune its params to long key sequences (`params when D = 128 and LONG = 1 { ... }`; LONG is
not a spec constant but this build-time condition). Its family then gets one more sm90a job per dtype
and head size, whose entries carry the suffix `_long`, `"tuned_mask": "any"` and `"min_seqlen_k":
LONG_KEYS`: the runtime prefers it, under either mask, for calls with at least that many keys, and
ranks it last below that.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from qimeng_serve.build.toolchain import REPO_ROOT
from qimeng_serve.errors import QimengError
from qimeng_serve.generate.base import GeneratedProgram, GenerationRecord, Generator, make_generator
from qimeng_serve.spec import HEAD_DIMS, AttentionSpec
from qimeng_serve.targets import Target
from qimeng_serve.tl import ast
from qimeng_serve.tl.parser import parse_tl_file
from qimeng_serve.tl.printer import print_expr, print_tl

GOLDEN_DIR = REPO_ROOT / "kernels_src" / "tl"
FAMILIES = ("paged_prefill", "paged_decode", "dense_prefill")
KERNEL_SET = "default"


def kernel_set_name(softcap: float = 0.0) -> str:
    """`default`, or `softcap50` for kernels with a logits soft-cap compiled in (Gemma 2 style)."""
    return KERNEL_SET if not softcap else f"softcap{softcap:g}"
# Decode kernels pack GROUP x query tokens into 16 rows: built for GQA groups up to 16, 1 query token.
DECODE_GROUP = 16
LONG = "LONG"  # the condition of a Hopper program's `params when ... LONG = 1` blocks (the long-sequence kernel)
# the key length from which the runtime prefers a `_long` kernel: measured on an H100 (perf-notes "eighteenth
# run"), the D 128 one is level with the shipped kernels at 8k and ahead at 16k, behind below 8k
LONG_KEYS = 8192


HOPPER_ARCH = "sm_90"  # the one target whose bundle also carries sm_90a kernels
SM90A = "sm90a"  # the job / manifest variant of those kernels
# the tensor-map layout each Hopper family's kernels take (runtime.tma_sm90: dense_descs / paged_descs)
TMA_LAYOUT = {"dense_prefill": "dense", "paged_prefill": "paged"}


@dataclass(frozen=True)
class KernelJob:
    spec: AttentionSpec
    generated: GeneratedProgram | None = None  # stage 1's program; None until a generator has run
    variant: str = ""  # "" (portable: the SM75/SM80 recipe) or "sm90a" (Hopper: TMA + GMMA, sm_90a SASS only)
    tuned_keys: int = 0  # > 0: an sm90a job built with the program's LONG = 1 params, for calls with this many keys

    @property
    def program(self) -> ast.Program:
        if self.generated is None:
            raise QimengError(f"no TL program for {self.label} yet", fix="run stage 1 (a generator) on the job first")
        return self.generated.program

    @property
    def source_name(self) -> str:
        """Where the program came from, e.g. `planner:paged_decode:sm_80:f16:hd128` or a golden file name."""
        return self.generated.name if self.generated else "?"

    @property
    def label(self) -> str:
        return (f"{self.spec.op} {self.spec.dtype} hd{self.spec.head_dim}" + (f" {self.variant}" if self.variant else "")
                + (" long" if self.tuned_keys else ""))


class GoldenPrograms:
    """The hand-written programs of kernels_src/tl/ behind the stage 1 interface."""

    name = "golden"

    def __init__(self, tl_dir: Path = GOLDEN_DIR) -> None:
        self.tl_dir = tl_dir

    def generate(self, spec: AttentionSpec, target: Target) -> GeneratedProgram:
        path, program = program_for(spec.op, target, self.tl_dir)
        text = print_tl(program)
        record = GenerationRecord("golden", {"file": path.name})
        return GeneratedProgram(spec, target.arch, "", program, text, record, name=path.name)


def hopper_program_path(family: str, tl_dir: Path = GOLDEN_DIR) -> Path | None:
    """kernels_src/tl/<family>_sm90.tl when it exists, else None (the family has no Hopper kernel yet)."""
    path = Path(tl_dir) / f"{family}_sm90.tl"
    return path if path.is_file() else None


def hopper_variant_program(program: ast.Program, causal: bool = True) -> ast.Program:
    """The Hopper program under a name of its own: the planner names its sm_90 programs `<family>_sm90`,
    as the Hopper files are named, and entry names (qm_<program>_<kernel>_<dtype>_hd<D>) must not
    collide in one bundle. `dense_prefill_sm90` -> `dense_prefill_sm90a`, or `dense_prefill_sm90a_full`
    for the job tuned for calls without a causal mask."""
    name = program.name or "hopper"
    return renamed(program, (f"{name}a" if name.endswith("_sm90") else f"{name}_sm90a") + mask_suffix(causal))


def renamed(program: ast.Program, name: str) -> ast.Program:
    """The program under another `program` name (its kernels' entry names follow it)."""
    items = tuple(replace(i, name=name) if isinstance(i, ast.ProgramDecl) else i for i in program.items)
    if not any(isinstance(i, ast.ProgramDecl) for i in items):
        items = (ast.ProgramDecl(name), *items)
    return ast.Program(items)


class HopperPrograms:
    """Stage 1 of the sm90a jobs: the family's Hopper program file (not planned; recorded as golden)."""

    name = "golden"

    def __init__(self, tl_dir: Path = GOLDEN_DIR) -> None:
        self.tl_dir = tl_dir

    def generate(self, spec: AttentionSpec, target: Target) -> GeneratedProgram:
        path = hopper_program_path(spec.op, self.tl_dir)
        if path is None:
            raise QimengError(f"no Hopper program for {spec.op} ({spec.op}_sm90.tl) in {self.tl_dir}",
                              fix="build with --no-hopper, or add the program")
        original = parse_tl_file(path)
        program = hopper_variant_program(original, spec.causal)
        record = GenerationRecord("golden", {"file": path.name, "variant": SM90A, "program": original.name,
                                             "tuned_mask": tuned_mask(spec)})
        return GeneratedProgram(spec, target.arch, "", program, print_tl(program), record, name=path.name)


def mask_suffix(causal: bool) -> str:
    """What an sm90a program's name carries when it is tuned for calls without a causal mask."""
    return "" if causal else "_full"


def tuned_mask(spec: AttentionSpec, tuned_keys: int = 0) -> str:
    """The mask an sm90a kernel's params were chosen for (it runs either: the mask is a run-time argument);
    `any` for a long-sequence kernel, whose LONG = 1 params are the same under both masks."""
    return "any" if tuned_keys else "causal" if spec.causal else "full"


def mask_specialised(program: ast.Program, spec: AttentionSpec) -> bool:
    """Whether the program's params differ between the spec with and without a causal mask (a
    `params when ... CAUSAL = 0` block applies to this head size)."""
    def values(causal: bool) -> dict:
        return {k: p.value for k, p in program.param_exprs(replace(spec, causal=causal).constants()).items()}
    return values(True) != values(False)


def long_program(program: ast.Program) -> ast.Program:
    """The program as built for long key sequences: its `params when ... LONG = 1` blocks apply (the LONG
    term dropped from their guard), blocks guarded by another LONG value are left out, the rest stay."""
    items = []
    for item in program.items:
        if isinstance(item, ast.ParamsBlock) and item.guard and any(name == LONG for name, _ in item.guard):
            if any(name == LONG and value != 1 for name, value in item.guard):
                continue
            item = replace(item, guard=tuple((n, v) for n, v in item.guard if n != LONG) or None)
        items.append(item)
    return ast.Program(tuple(items))


def length_specialised(program: ast.Program, spec: AttentionSpec) -> bool:
    """Whether the program's params for this spec differ when built for long key sequences (a `params when
    ... LONG = 1` block applies to this head size), and the same under both masks there (one kernel
    serves both: the runtime does not pick it by mask)."""
    def values(p: ast.Program, causal: bool) -> dict:
        return {k: print_expr(x.value) for k, x in p.param_exprs(replace(spec, causal=causal).constants()).items()}
    long = long_program(program)
    if values(long, True) == values(program, True) and values(long, False) == values(program, False):
        return False
    if values(long, True) != values(long, False):
        raise QimengError(f"{program.name}: its LONG = 1 params differ between the masks for {spec.key()}",
                          fix="set every param a CAUSAL block changes in the LONG = 1 block too")
    return True


def long_generated(generated: GeneratedProgram, keys: int = LONG_KEYS) -> GeneratedProgram | None:
    """Stage 1's program of a long-sequence job: the generated program built with its LONG = 1 params
    (long_program), renamed `<name>_long`; None when it has none for this spec (e.g. a planner's
    program), so the job is dropped."""
    if not length_specialised(generated.program, generated.spec):
        return None
    program = renamed(long_program(generated.program), f"{generated.program.name}_long")
    record = replace(generated.record, details={**generated.record.details, "tuned_mask": tuned_mask(generated.spec, keys),
                                                "min_seqlen_k": keys})
    return replace(generated, program=program, text=print_tl(program), record=record)


def hopper_jobs(target: Target, jobs: list[KernelJob], tl_dir: Path = GOLDEN_DIR) -> list[KernelJob]:
    """The sm90a jobs that go with `jobs` (already filtered by family, dtype, head size), on sm_90
    only: one per job whose family has a Hopper program, plus one with a non-causal spec where that
    program tunes its params to the mask (mask_specialised). Their programs come from the Hopper
    stage 1 (HopperPrograms, or the Hopper planner)."""
    if target.arch != HOPPER_ARCH:
        return []
    out, programs = [], {}  # programs: each family's Hopper program, parsed once
    for job in jobs:
        path = hopper_program_path(job.spec.op, tl_dir) if not job.variant and job.spec.op in TMA_LAYOUT else None
        if path is None:
            continue
        out.append(replace(job, generated=None, variant=SM90A))
        if path not in programs:
            programs[path] = parse_tl_file(path)
        if job.spec.causal and mask_specialised(programs[path], job.spec):
            out.append(replace(job, spec=replace(job.spec, causal=False), generated=None, variant=SM90A))
        if job.spec.causal and length_specialised(programs[path], job.spec):
            out.append(replace(job, generated=None, variant=SM90A, tuned_keys=LONG_KEYS))
    return out


def generator_for(name: str, **options) -> Generator:
    """The stage 1 generator called name: planner (default), llm, or golden."""
    if name == "golden":
        return GoldenPrograms()
    return make_generator(name, **options)


def program_for(family: str, target: Target, tl_dir: Path = GOLDEN_DIR) -> tuple[Path, ast.Program]:
    """The TL program of a family that declares this target."""
    for path in sorted(tl_dir.glob(f"{family}_*.tl")):
        program = parse_tl_file(path)
        if program.op == family and target.arch in program.targets:
            return path, program
    raise QimengError(f"no {family} TL program declares target {target.arch} in {tl_dir}",
                      fix=f"add `targets {target.arch}` to a {family} program, or build another arch")


def default_jobs(target: Target, dtypes: list[str] | None = None, head_dims: list[int] | None = None,
                 families: list[str] | None = None, softcap: float = 0.0) -> list[KernelJob]:
    if target.compile_only:
        raise QimengError(f"{target.arch} is compile-only: qimeng-serve has no validated kernel set for it yet",
                          fix="build sm_90 instead: its bundle carries compute_90 PTX, which newer GPUs JIT-compile")
    wanted = dtypes or [d for d in ("f16", "bf16") if d in target.dtypes]
    for d in wanted:
        if d not in target.dtypes:
            AttentionSpec("dense_prefill", d).validate_for(target)  # raises with the fix
    jobs = []
    for family in families or FAMILIES:
        if family not in FAMILIES:
            raise QimengError(f"unknown kernel family '{family}'", fix=f"use one of {', '.join(FAMILIES)}")
        for dtype in wanted:
            for hd in head_dims or HEAD_DIMS:
                group = DECODE_GROUP if family == "paged_decode" else 1
                jobs.append(KernelJob(AttentionSpec(family, dtype, hd, group, causal=True, softcap=softcap)))
    return jobs
