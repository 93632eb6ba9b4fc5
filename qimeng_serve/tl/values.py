"""Run-time values of the TL interpreter: Python scalars, and tiles that remember their rows.

A Tile is a [rows] vector or a [rows, cols] tile. Besides its numbers it carries the metadata of
docs/tl.md §4: each row's (head, position) from the global view it was copied from, and for score
tiles each column's key position; `mask` reads them. Padding rows (a buffer row no view row
landed in) have head and position -1.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, replace

import torch

# TL dtype name -> torch dtype that a store rounds to when dtypes are emulated
TORCH_DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16, "e4m3": torch.float8_e4m3fn}


class EvalError(Exception):
    """A run-time failure inside an expression; the interpreter adds the source span."""

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.message, self.fix = message, fix


@dataclass(frozen=True)
class Tile:
    data: torch.Tensor  # [rows] or [rows, cols]
    row_head: torch.Tensor | None = None  # [rows] int64
    row_pos: torch.Tensor | None = None  # [rows] int64: query (or key) position of each row
    col_pos: torch.Tensor | None = None  # [cols] int64: key position of each column

    @property
    def is_vector(self) -> bool:
        return self.data.dim() == 1

    def with_data(self, data: torch.Tensor) -> "Tile":
        return replace(self, data=data)

    def transposed(self) -> "Tile":
        if self.is_vector:
            raise EvalError("`.T` of a vector", fix="transpose only [rows, cols] tiles, e.g. gemm(rQ, sK.T)")
        # rows become columns: a K tile's key positions become the columns of the score tile
        return Tile(self.data.t(), None, self.col_pos, self.row_pos)

    def merged_meta(self, other: "Tile") -> "Tile":
        """Keep this tile's metadata, filling what it lacks from other (same rows)."""
        def pick(a, b):
            return a if a is not None else b
        cols = self.col_pos if not self.is_vector else None
        other_cols = other.col_pos if not other.is_vector and other.data.shape == self.data.shape else None
        return Tile(self.data, pick(self.row_head, other.row_head), pick(self.row_pos, other.row_pos),
                    pick(cols, other_cols))


Value = int | float | Tile


def describe(v: Value) -> str:
    if isinstance(v, Tile):
        return ("vector " if v.is_vector else "tile ") + str(list(v.data.shape))
    return f"scalar {v!r}"


def _aligned(tensors: list[torch.Tensor], opname: str) -> list[torch.Tensor]:
    """Same shapes, or [rows] vectors broadcast along a [rows, cols] tile's columns."""
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) == 1:
        return tensors
    tiles = {s for s in shapes if len(s) == 2}
    rows = {s[0] for s in shapes}
    if len(tiles) == 1 and len(rows) == 1:
        return [t.unsqueeze(1) if t.dim() == 1 else t for t in tensors]
    raise EvalError(f"shape mismatch in {opname}: " + " and ".join(str(list(s)) for s in sorted(shapes)),
                    fix="operands must have the same shape, or be a [rows] vector and a [rows, cols] tile")


def _result_meta(values: tuple, data: torch.Tensor) -> Tile:
    tiles = sorted((v for v in values if isinstance(v, Tile)), key=lambda t: t.is_vector)
    out = tiles[0].with_data(data)  # a tile's columns survive broadcasting; a vector has none
    for t in tiles[1:]:
        out = out.merged_meta(t)
    return out


def elementwise(*args, fn, opname: str) -> Value:
    """fn on values: scalars stay Python numbers; anything with a tile in it becomes a tile."""
    if not any(isinstance(v, Tile) for v in args):
        return fn(*args)
    tensors = _aligned([v.data for v in args if isinstance(v, Tile)], opname)
    it = iter(tensors)
    operands = [next(it) if isinstance(v, Tile) else v for v in args]
    return _result_meta(args, fn(*operands))


def _scalar_div(a, b):
    if b == 0:
        raise EvalError(f"division by zero ({a} / {b})", fix="guard the divisor, e.g. with max(1, ...)")
    # integer `/` is floor division (docs/tl.md §2)
    return a // b if isinstance(a, int) and isinstance(b, int) else a / b


def _scalar_mod(a, b):
    if b == 0:
        raise EvalError(f"remainder by zero ({a} % {b})", fix="guard the divisor")
    return a % b


def _div(a, b):
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return a / b
    return _scalar_div(a, b)


def _mod(a, b):
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return torch.remainder(a, b)
    return _scalar_mod(a, b)


BINOPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": _div, "%": _mod}


def binop(op: str, a: Value, b: Value) -> Value:
    for v in (a, b):
        if isinstance(v, str):
            raise EvalError(f"'{v}' is a dtype name, not a number", fix="use DTYPE only as an Allocate dtype")
    return elementwise(a, b, fn=BINOPS[op], opname=f"'{op}'")


def negate(a: Value) -> Value:
    if isinstance(a, Tile):
        return a.with_data(-a.data)
    if isinstance(a, str):
        raise EvalError(f"'{a}' is a dtype name, not a number", fix="use DTYPE only as an Allocate dtype")
    return -a


def round_to(data: torch.Tensor, dtype: str) -> torch.Tensor:
    """Values as a store into a buffer of TL dtype `dtype` leaves them (computed in data's dtype)."""
    target = TORCH_DTYPES[dtype]
    return data if data.dtype == target else data.to(target).to(data.dtype)
