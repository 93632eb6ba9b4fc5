"""Stage 1's one interface: (AttentionSpec, Target) -> TL sketch -> TL program, with a record of how.

Two generators sit behind it: the offline planner (`planner`, the default) and the LLM client
(`llm`). `build` and `generate` only talk to this interface, so either can feed stage 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from qimeng_serve.spec import AttentionSpec
from qimeng_serve.targets import Target
from qimeng_serve.tl import ast


@dataclass(frozen=True)
class Attempt:
    """One candidate the generator looked at and what the checker / interpreter / timer said."""

    stage: str  # "sketch", "params", "candidate", "tune", ...
    summary: str  # short description, e.g. "BLOCK_M=128 BLOCK_N=64 WARPS=4" or "LLM reply 2"
    verdict: str  # "ok", or the checker's / interpreter's message verbatim
    score: float | None = None  # cost-model estimate or measured time, lower is better


@dataclass(frozen=True)
class GenerationRecord:
    """How a program was made: goes into the bundle manifest next to the TL source."""

    generator: str  # "planner" | "llm"
    details: dict[str, Any] = field(default_factory=dict)  # e.g. model, tokens, cost, candidates tried
    attempts: tuple[Attempt, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"generator": self.generator, "details": self.details,
                "attempts": [a.__dict__ for a in self.attempts]}


@dataclass(frozen=True)
class GeneratedProgram:
    spec: AttentionSpec
    target: str  # arch, e.g. "sm_80"
    sketch_text: str  # the sketch form (statements only)
    program: ast.Program  # the full program, checked and interpreted
    text: str  # print_tl(program)
    record: GenerationRecord
    name: str = ""  # a stable label for the program, e.g. "planner:paged_decode:sm_80:f16:hd128"


class Generator(Protocol):
    name: str

    def generate(self, spec: AttentionSpec, target: Target) -> GeneratedProgram: ...


def make_generator(name: str, **options: Any) -> Generator:
    """The generator called `name` ("planner" or "llm"), built from CLI/env options."""
    from qimeng_serve.errors import QimengError

    if name == "planner":
        from qimeng_serve.generate.planner import Planner

        return Planner.from_options(**options)
    if name == "llm":
        from qimeng_serve.generate.llm import LLMGenerator

        return LLMGenerator.from_options(**options)
    raise QimengError(f"unknown generator '{name}'", fix="use --generator planner (offline default) or --generator llm")
