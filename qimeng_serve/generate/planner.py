"""The default stage 1 generator: an offline, deterministic planner (the self-optimising search).

For an (AttentionSpec, Target) it
 1. enumerates sketches (sketches.py) and writes each as TL text, parsed by the real parser;
 2. selects instructions: per sketch structure, the first copy path / MMA shape the checker accepts
    on the target (sm_75: no cp.async, no m16n8k16);
 3. expands the parameters (param_space.py) and sends every candidate through stage 2's `lower`,
    which runs the checker (tiles, shared-memory and register budgets, legality) and the lowering's
    own acceptance (schedules and tile shapes the building blocks implement);
 4. ranks the survivors with the cost model (cost_model.py);
 5. runs the best in the TL interpreter against the float64 reference (interpret_gate.py): the best
    that passes is the program, unless --tune measures the top K on this machine's GPU (tune.py).
Every candidate becomes an Attempt of the GenerationRecord; the result is cached on disk.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from qimeng_serve.errors import QimengError, TLCheckError, TLError
from qimeng_serve.generate import planner_cache
from qimeng_serve.generate.base import Attempt, GeneratedProgram, GenerationRecord
from qimeng_serve.generate.cost_model import (
    COST_MODEL_VERSION,
    DEVICES,
    Estimate,
    estimate,
    workload,
)
from qimeng_serve.generate.interpret_gate import interpret
from qimeng_serve.generate.param_space import ParamPoint, param_points
from qimeng_serve.generate.sketches import Sketch, enumerate_sketches, program_text
from qimeng_serve.lower.emit import lower
from qimeng_serve.spec import AttentionSpec
from qimeng_serve.targets import Target, get_target
from qimeng_serve.tl import ast
from qimeng_serve.tl.checker import check_tl, check_tl_or_raise
from qimeng_serve.tl.interpreter import resolve_params
from qimeng_serve.tl.parser import parse_tl
from qimeng_serve.tl.printer import print_tl

PLANNER_VERSION = "1"
INTERPRET_TOP = 3  # interpreter-verified candidates kept (the first is the program)
MAX_INTERPRET_FAILURES = 10  # give up after this many ranked candidates miss the reference
LEGALITY_RULES = ("copy-path", "mma")  # the checker rules that decide instruction selection

Progress = Callable[[str], None]


@dataclass
class Candidate:
    """One sketch with one parameter point (or a whole sketch, when it is pruned before parameters)."""

    index: int
    sketch: Sketch
    point: ParamPoint | None = None
    program: ast.Program | None = None
    stage: str = "ranked"  # where it was decided: sketch, checker, lowering, cost, ranked, interpret, tune
    verdict: str = "ok"
    estimate: Estimate | None = None
    measured_ms: float | None = None

    def params(self, spec: AttentionSpec) -> dict[str, int]:
        """The program's params in force for spec, evaluated (decode's BLOCK_M is an expression)."""
        return {k: v for k, v in resolve_params(self.program, spec).items() if isinstance(v, int)}

    def summary(self) -> str:
        return self.sketch.summary() + (f" | {self.point.summary()}" if self.point else "")

    def attempt(self) -> Attempt:
        score = self.measured_ms if self.measured_ms is not None else (
            round(self.estimate.score, 3) if self.estimate and self.estimate.feasible else None)
        return Attempt(self.stage, self.summary(), self.verdict, score)


@dataclass
class Search:
    """Everything the planner looked at for one (spec, target), best first in `ranked`."""

    spec: AttentionSpec
    target: Target
    candidates: list[Candidate] = field(default_factory=list)
    ranked: list[Candidate] = field(default_factory=list)
    passed: list[Candidate] = field(default_factory=list)  # interpreter-verified, in rank order
    counts: Counter = field(default_factory=Counter)
    legality: dict = field(default_factory=dict)  # (copy path, mma) -> the checker's legality errors

    def pruned_by(self) -> dict[str, int]:
        """How many candidates each checker rule / lowering refusal / cost reason removed."""
        tally = Counter(_reason(c) for c in self.candidates if c.stage in ("checker", "lowering", "cost", "sketch"))
        return dict(sorted(tally.items()))


def _reason(c: Candidate) -> str:
    """A pruned candidate's reason without its numbers: the checker rule, or the lowering's refusal."""
    head, _, rest = c.verdict.partition(": ")
    if c.stage == "lowering":
        return "lowering: " + re.sub(r"\d+", "N", rest.split(":")[0])[:70]
    return head


class Planner:
    name = "planner"

    def __init__(self, *, interpret_top: int = INTERPRET_TOP, use_cache: bool = True, tune: bool = False,
                 tune_top: int = 4, progress: Progress | None = None) -> None:
        if interpret_top < 1 or tune_top < 1:
            raise QimengError("--tune-top and the interpreter gate need at least 1 candidate", fix="use --tune-top 4")
        self.interpret_top, self.use_cache, self.tune, self.tune_top = interpret_top, use_cache, tune, tune_top
        self.progress = progress or (lambda message: None)

    @classmethod
    def from_options(cls, **options: Any) -> Planner:
        """Options from the CLI / API. LLM-only options given a value are a user error, not silently dropped."""
        known = {"interpret_top", "use_cache", "tune", "tune_top", "progress"}
        llm_only = {k for k, v in options.items() if k not in known and v not in (None, False)}
        if llm_only - {"console", "cache_dir"}:
            flags = ", ".join("--" + k.replace("_", "-") for k in sorted(llm_only - {"console", "cache_dir"}))
            raise QimengError(f"{flags} only apply to --generator llm", fix="drop them, or add --generator llm")
        return cls(**{k: v for k, v in options.items() if k in known and v is not None})

    # ------------------------------------------------------------ generate
    def _key(self, spec: AttentionSpec, target: Target) -> str:
        settings = {"planner": PLANNER_VERSION, "cost_model": COST_MODEL_VERSION, "interpret_top": self.interpret_top,
                    "tune_top": self.tune_top if self.tune else 0}
        if self.tune:
            from qimeng_serve.generate.tune import gpu_name

            settings["gpu"] = gpu_name(target)  # also refuses early when no GPU can measure this target
        return planner_cache.plan_key(spec, target.arch, settings)

    def generate(self, spec: AttentionSpec, target: Target | str) -> GeneratedProgram:
        target = get_target(target) if isinstance(target, str) else target
        spec.validate_for(target)
        key = self._key(spec, target)
        if self.use_cache and (hit := planner_cache.load(key)) is not None:
            self.progress(f"{_label(spec, target)}: planned program from the cache")
            return plan_from_payload(hit, spec, target.arch)
        search = self.search(spec, target)
        chosen = search.passed[0]
        if self.tune:
            from qimeng_serve.generate.tune import tune

            chosen = tune(search, self.tune_top, self.progress)
        generated = candidate_program(search, chosen, full_record=True)
        if self.use_cache:
            planner_cache.store(key, plan_payload(generated))
        return generated

    def next_program(self, spec: AttentionSpec, target: Target, rejected: GeneratedProgram,
                     reason: str) -> GeneratedProgram | None:
        """Stage 2's feedback: `rejected` spilled registers under ptxas (reason). The best candidate the
        cost model expects to need fewer registers, checked by the interpreter, with the rejection in
        its record; it replaces the rejected plan in the cache. None when there is no such candidate."""
        target = get_target(target) if isinstance(target, str) else target
        before = rejected.record.details.get("ptxas_rejected", [])
        chosen = rejected.record.details.get("chosen", {})
        predicted = chosen.get("estimate", {})
        ceiling = predicted.get("registers", 255) + predicted.get("spill_regs", 0)
        rejections = before + [{"candidate": f"{chosen.get('sketch')} | {chosen.get('params')}", "ptxas": reason}]
        s = self.search(spec, target)
        for c in s.ranked:
            e = c.estimate
            if e.registers + e.spill_regs >= ceiling:
                continue
            if c.stage != "interpret":
                problem = interpret(c.program, spec, c.params(spec))
                c.stage, c.verdict = "interpret", problem or "ok"
                s.counts["interpreted"] += 1
            if c.verdict != "ok":
                continue
            generated = candidate_program(s, c, full_record=True)
            ptxas = tuple(Attempt("ptxas", r["candidate"], r["ptxas"]) for r in rejections)
            record = GenerationRecord("planner", {**generated.record.details, "ptxas_rejected": rejections},
                                      ptxas + generated.record.attempts)
            generated = replace(generated, record=record)
            self.progress(f"{_label(spec, target)}: ptxas spilled ({reason.split(':')[0]}); "
                          f"next: {c.point.summary()} ({c.sketch.summary()})")
            if self.use_cache:
                planner_cache.store(self._key(spec, target), plan_payload(generated))
            return generated
        return None

    # ------------------------------------------------------------ search
    def search(self, spec: AttentionSpec, target: Target) -> Search:
        """Enumerate, check, lower, rank and interpret; raises when no candidate survives."""
        spec.validate_for(target)
        s = Search(spec, target)
        for key in ("sketches", "sketches_pruned_checker", "sketches_superseded", "candidates", "ranked",
                    "interpreted", "interpreter_failed"):
            s.counts[key] = 0  # every count in the record, zeros included
        name = f"{spec.op}_{target.arch.replace('_', '')}"
        sketches = enumerate_sketches(spec.op)
        s.counts["sketches"] = len(sketches)
        for structure in _by_structure(sketches):
            kept = self._select_instructions(s, structure, name)
            if kept is not None:
                self._expand(s, *kept)
        s.ranked = sorted((c for c in s.candidates if c.stage == "ranked"),
                          key=lambda c: (round(c.estimate.score, 6), c.estimate.smem_bytes, c.index))
        s.counts["ranked"] = len(s.ranked)
        self._interpret(s)
        best = s.passed[0]
        self.progress(f"{_label(spec, target)}: {s.counts['candidates']} candidates, {len(s.ranked)} ranked, "
                      f"{s.counts['interpreted']} interpreted -> {best.point.summary()} ({best.sketch.summary()})")
        return s

    def _select_instructions(self, s: Search, variants: list[Sketch], name: str):
        """(sketch, template program) with the first legal instruction choice, or None."""
        spec, target = s.spec, s.target
        template = parse_tl(program_text(variants[0], spec, target.arch, name=name,
                                         params=param_points(variants[0])[0].params(variants[0])))
        errors = [d for d in check_tl(_sketch_form(template), target, spec, form="sketch") if d.severity == "error"]
        if errors:
            for v in variants:
                self._add(s, v, None, None, "sketch", f"{errors[0].rule}: {errors[0].message}")
            return None
        kept = None
        for v in variants:
            program = _with_instructions(template, variants[0], v)
            # the copy-path and mma rules look at the instruction and the target only: one verdict per choice
            choice = (v.copy_path, v.mma)
            if choice not in s.legality:
                s.legality[choice] = [f"{d.rule}: {d.message}" for d in check_tl(program, target, spec)
                                      if d.rule in LEGALITY_RULES and d.severity == "error"]
            if s.legality[choice]:
                self._add(s, v, None, None, "sketch", s.legality[choice][0])
                s.counts["sketches_pruned_checker"] += 1
            elif kept is not None:
                self._add(s, v, None, None, "sketch",
                          f"superseded: {kept[0].copy_path} and {kept[0].mma} are legal here and faster")
                s.counts["sketches_superseded"] += 1
            else:
                kept = (v, program)
        return kept

    def _expand(self, s: Search, sketch: Sketch, template: ast.Program) -> None:
        """Every parameter point of a sketch through the lowering (checker included) and the cost model.

        Points that differ only in SPLIT_KV share one verdict: the split size enters only the grid and
        the split's key range, and every SPLIT_KV of the space is a multiple of every BLOCK_N, so the
        checker and the lowering decide the same for all of them (the winner is checked again)."""
        loop_span = _loop_span(template)
        refused_loops: dict[int, str] = {}  # stages -> a refusal of the loop itself, whatever the tiles
        shapes: dict[ParamPoint, tuple] = {}  # the point without its split -> (stage, verdict, source)
        for point in param_points(sketch):
            s.counts["candidates"] += 1
            if point.stages in refused_loops:
                self._add(s, sketch, point, None, "lowering", refused_loops[point.stages])
                continue
            program = _with_params(template, sketch, point)
            shape = replace(point, split_kv=0)
            if shape not in shapes:
                shapes[shape] = self._lower(s, program)
                if shapes[shape][0] == "lowering" and shapes[shape][3] == loop_span:
                    refused_loops[point.stages] = shapes[shape][1]
            stage, verdict, source, _ = shapes[shape]
            if source is None:
                self._add(s, sketch, point, None, stage, verdict)
                continue
            est = estimate(program, s.target, s.spec, source)
            if not est.feasible:
                self._add(s, sketch, point, program, "cost", f"occupancy: {est.reason}", est)
                continue
            self._add(s, sketch, point, program, "ranked", "ok", est)

    def _lower(self, s: Search, program: ast.Program) -> tuple:
        """(stage, verdict, CUDA source or None, span of a lowering refusal)."""
        try:
            return "ranked", "ok", lower(program, s.target, s.spec), None
        except TLCheckError as exc:
            d = exc.diagnostics[0]
            return "checker", f"{d.rule}: {d.message}", None, None
        except TLError as exc:  # LoweringError: a statement or tile shape stage 2 does not implement
            return "lowering", f"lowering: {exc.message}", None, exc.span

    def _interpret(self, s: Search) -> None:
        """The best candidates through the interpreter, until enough pass. A sketch that misses the
        reference once is wrong in its statements, not its tiles: its other candidates are skipped."""
        want = max(self.interpret_top, self.tune_top if self.tune else 0)
        failures = 0
        wrong: dict[tuple, Candidate] = {}
        for c in s.ranked:
            if len(s.passed) >= want or failures >= MAX_INTERPRET_FAILURES:
                break
            if c.sketch.structure in wrong:
                c.stage = "interpret"
                c.verdict = f"skipped: the same sketch missed the reference ({wrong[c.sketch.structure].point.summary()})"
                continue
            problem = interpret(c.program, s.spec, c.params(s.spec))
            c.stage, c.verdict = "interpret", problem or "ok"
            s.counts["interpreted"] += 1
            if problem:
                failures += 1
                s.counts["interpreter_failed"] += 1
                wrong[c.sketch.structure] = c
            else:
                s.passed.append(c)
        if not s.passed:
            why = next((c.verdict for c in s.ranked if c.stage == "interpret"), "no candidate survived the checker")
            raise QimengError(f"the planner found no program for {s.spec.key()} on {s.target.arch}: {why}",
                              fix="report this with the spec and target; `qimeng-serve generate --show-candidates` "
                                  "lists what was tried")

    def _add(self, s: Search, sketch: Sketch, point, program, stage: str, verdict: str, est=None) -> None:
        s.candidates.append(Candidate(len(s.candidates), sketch, point, program, stage, verdict, est))


# ---------------------------------------------------------------- AST edits (no re-parse per candidate)
def _by_structure(sketches: list[Sketch]) -> list[list[Sketch]]:
    groups: dict[tuple, list[Sketch]] = {}
    for sk in sketches:
        groups.setdefault(sk.structure, []).append(sk)
    return list(groups.values())


def _map_stmts(stmts, fn):
    out = []
    for st in stmts:
        if isinstance(st, ast.Loop):
            st = replace(st, body=tuple(_map_stmts(st.body, fn)))
        out.append(fn(st))
    return out


def _with_instructions(template: ast.Program, base: Sketch, sketch: Sketch) -> ast.Program:
    """The template with the sketch's copy path and MMA shape in place of the base sketch's."""
    swap = {("via", base.copy_path): sketch.copy_path, ("mma", base.mma): sketch.mma}

    def edit(st):
        if isinstance(st, (ast.Copy, ast.Compute)):
            opts = tuple(replace(o, value=swap.get((o.key, o.value), o.value)) for o in st.options)
            return replace(st, options=opts)
        return st

    items = [replace(i, body=tuple(_map_stmts(i.body, edit))) if isinstance(i, ast.Kernel) else i
             for i in template.items]
    return ast.Program(tuple(items))


def _sketch_form(program: ast.Program) -> ast.Program:
    """The sketch form of a program: no params block, no `with` options (docs/tl.md, two forms)."""

    def strip(st):
        return replace(st, options=()) if hasattr(st, "options") else st

    items = [replace(i, body=tuple(_map_stmts(i.body, strip))) if isinstance(i, ast.Kernel) else i
             for i in program.items if not isinstance(i, ast.ParamsBlock)]
    return ast.Program(tuple(items))


def _with_params(template: ast.Program, sketch: Sketch, point: ParamPoint) -> ast.Program:
    """The template with the point's params block (expressions that are not numbers are the sketch's)."""
    block = next(i for i in template.items if isinstance(i, ast.ParamsBlock))
    old = {p.name: p for p in block.items if isinstance(p, ast.Param)}
    params = []
    for name, text in point.params(sketch):
        params.append(replace(old[name], value=ast.Num(int(text))) if text.isdigit() else old[name])
    new_block = replace(block, items=tuple(params))
    return ast.Program(tuple(new_block if i is block else i for i in template.items))


def _loop_span(program: ast.Program):
    kernel = next(k for k in program.kernels if k.name != "combine")
    return next(st.span for st in kernel.body if isinstance(st, ast.Loop))


# ---------------------------------------------------------------- result
def _label(spec: AttentionSpec, target: Target) -> str:
    return f"{target.arch} {spec.op} {spec.dtype} hd{spec.head_dim}"


def candidate_program(s: Search, chosen: Candidate, *, full_record: bool = False) -> GeneratedProgram:
    """A candidate as a GeneratedProgram: its TL text (with a header saying how it was chosen), parsed
    and checked again; the record holds every attempt when full_record, else the candidate's own."""
    spec, target = s.spec, s.target
    name = f"{spec.op}_{target.arch.replace('_', '')}"
    est = chosen.estimate
    measured = f"; measured {chosen.measured_ms:.3f} ms (geo-mean) on {s.counts['tuned_on']}" \
        if chosen.measured_ms is not None else ""
    header = [
        (f"Planned by qimeng-serve (planner {PLANNER_VERSION}, cost model {COST_MODEL_VERSION}) for {spec.key()} "
        f"on {target.arch}."),
        f"Sketch: {chosen.sketch.summary()}.",
        f"Params: {chosen.point.summary()}{measured}.",
        f"Predicted on {est.device}: " + ", ".join(f"{c.label} {c.rate:.0f}" for c in est.cases)
        + (" GB/s" if spec.op == "paged_decode" else " TFLOPS") + f" ({est.ctas_per_sm} CTA/SM, {est.bound}-bound).",
        (f"Chosen from {s.counts['candidates']} candidates: {s.counts['ranked']} ranked by the cost model, "
        f"{s.counts['interpreted']} run in the interpreter."),
    ]
    params = chosen.point.params(chosen.sketch)
    text = print_tl(parse_tl(program_text(chosen.sketch, spec, target.arch, name=name, params=params, header=header)))
    program = parse_tl(text, source_name=f"planner:{name}")
    check_tl_or_raise(program, target, spec, source_name=f"planner:{name}")
    sketch_text = print_tl(parse_tl(program_text(chosen.sketch, spec, target.arch, name=name, header=header[:2])))
    attempts = [c.attempt() for c in _record_order(s)] if full_record else [chosen.attempt()]
    details = {
        "planner_version": PLANNER_VERSION,
        "cost_model_version": COST_MODEL_VERSION,
        "device_model": DEVICES[target.arch].name,
        "workload": [c.label for c in workload(spec)],
        "counts": dict(sorted(s.counts.items())),
        "pruned_by": s.pruned_by(),
        "chosen": {"sketch": chosen.sketch.summary(), "params": chosen.point.summary(), "estimate": est.to_dict(),
                   "measured_ms": chosen.measured_ms},
        "best_ranked": s.ranked[0].summary(),
    }
    record = GenerationRecord("planner", details, tuple(attempts))
    return GeneratedProgram(spec, target.arch, sketch_text, program, text, record,
                            name=f"planner:{spec.op}:{target.arch}:{spec.dtype}:hd{spec.head_dim}")


def _record_order(s: Search) -> list[Candidate]:
    """Measured and interpreted first, then the ranked by score, then the pruned in enumeration order."""
    first = [c for c in s.ranked if c.stage in ("tune", "interpret")]
    rest = [c for c in s.ranked if c.stage == "ranked"]
    pruned = [c for c in s.candidates if c.stage not in ("tune", "interpret", "ranked")]
    return first + rest + pruned


def plan_payload(g: GeneratedProgram) -> dict:
    """A GeneratedProgram as the plan cache keeps it (planner_cache)."""
    return {"text": g.text, "sketch_text": g.sketch_text, "name": g.name, "record": g.record.to_dict()}


def plan_from_payload(p: dict, spec: AttentionSpec, arch: str) -> GeneratedProgram:
    r = p["record"]
    record = GenerationRecord(r["generator"], r["details"], tuple(Attempt(**a) for a in r["attempts"]))
    program = parse_tl(p["text"], source_name=p["name"])
    return GeneratedProgram(spec, arch, p["sketch_text"], program, p["text"], record, name=p["name"])
