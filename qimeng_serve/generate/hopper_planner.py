"""Stage 1 for the Hopper kernels: the planner's search over warp-specialised programs (sm_90a).

For an (AttentionSpec, sm_90) it
 1. enumerates Hopper sketches (hopper_sketches.py) and their parameter points;
 2. prices each with the Hopper cost model (hopper_cost.py), which also prunes the points whose
    consumer registers would spill;
 3. runs the rest through the checker (shared memory, the register launch budget, the role rules);
 4. takes them best first through stage 2's sm90 lowering and the TL interpreter (the float64 gate
    every planned program passes), until INTERPRET_TOP have passed: the first is the program.
Every candidate becomes an Attempt of the GenerationRecord, as in the portable planner. The
measured programs of kernels_src/tl/<family>_sm90.tl stay the build's default (`--hopper-generator
golden`) until the planner's choices have been timed against them (docs/planner.md).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

from qimeng_serve.build.kernel_set import HOPPER_ARCH
from qimeng_serve.errors import QimengError, TLCheckError, TLError
from qimeng_serve.generate import planner_cache
from qimeng_serve.generate.base import Attempt, GeneratedProgram, GenerationRecord
from qimeng_serve.generate.cost_model import Estimate
from qimeng_serve.generate.hopper_cost import (
    DEVICE,
    HOPPER_COST_MODEL_VERSION,
    LENGTHS,
    estimate_hopper,
)
from qimeng_serve.generate.hopper_sketches import (
    SHIPPED,
    HopperPoint,
    HopperSketch,
    enumerate_hopper_sketches,
    hopper_points,
    hopper_program_text,
)
from qimeng_serve.generate.interpret_gate import interpret
from qimeng_serve.generate.planner import plan_from_payload, plan_payload
from qimeng_serve.spec import AttentionSpec
from qimeng_serve.targets import Target, get_target
from qimeng_serve.tl import ast
from qimeng_serve.tl.checker import check_tl, check_tl_or_raise
from qimeng_serve.tl.interpreter import resolve_params
from qimeng_serve.tl.parser import parse_tl
from qimeng_serve.tl.printer import print_tl

HOPPER_PLANNER_VERSION = "1"
INTERPRET_TOP = 2


@dataclass
class HopperCandidate:
    index: int
    sketch: HopperSketch
    point: HopperPoint
    stage: str = "ranked"  # cost, checker, lowering, ranked, interpret
    verdict: str = "ok"
    estimate: Estimate | None = None
    program: ast.Program | None = None
    measured_ms: float | None = None  # --tune: geometric mean over the workload, on the GPU
    shipped: bool = False  # the program the build ships (hopper_sketches.SHIPPED), timed beside the picks

    def summary(self) -> str:
        return f"{self.sketch.summary()} | {self.point.summary(self.sketch)}" + (" (shipped)" if self.shipped else "")

    def attempt(self) -> Attempt:
        score = self.measured_ms if self.measured_ms is not None else (
            round(self.estimate.score, 3) if self.estimate and self.estimate.feasible else None)
        return Attempt(self.stage, self.summary(), self.verdict, score)


@dataclass
class HopperSearch:
    spec: AttentionSpec
    target: Target
    candidates: list[HopperCandidate] = field(default_factory=list)
    ranked: list[HopperCandidate] = field(default_factory=list)
    passed: list[HopperCandidate] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)

    def pruned_by(self) -> dict[str, int]:
        tally = Counter(c.verdict.split(":")[0] if c.stage == "checker" else c.stage
                        for c in self.candidates if c.stage in ("cost", "checker", "lowering"))
        return dict(sorted(tally.items()))


def program_name(spec: AttentionSpec) -> str:
    """`dense_prefill_sm90a` (`..._full` for a non-causal spec): the name the build's sm90a kernels go
    under (kernel_set.hopper_variant_program)."""
    from qimeng_serve.build.kernel_set import mask_suffix

    return f"{spec.op}_sm90a{mask_suffix(spec.causal)}"


def _require_hopper(target: Target) -> None:
    if target.arch != HOPPER_ARCH:
        raise QimengError(f"the Hopper planner plans for {HOPPER_ARCH}, not {target.arch}",
                          fix="build sm_90, or use the portable planner for this arch")


class HopperPlanner:
    """Generator of sm90a programs (the build's Hopper jobs) by search; see the module docstring."""

    name = "planner"

    def __init__(self, *, interpret_top: int = INTERPRET_TOP, tune: bool = False, tune_top: int = 4,
                 use_cache: bool = True, progress=None) -> None:
        if interpret_top < 1 or tune_top < 1:
            raise QimengError("--tune-top and the interpreter gate need at least 1 candidate", fix="use --tune-top 4")
        self.interpret_top, self.tune, self.tune_top = interpret_top, tune, tune_top
        self.use_cache = use_cache
        self.progress = progress or (lambda message: None)

    def _key(self, spec: AttentionSpec) -> str:
        """The plan cache's key (planner_cache: spec, settings and a digest of the code plans depend on);
        a tuned plan is keyed by the GPU that measured it."""
        settings = {"hopper_planner": HOPPER_PLANNER_VERSION, "cost_model": HOPPER_COST_MODEL_VERSION,
                    "interpret_top": self.interpret_top, "tune_top": self.tune_top if self.tune else 0}
        if self.tune:
            from qimeng_serve.generate.tune import gpu_name

            settings["gpu"] = gpu_name(get_target(HOPPER_ARCH))  # no GPU of this arch: a clear error first
        return planner_cache.plan_key(spec, "sm_90a", settings)

    def generate(self, spec: AttentionSpec, target: Target | str) -> GeneratedProgram:
        """The best candidate by the cost model, or with tune=True the fastest of the top tune_top
        measured on this machine's sm_90 GPU (generate/tune.py: compiled, validated, timed)."""
        target = get_target(target) if isinstance(target, str) else target
        _require_hopper(target)
        key = self._key(spec)
        if self.use_cache and (hit := planner_cache.load(key)) is not None:
            self.progress(f"sm_90a {spec.op} {spec.dtype} hd{spec.head_dim}: planned program from the cache")
            return plan_from_payload(hit, spec, HOPPER_ARCH)
        search = self.search(spec, target, want=max(self.interpret_top, self.tune_top if self.tune else 0))
        chosen = search.passed[0]
        if self.tune:
            chosen = self._tune(search)
        generated = self._program(search, chosen)
        if self.use_cache:
            planner_cache.store(key, plan_payload(generated))
        return generated

    def _tune(self, s: HopperSearch) -> HopperCandidate:
        from qimeng_serve.build.kernel_set import SM90A, KernelJob
        from qimeng_serve.generate.tune import measure

        candidates = self.tune_candidates(s)
        best, device = measure(s.spec, s.target, candidates,
                               lambda c: KernelJob(s.spec, self._program(s, c), variant=SM90A), self.progress)
        s.counts["tuned"], s.counts["tuned_on"] = len(candidates), device
        return best

    def tune_candidates(self, s: HopperSearch) -> list[HopperCandidate]:
        """The top tune_top interpreter-verified candidates, and the shipped program of the spec
        (SHIPPED) when it is not among them: the measurement then says whether a pick beats it."""
        candidates = s.passed[:self.tune_top]
        shipped = SHIPPED.get((s.spec.op, s.spec.head_dim))
        if shipped is None:
            return candidates
        match = next((c for c in s.candidates if (c.sketch, c.point) == shipped), None)
        if match is None or match.stage in ("cost", "checker"):
            return candidates  # not in this spec's space (another dtype's register needs, a feedback bound)
        match.shipped = True
        if match not in candidates:
            if match.stage == "ranked":  # not yet through the lowering and the interpreter
                self._admit(s, match)
            if match.stage == "interpret" and match.verdict == "ok":
                candidates = candidates + [match]
        return candidates

    def next_program(self, spec: AttentionSpec, target: Target | str, rejected: GeneratedProgram,
                     reason: str) -> GeneratedProgram | None:
        """Stage 2's feedback: ptxas spilled `rejected`. The next interpreter-verified candidate that
        the cost model expects to need fewer consumer registers, or None."""
        target = get_target(target) if isinstance(target, str) else target
        chosen = rejected.record.details.get("chosen", {})
        ceiling = chosen.get("estimate", {}).get("registers", 0)
        try:
            search = self.search(spec, target, want=1, below=ceiling)
        except QimengError:  # no candidate needs fewer registers
            return None
        generated = self._program(search, search.passed[0])
        rejections = rejected.record.details.get("ptxas_rejected", []) + [
            {"candidate": chosen.get("summary", "?"), "ptxas": reason}]
        record = GenerationRecord("planner", {**generated.record.details, "ptxas_rejected": rejections},
                                  tuple(Attempt("ptxas", r["candidate"], r["ptxas"]) for r in rejections)
                                  + generated.record.attempts)
        generated = replace(generated, record=record)
        if self.use_cache:  # the rejected plan is not served again
            planner_cache.store(self._key(spec), plan_payload(generated))
        return generated

    # ------------------------------------------------------------ search
    def search(self, spec: AttentionSpec, target: Target, *, want: int | None = None,
               below: int | None = None) -> HopperSearch:
        """Enumerate, price, check, lower and interpret; raises when no candidate survives.
        below: only candidates predicted to need fewer consumer registers (ptxas feedback)."""
        _require_hopper(target)
        spec.validate_for(target)
        sketches = enumerate_hopper_sketches(spec.op)
        if not sketches:
            raise QimengError(f"{spec.op} has no Hopper form", fix="the Hopper kernels are dense and paged prefill")
        s = HopperSearch(spec, target)
        for key in ("sketches", "candidates", "ranked", "interpreted", "interpreter_failed"):
            s.counts[key] = 0
        s.counts["sketches"] = len(sketches)
        checked: dict[tuple, str] = {}  # the checker's verdict does not depend on the schedule options
        for sketch in sketches:
            for point in hopper_points(sketch):
                c = HopperCandidate(len(s.candidates), sketch, point)
                s.candidates.append(c)
                s.counts["candidates"] += 1
                c.estimate = estimate_hopper(sketch, point, spec)
                if not c.estimate.feasible:
                    c.stage, c.verdict = "cost", c.estimate.reason
                    continue
                if below is not None and c.estimate.registers >= below:
                    c.stage, c.verdict = "cost", f"ptxas feedback: needs {c.estimate.registers} >= {below} registers"
                    continue
                c.program = parse_tl(hopper_program_text(sketch, spec, target.arch, name=program_name(spec),
                                                         params=point.params(sketch)))
                key = (sketch.tiles, sketch.kv_via, point)
                if key not in checked:
                    errors = [d for d in check_tl(c.program, target, spec) if d.severity == "error"]
                    checked[key] = f"{errors[0].rule}: {errors[0].message}" if errors else ""
                if checked[key]:
                    c.stage, c.verdict = "checker", checked[key]
        s.ranked = sorted((c for c in s.candidates if c.stage == "ranked"),
                          key=lambda c: (round(c.estimate.score, 3), -c.point.stages, c.index))
        s.counts["ranked"] = len(s.ranked)
        self._lower_and_interpret(s, want or self.interpret_top)
        return s

    def _lower_and_interpret(self, s: HopperSearch, want: int) -> None:
        """Best first through the lowering and the interpreter until `want` pass. A candidate that
        differs from a passed one only in its stage count is passed over: the model ranks stages
        nearly alike, and --tune's few measurements should span schedules and tiles."""
        shapes = set()
        for c in s.ranked:
            if len(s.passed) >= want:
                break
            shape = (c.sketch, c.point.consumers, c.point.block_n)
            if shape in shapes:
                c.verdict = f"passed over: {c.point.stages} stages of a tile already taken"
                continue
            if self._admit(s, c):
                s.passed.append(c)
                shapes.add(shape)
        if not s.passed:
            why = next((c.verdict for c in s.ranked if c.stage in ("interpret", "lowering")),
                       "no candidate survived the cost model and the checker")
            raise QimengError(f"the Hopper planner found no program for {s.spec.key()}: {why}",
                              fix="build with --hopper-generator golden")

    @staticmethod
    def _admit(s: HopperSearch, c: HopperCandidate) -> bool:
        """One candidate through stage 2's sm90 lowering and the interpreter gate; True when it passed."""
        from qimeng_serve.lower.emit_sm90 import lower_sm90

        try:
            lower_sm90(c.program, s.target, s.spec)
        except TLCheckError as exc:
            c.stage, c.verdict = "checker", f"{exc.diagnostics[0].rule}: {exc.diagnostics[0].message}"
            return False
        except TLError as exc:  # a statement or tile shape the sm90 lowering does not implement
            c.stage, c.verdict = "lowering", f"lowering: {exc.message}"
            return False
        params = {k: v for k, v in resolve_params(c.program, s.spec).items() if isinstance(v, int)}
        problem = interpret(c.program, s.spec, params)
        c.stage, c.verdict = "interpret", problem or "ok"
        s.counts["interpreted"] += 1
        if problem:
            s.counts["interpreter_failed"] += 1
        return not problem

    def _program(self, s: HopperSearch, chosen: HopperCandidate) -> GeneratedProgram:
        spec, target = s.spec, s.target
        est = chosen.estimate
        header = [
            (f"Planned by qimeng-serve (Hopper planner {HOPPER_PLANNER_VERSION}, cost model "
             f"{HOPPER_COST_MODEL_VERSION}) for {spec.key()} on {target.arch} (sm_90a)."),
            f"Sketch: {chosen.sketch.summary()}.",
            f"Params: {chosen.point.summary(chosen.sketch)}"
            + (f"; measured {chosen.measured_ms:.3f} ms (geo-mean) on {s.counts['tuned_on']}." if chosen.measured_ms
               is not None else "."),
            f"Predicted on {DEVICE}: " + ", ".join(f"{c.label} {c.rate:.0f}" for c in est.cases) + " TFLOPS.",
            (f"Chosen from {s.counts['candidates']} candidates: {s.counts['ranked']} ranked by the cost model, "
             f"{s.counts['interpreted']} run in the interpreter."),
        ]
        name = program_name(spec)
        text = print_tl(parse_tl(hopper_program_text(chosen.sketch, spec, target.arch, name=name,
                                                     params=chosen.point.params(chosen.sketch), header=header)))
        program = parse_tl(text, source_name=f"planner:{name}")
        check_tl_or_raise(program, target, spec, source_name=f"planner:{name}")
        sketch_text = hopper_program_text(chosen.sketch, spec, target.arch, name=name, header=header[:2])
        first = [c for c in s.ranked if c.stage in ("tune", "interpret")]
        rest = [c for c in s.ranked if c.stage == "ranked"]
        pruned = [c for c in s.candidates if c.stage not in ("tune", "interpret", "ranked")]
        details = {
            "planner_version": HOPPER_PLANNER_VERSION,
            "cost_model_version": HOPPER_COST_MODEL_VERSION,
            "device_model": DEVICE,
            "workload": [f"L={n // 1024}k" for n in LENGTHS],
            "counts": dict(sorted(s.counts.items())),
            "pruned_by": s.pruned_by(),
            "chosen": {"summary": chosen.summary(), "sketch": chosen.sketch.summary(),
                       "params": chosen.point.summary(chosen.sketch), "estimate": est.to_dict(),
                       "measured_ms": chosen.measured_ms},
            "best_ranked": s.ranked[0].summary(),
        }
        record = GenerationRecord("planner", details, tuple(c.attempt() for c in first + rest + pruned))
        return GeneratedProgram(spec, target.arch, sketch_text, program, text, record,
                                name=f"planner:{spec.op}:sm_90a:{spec.dtype}:hd{spec.head_dim}")
