"""TL syntax tree: frozen dataclasses; spans are carried but never compared.

Two programs are equal when their text means the same thing, whatever the spacing,
which is what `parse(print(p)) == p` relies on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from qimeng_serve.errors import Span

_NO_SPAN = field(default=None, compare=False, repr=False)


# ---------------------------------------------------------------- expressions
@dataclass(frozen=True)
class Num:
    value: int | float
    span: Span | None = _NO_SPAN


@dataclass(frozen=True)
class Name:
    id: str
    span: Span | None = _NO_SPAN


@dataclass(frozen=True)
class BinOp:
    op: str  # one of + - * / %
    left: "Expr"
    right: "Expr"
    span: Span | None = _NO_SPAN


@dataclass(frozen=True)
class Neg:
    operand: "Expr"
    span: Span | None = _NO_SPAN


@dataclass(frozen=True)
class Transpose:
    operand: "Expr"
    span: Span | None = _NO_SPAN


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple["Expr", ...]
    kwargs: tuple[tuple[str, "Expr"], ...] = ()
    span: Span | None = _NO_SPAN

    def kwarg(self, key: str) -> "Expr | None":
        for k, v in self.kwargs:
            if k == key:
                return v
        return None


@dataclass(frozen=True)
class Slice:
    """`lo : hi` inside an index: the half-open range [lo, hi)."""

    lo: "Expr"
    hi: "Expr"
    span: Span | None = _NO_SPAN


@dataclass(frozen=True)
class Indexed:
    """`Q[b, h, lo : hi]`: a view of a global tensor, or an element of a runtime array."""

    base: str
    indices: tuple[Union["Expr", Slice], ...]
    span: Span | None = _NO_SPAN


Expr = Union[Num, Name, BinOp, Neg, Transpose, Call, Indexed]


# ---------------------------------------------------------------- statements
@dataclass(frozen=True)
class Option:
    key: str
    value: str
    span: Span | None = _NO_SPAN


Options = tuple[Option, ...]


def option(options: Options, key: str) -> str | None:
    for o in options:
        if o.key == key:
            return o.value
    return None


@dataclass(frozen=True)
class Comment:
    text: str  # without the leading '#'
    inline: bool = False  # written at the end of the previous statement's line
    span: Span | None = _NO_SPAN


@dataclass(frozen=True)
class Let:
    name: str
    value: Expr
    span: Span | None = _NO_SPAN


@dataclass(frozen=True)
class Allocate:
    """Behaviour Allocate: a named buffer at a memory level with a dtype and a shape."""

    name: str
    level: str  # shared | register
    dtype: str  # f32 | f16 | bf16 | e4m3 | DTYPE (the spec's input dtype)
    shape: tuple[Expr, ...]
    options: Options = ()
    span: Span | None = _NO_SPAN


@dataclass(frozen=True)
class Copy:
    """Data movement between memory levels: `Copy dst <- src`."""

    dst: Union[Name, Indexed]
    src: Union[Name, Indexed]
    options: Options = ()
    span: Span | None = _NO_SPAN


@dataclass(frozen=True)
class Compute:
    """`Compute dst = expr` or `Compute dst += expr` on register (or shared) buffers."""

    dst: str
    op: str  # "=" or "+="
    value: Expr
    options: Options = ()
    span: Span | None = _NO_SPAN


@dataclass(frozen=True)
class Reshape:
    """Behaviour Reshape: re-lay a register tile for its next use (accumulator -> MMA operand)."""

    dst: str
    src: str
    options: Options = ()
    span: Span | None = _NO_SPAN


@dataclass(frozen=True)
class Loop:
    var: str
    start: Expr
    stop: Expr
    body: tuple["Stmt", ...]
    options: Options = ()
    span: Span | None = _NO_SPAN


@dataclass(frozen=True)
class Role:
    """Warp specialisation (sm_90): `Role producer|consumer with warpgroups=, regs= { ... }`.

    The roles of a kernel run side by side; the producer fills shared buffers (a ring of `stages=`
    copies each), the consumer takes each stage with `Wait` and hands it back with `Release`."""

    role: str  # producer | consumer
    body: tuple["Stmt", ...]
    options: Options = ()
    span: Span | None = _NO_SPAN


@dataclass(frozen=True)
class Wait:
    """`Wait sK, sV`: block until the next stage of each buffer has landed (its full barrier)."""

    buffers: tuple[str, ...]
    span: Span | None = _NO_SPAN


@dataclass(frozen=True)
class Release:
    """`Release sK`: the stage last waited for may be refilled (an arrival on its empty barrier)."""

    buffers: tuple[str, ...]
    span: Span | None = _NO_SPAN


Stmt = Union[Let, Allocate, Copy, Compute, Reshape, Loop, Role, Wait, Release, Comment]


# ---------------------------------------------------------------- top level
@dataclass(frozen=True)
class GridDim:
    name: str
    extent: Expr
    span: Span | None = _NO_SPAN


@dataclass(frozen=True)
class Kernel:
    name: str
    grid: tuple[GridDim, ...]
    body: tuple[Stmt, ...]
    span: Span | None = _NO_SPAN
    options: Options = ()  # `with tiles=persistent` (Hopper): how CTAs map to the grid's tiles


@dataclass(frozen=True)
class ProgramDecl:
    name: str
    span: Span | None = _NO_SPAN


@dataclass(frozen=True)
class OpDecl:
    op: str
    span: Span | None = _NO_SPAN


@dataclass(frozen=True)
class TargetsDecl:
    targets: tuple[str, ...]
    span: Span | None = _NO_SPAN


@dataclass(frozen=True)
class Param:
    """`NAME = expr`: a tile size or other tuning knob; the expression may use spec constants (D, GROUP, QLEN)."""

    name: str
    value: Expr
    span: Span | None = _NO_SPAN


@dataclass(frozen=True)
class ParamsBlock:
    """`params { ... }`, or `params when D = 256 { ... }` / `params when D = 64 and CAUSAL = 0 { ... }`:
    overrides that apply when every named spec constant has its value."""

    items: tuple[Union[Param, Comment], ...]
    guard: tuple[tuple[str, int], ...] | None = None  # (constant, value) conditions, all of which must hold
    span: Span | None = _NO_SPAN

    def applies(self, constants: dict[str, int | float]) -> bool:
        return self.guard is None or all(constants.get(name) == value for name, value in self.guard)


TopItem = Union[ProgramDecl, OpDecl, TargetsDecl, ParamsBlock, Kernel, Comment]


@dataclass(frozen=True)
class Program:
    """A TL file. Sketch form: no params block and no `with` options; program form: both."""

    items: tuple[TopItem, ...]

    def _first(self, kind):
        return next((i for i in self.items if isinstance(i, kind)), None)

    @property
    def name(self) -> str | None:
        d = self._first(ProgramDecl)
        return d.name if d else None

    @property
    def op(self) -> str | None:
        d = self._first(OpDecl)
        return d.op if d else None

    @property
    def targets(self) -> tuple[str, ...]:
        d = self._first(TargetsDecl)
        return d.targets if d else ()

    @property
    def params_blocks(self) -> tuple[ParamsBlock, ...]:
        return tuple(i for i in self.items if isinstance(i, ParamsBlock))

    def param_exprs(self, constants: dict[str, int | float]) -> dict[str, Param]:
        """The params in force for these spec constants: the plain block, then each matching `when` block."""
        out: dict[str, Param] = {}
        for block in self.params_blocks:
            if block.applies(constants):
                out.update({p.name: p for p in block.items if isinstance(p, Param)})
        return out

    @property
    def kernels(self) -> tuple[Kernel, ...]:
        return tuple(i for i in self.items if isinstance(i, Kernel))

    @property
    def is_sketch(self) -> bool:
        return self._first(ParamsBlock) is None


def walk(stmts: tuple[Stmt, ...]):
    """Every statement, depth first, loops (and roles) before their bodies."""
    for s in stmts:
        yield s
        if isinstance(s, (Loop, Role)):
            yield from walk(s.body)


def walk_expr(e):
    """Every sub-expression of e, e included."""
    yield e
    if isinstance(e, BinOp):
        yield from walk_expr(e.left)
        yield from walk_expr(e.right)
    elif isinstance(e, (Neg, Transpose)):
        yield from walk_expr(e.operand)
    elif isinstance(e, Call):
        for a in e.args:
            yield from walk_expr(a)
        for _, v in e.kwargs:
            yield from walk_expr(v)
    elif isinstance(e, Indexed):
        for i in e.indices:
            if isinstance(i, Slice):
                yield from walk_expr(i.lo)
                yield from walk_expr(i.hi)
            else:
                yield from walk_expr(i)
