"""TL integer expressions -> C++ expressions for a generated kernel, and -> host grid formulas.

Scalars of the TL program (grid variables, lets, loop variables) become `const int t_<name>`;
params and D become literals; runtime values read the kernel's AttnParams `p`.
"""

from __future__ import annotations

from dataclasses import dataclass

from qimeng_serve.errors import TLError
from qimeng_serve.tl import ast
from qimeng_serve.tl.printer import print_expr

# Runtime names -> C++ over `const qm::AttnParams& p`.
RUNTIME_CPP = {
    "batch": "p.batch",
    "heads_q": "p.heads_q",
    "heads_kv": "p.heads_kv",
    "max_seq_q": "p.max_seqlen_q",
    "max_seq_k": "p.max_seqlen_k",
    # spec constants the kernel reads at run time, so one binary serves every GQA ratio;
    # the launcher sets them from the bundle's spec
    "GROUP": "(p.heads_q / p.heads_kv)",
    "CAUSAL": "p.causal",
    "WINDOW": "qm::window_of(p)",
}
RUNTIME_ARRAYS = {"seqlen_q": "qm::seqlen_q_of", "seqlen_k": "qm::seqlen_k_of"}
_FUNCS = {"cdiv": "qm::cdiv", "gcd": "qm::gcd", "min": "min", "max": "max"}


class LoweringError(TLError):
    """A TL program that stage 2 cannot lower (yet): names the line and what the lowering accepts."""


@dataclass
class Scope:
    """What each name of a TL kernel means to the emitter."""

    literals: dict[str, int]  # params and compile-time spec constants
    scalars: set[str]  # grid variables, lets, loop variables

    def cpp(self, e: ast.Expr) -> str:
        return _cpp(e, self)


def scalar_name(name: str) -> str:
    return f"t_{name}"


def _cpp(e, scope: Scope) -> str:
    if isinstance(e, ast.Num):
        if isinstance(e.value, float):
            raise LoweringError(f"float {e.value} in an integer expression", e.span, fix="use integers in indices and bounds")
        return str(e.value)
    if isinstance(e, ast.Name):
        if e.id in scope.scalars:
            return scalar_name(e.id)
        if e.id in scope.literals:
            return str(scope.literals[e.id])
        if e.id in RUNTIME_CPP:
            return RUNTIME_CPP[e.id]
        raise LoweringError(f"the lowering has no C++ for '{e.id}'", e.span,
                            fix="use grid variables, lets, params, spec constants or runtime sizes here")
    if isinstance(e, ast.BinOp):
        a, b = _cpp(e.left, scope), _cpp(e.right, scope)
        if e.op == "/":
            return f"qm::floordiv({a}, {b})"  # TL's / is floor division; C++'s truncates
        if e.op == "%":
            return f"qm::floormod({a}, {b})"
        return f"({a} {e.op} {b})"
    if isinstance(e, ast.Neg):
        return f"(-{_cpp(e.operand, scope)})"
    if isinstance(e, ast.Call):
        args = [_cpp(a, scope) for a in e.args]
        if e.func == "select" and len(args) == 3:
            return f"({args[0]} ? {args[1]} : {args[2]})"
        if e.func in _FUNCS:
            return f"{_FUNCS[e.func]}({', '.join(args)})"
        raise LoweringError(f"{e.func}(...) has no integer lowering", e.span, fix="use cdiv, gcd, min, max or select in bounds")
    if isinstance(e, ast.Indexed) and e.base in RUNTIME_ARRAYS and len(e.indices) == 1:
        return f"{RUNTIME_ARRAYS[e.base]}(p, {_cpp(e.indices[0], scope)})"
    raise LoweringError(f"cannot lower `{print_expr(e)}` to C++", getattr(e, "span", None),
                        fix="integer expressions may use + - * / %, cdiv, gcd, min, max, select, seqlen_q[b], seqlen_k[b]")


def substitute(e, values: dict[str, int]):
    """e with the given names replaced by numbers (params into a host grid formula)."""
    if isinstance(e, ast.Name) and e.id in values:
        return ast.Num(values[e.id])
    if isinstance(e, ast.BinOp):
        return ast.BinOp(e.op, substitute(e.left, values), substitute(e.right, values))
    if isinstance(e, ast.Neg):
        return ast.Neg(substitute(e.operand, values))
    if isinstance(e, ast.Call):
        return ast.Call(e.func, tuple(substitute(a, values) for a in e.args),
                        tuple((k, substitute(v, values)) for k, v in e.kwargs))
    return e


def host_formula(e, values: dict[str, int]) -> str:
    """A grid extent as TL text over runtime sizes only, for the launcher to evaluate."""
    return print_expr(substitute(e, values))
