"""The functions of docs/tl.md §6, on interpreter values (scalars and Tiles)."""

from __future__ import annotations

import math

import torch

from qimeng_serve.tl.values import EvalError, Tile, Value, describe, elementwise

NEG_INF = float("-inf")


def _tile(v: Value, fn: str, what: str = "argument") -> Tile:
    if not isinstance(v, Tile):
        raise EvalError(f"{fn}: {what} is a {describe(v)}, not a buffer", fix=f"pass a tile or vector to {fn}")
    return v


def _matrix(v: Value, fn: str, what: str = "argument") -> Tile:
    t = _tile(v, fn, what)
    if t.is_vector:
        raise EvalError(f"{fn}: {what} is a {describe(t)}", fix=f"{fn} needs a [rows, cols] tile")
    return t


def _int(v: Value, fn: str) -> int:
    if not isinstance(v, int):
        raise EvalError(f"{fn}: {describe(v)} is not an integer", fix=f"{fn} works on integers (lengths, tile counts)")
    return v


def _map(v: Value, on_tensor, on_scalar) -> Value:
    if isinstance(v, Tile):
        return v.with_data(on_tensor(v.data))
    return on_scalar(v)


# ---------------------------------------------------------------- the table
def gemm(a: Value, b: Value) -> Tile:
    a, b = _matrix(a, "gemm", "a"), _matrix(b, "gemm", "b")
    if a.data.shape[1] != b.data.shape[0]:
        raise EvalError(f"gemm inner dimensions differ: a {list(a.data.shape)}, b {list(b.data.shape)}",
                        fix="gemm(a, b) needs a [M, K] and b [K, N]; write K.T for a K tile stored [N, K]")
    # rows are a's (queries), columns are b's (keys, for gemm(rQ, sK.T))
    return Tile(a.data @ b.data, a.row_head, a.row_pos, b.col_pos)


def row_max(x: Value) -> Tile:
    x = _matrix(x, "row_max")
    return Tile(x.data.amax(dim=1), x.row_head, x.row_pos)


def row_sum(x: Value) -> Tile:
    x = _matrix(x, "row_sum")
    return Tile(x.data.sum(dim=1), x.row_head, x.row_pos)


def tl_max(a: Value, b: Value) -> Value:
    return elementwise(a, b, fn=lambda x, y: _torch_or_py(torch.maximum, max, x, y), opname="max")


def tl_min(a: Value, b: Value) -> Value:
    return elementwise(a, b, fn=lambda x, y: _torch_or_py(torch.minimum, min, x, y), opname="min")


def _tensors(*xs) -> list[torch.Tensor]:
    """Scalars among tensors become 0-d tensors of the tensors' dtype."""
    like = next(x for x in xs if isinstance(x, torch.Tensor))
    return [x if isinstance(x, torch.Tensor) else torch.tensor(x, dtype=like.dtype) for x in xs]


def _torch_or_py(torch_fn, py_fn, x, y):
    if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
        return torch_fn(*_tensors(x, y))
    return py_fn(x, y)


def exp2(x: Value) -> Value:
    return _map(x, torch.exp2, lambda s: 2.0 ** s)


def log2(x: Value) -> Value:
    return _map(x, torch.log2, lambda s: NEG_INF if s == 0 else (math.log2(s) if s > 0 else math.nan))


def finite(x: Value) -> Value:
    """-inf -> 0, so that exp2(S - finite(m)) stays defined for a row that has seen no key."""
    return _map(x, lambda t: t.masked_fill(t == NEG_INF, 0.0), lambda s: 0.0 if s == NEG_INF else s)


def nonzero(x: Value) -> Value:
    """0 -> 1, so that acc / nonzero(l) is 0 (not NaN) for a row that has seen no key."""
    return _map(x, lambda t: t.masked_fill(t == 0, 1.0), lambda s: 1 if s == 0 else s)


