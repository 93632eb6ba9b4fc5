"""The per-target static checker for TL programs (`qimeng-serve tl check FILE --arch sm_XX`).

Its messages go back verbatim to whoever wrote the program (often an LLM), so every Diagnostic
names the line, the rule, and the exact change to make. All rules run in one pass; the rules
live in qimeng_serve/tl/rules/ and are listed in RULES below (docs/tl.md §7 is the contract).
"""

from __future__ import annotations

from typing import Callable, Iterator

from qimeng_serve.errors import TLCheckError
from qimeng_serve.spec import AttentionSpec
from qimeng_serve.targets import Target, get_target
from qimeng_serve.tl import ast
from qimeng_serve.tl.rules import budgets, hopper, legality, names_shapes, semantics
from qimeng_serve.tl.rules.context import Context, Diagnostic

__all__ = ["Diagnostic", "RULES", "check_tl", "check_tl_or_raise", "register_estimate"]

Rule = Callable[[Context], Iterator[Diagnostic]]

# (rule id, function, runs in sketch form too); ids are what Diagnostic.rule carries
# (names_shapes.rule_names also yields "allocate").
RULES: tuple[tuple[str, Rule, bool], ...] = (
    ("header", names_shapes.rule_header, True),
    ("names", names_shapes.rule_names, True),
    ("level", names_shapes.rule_levels, True),
    ("shape", names_shapes.rule_shapes, True),
    ("options", legality.rule_options, True),
    ("copy-path", legality.rule_copy_paths, True),
    ("mma", legality.rule_mma, True),
    ("mask", semantics.rule_mask, True),
    ("softcap", semantics.rule_softcap, True),
    ("softmax", semantics.rule_softmax, True),
    ("reshape", semantics.rule_reshape, True),
    ("normalize", semantics.rule_normalize, True),
    ("kv-head", semantics.rule_kv_head, True),
    ("form", legality.rule_form, False),
    ("tiles", budgets.rule_tiles, False),
    ("smem", budgets.rule_smem, False),
    ("registers", budgets.rule_registers, False),
    ("pipeline", budgets.rule_pipeline, False),
    # Hopper (sm_90): warp specialisation, TMA, GMMA, register reallocation (rules/hopper.py)
    ("hopper", hopper.rule_hopper_target, True),
    ("roles", hopper.rule_roles, True),
    ("gmma", hopper.rule_gmma, False),
    ("tma", hopper.rule_tma, False),
    ("setmaxnreg", hopper.rule_setmaxnreg, False),
    ("smem-stages", hopper.rule_smem_stages, False),
    ("kernel-tiles", hopper.rule_kernel_tiles, True),
)

FORMS = ("auto", "sketch", "program")


def check_tl(program: ast.Program, target: Target | str, spec: AttentionSpec, *,
             form: str = "auto") -> list[Diagnostic]:
    """Every diagnostic for `program` compiled for `spec` on `target`, in source order.

    form: "sketch" skips the parameter, option and budget rules; "program" requires them;
    "auto" is "sketch" exactly when the program has no params block.
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, not {form!r}")
    if isinstance(target, str):
        target = get_target(target)
    resolved = ("sketch" if program.is_sketch else "program") if form == "auto" else form
    ctx = Context(program, target, spec, resolved)
    out: list[Diagnostic] = []
    for _, rule, in_sketch in RULES:
        if in_sketch or resolved == "program":
            out.extend(rule(ctx))
    return _dedupe(sorted(out, key=_order))


def check_tl_or_raise(program: ast.Program, target: Target | str, spec: AttentionSpec, *, form: str = "auto",
                      source_name: str = "<tl>") -> None:
    """Raise TLCheckError carrying every error diagnostic; warnings alone pass."""
    errors = [d for d in check_tl(program, target, spec, form=form) if d.severity == "error"]
    if errors:
        raise TLCheckError(errors, source_name)


def render_all(diagnostics: list[Diagnostic], source_name: str = "<tl>") -> str:
    return "\n".join(d.render(source_name) for d in diagnostics)


def register_estimate(program: ast.Program, target: Target | str, spec: AttentionSpec) -> dict[str, int]:
    """Estimated registers per thread of each kernel (the number the `registers` rule compares)."""
    if isinstance(target, str):
        target = get_target(target)
    ctx = Context(program, target, spec, "program")
    return {k.kernel.name: budgets.register_estimate(ctx, k)[0] for k in ctx.kernels}


def _order(d: Diagnostic):
    return (d.span.line, d.span.column) if d.span else (0, 0)


def _dedupe(diags: list[Diagnostic]) -> list[Diagnostic]:
    seen, out = set(), []
    for d in diags:
        key = (d.rule, d.message, d.span)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out
