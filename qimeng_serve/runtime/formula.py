"""Evaluate a launch formula from a bundle manifest (TL integer syntax) without importing the TL toolchain."""

from __future__ import annotations

import ast
import functools
import operator

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.floordiv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
_FUNCS = {"cdiv": lambda a, b: -(-a // b), "min": min, "max": max, "select": lambda c, a, b: a if c else b}


def evaluate(formula: str, values: dict[str, int]) -> int:
    """`cdiv(max_seq_q, 128)` with max_seq_q = 300 -> 3. TL's `/` is floor division."""
    return _eval(_parsed(formula), values, formula)


@functools.lru_cache(maxsize=512)
def _parsed(formula: str) -> ast.expr:
    """A manifest has a handful of formulas, evaluated at every launch: parse each once."""
    return ast.parse(formula, mode="eval").body


def _eval(node, values, formula):
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in values:
            raise KeyError(f"launch formula `{formula}` needs `{node.id}`")
        return values[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](_eval(node.left, values, formula), _eval(node.right, values, formula))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval(node.operand, values, formula)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS:
        return _FUNCS[node.func.id](*(_eval(a, values, formula) for a in node.args))
    raise ValueError(f"unsupported launch formula `{formula}`")