def softcap(x: Value, c: Value) -> Value:
    if isinstance(c, Tile):
        raise EvalError("softcap: the cap is a tile", fix="pass a scalar cap, e.g. softcap(S, SOFTCAP)")
    if c == 0:
        return x
    return _map(x, lambda t: c * torch.tanh(t / c), lambda s: c * math.tanh(s / c))


def cdiv(a: Value, b: Value) -> int:
    a, b = _int(a, "cdiv"), _int(b, "cdiv")
    if b <= 0:
        raise EvalError(f"cdiv({a}, {b}): the divisor must be positive", fix="divide by a tile size")
    return -(-a // b)


def gcd(a: Value, b: Value) -> int:
    a, b = _int(a, "gcd"), _int(b, "gcd")
    if a <= 0 or b <= 0:
        raise EvalError(f"gcd({a}, {b}): both arguments must be positive", fix="take the gcd of tile sizes")
    return math.gcd(a, b)


def select(c: Value, a: Value, b: Value) -> Value:
    if not isinstance(c, Tile):
        return a if c != 0 else b
    # c's data has the compute dtype: scalar branches take it too
    return elementwise(c, a, b, fn=lambda x, y, z: torch.where(x != 0, *_tensors(x, y, z)[1:]), opname="select")


_MASK_KEYS = ("kv_len", "causal", "offset", "window")


def mask(s: Value, *, kv_len: Value | None = None, causal: Value = 0, offset: Value = 0, window: Value = 0) -> Tile:
    """-inf where key j is past kv_len, after the causal diagonal i + offset, or outside the window."""
    s = _matrix(s, "mask", "S")
    if s.row_pos is None or s.col_pos is None:
        raise EvalError("mask: the tile's rows or columns have no positions",
                        fix="mask a score tile S = gemm(rQ, sK.T) whose rQ came from a Q view and sK from a K view")
    i, j = s.row_pos.unsqueeze(1), s.col_pos.unsqueeze(0)
    hidden = (i < 0) | (j < 0)  # padding rows and columns see nothing
    if kv_len is not None:
        hidden = hidden | (j >= _int(kv_len, "mask kv_len"))
    if _int(causal, "mask causal"):
        hidden = hidden | (j > i + _int(offset, "mask offset"))
    w = _int(window, "mask window")
    if w > 0:
        hidden = hidden | (j <= i + _int(offset, "mask offset") - w)
    return s.with_data(s.data.masked_fill(hidden, NEG_INF))


# name -> (function, number of positional arguments, allowed keywords)
FUNCTIONS = {
    "gemm": (gemm, 2, ()), "row_max": (row_max, 1, ()), "row_sum": (row_sum, 1, ()),
    "max": (tl_max, 2, ()), "min": (tl_min, 2, ()), "exp2": (exp2, 1, ()), "log2": (log2, 1, ()),
    "finite": (finite, 1, ()), "nonzero": (nonzero, 1, ()), "softcap": (softcap, 2, ()),
    "mask": (mask, 1, _MASK_KEYS), "cdiv": (cdiv, 2, ()), "gcd": (gcd, 2, ()), "select": (select, 3, ()),
}


def call(name: str, args: list[Value], kwargs: dict[str, Value]) -> Value:
    if name not in FUNCTIONS:
        raise EvalError(f"unknown function '{name}'", fix=f"TL functions are {', '.join(FUNCTIONS)} (docs/tl.md §6)")
    fn, arity, keys = FUNCTIONS[name]
    if len(args) != arity:
        raise EvalError(f"{name} takes {arity} argument(s), got {len(args)}", fix="see docs/tl.md §6")
    unknown = [k for k in kwargs if k not in keys]
    if unknown:
        allowed = ", ".join(f"{k}=" for k in keys) or "no keyword arguments"
        raise EvalError(f"{name}: unknown keyword argument '{unknown[0]}'", fix=f"{name} takes {allowed}")
    return fn(*args, **kwargs)
