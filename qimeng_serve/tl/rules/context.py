"""What every checker rule sees: the program, its target and spec, the params in force,
per-kernel tables, a static evaluator and a shape inferencer.

Rules never raise: they yield Diagnostic objects, so one pass reports everything.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from typing import Iterator

from qimeng_serve.errors import Span
from qimeng_serve.spec import AttentionSpec
from qimeng_serve.targets import Target
from qimeng_serve.tl import ast
from qimeng_serve.tl.printer import print_expr

SPEC_CONSTANTS = ("D", "GROUP", "QLEN", "CAUSAL", "WINDOW", "SOFTCAP", "DTYPE")
RUNTIME_SCALARS = ("batch", "heads_q", "heads_kv", "max_seq_q", "max_seq_k", "softmax_scale", "LOG2E")
RUNTIME_ARRAYS = ("seqlen_q", "seqlen_k")  # per-sequence: always indexed, seqlen_k[b]
REQUIRED_PARAMS = ("BLOCK_M", "BLOCK_N", "WARPS")
PARAM_DEFAULTS = {"STAGES": 1}

# global tensor -> number of view indices; every op has Q K V O as [sequence, head, position]
_QKVO = {"Q": 3, "K": 3, "V": 3, "O": 3}
GLOBALS_BY_OP = {
    "dense_prefill": _QKVO,
    "paged_prefill": _QKVO,
    "paged_decode": {**_QKVO, "O_part": 4, "LSE": 4},
}
INPUT_TENSORS = ("Q", "K", "V")
VECTOR_TENSORS = ("LSE",)  # one f32 scalar per row
F32_TENSORS = ("O_part", "LSE")

# function -> (positional arity, allowed keyword arguments)
FUNCTIONS: dict[str, tuple[int, tuple[str, ...]]] = {
    "gemm": (2, ()), "row_max": (1, ()), "row_sum": (1, ()), "max": (2, ()), "min": (2, ()),
    "exp2": (1, ()), "log2": (1, ()), "finite": (1, ()), "nonzero": (1, ()), "softcap": (2, ()),
    "mask": (1, ("kv_len", "causal", "offset", "window")), "cdiv": (2, ()), "gcd": (2, ()), "select": (3, ()),
}
DTYPE_BYTES = {"f32": 4, "f16": 2, "bf16": 2, "e4m3": 1}

Dim = int | str  # an evaluated extent, or the printed expression when it is not static
Shape = tuple[Dim, ...]


@dataclass
class Diagnostic:
    """One finding: which rule, what is wrong, where, and exactly what to change."""

    rule: str
    message: str
    span: Span | None
    fix: str
    severity: str = "error"

    def render(self, source_name: str = "<tl>") -> str:
        where = f"{source_name}:{self.span}" if self.span else source_name
        text = f"{where}: {self.severity}[{self.rule}]: {self.message}"
        return text + (f"\n  fix: {self.fix}" if self.fix else "")


def diag(rule: str, node, message: str, fix: str, severity: str = "error") -> Diagnostic:
    span = node if isinstance(node, Span) or node is None else getattr(node, "span", None)
    return Diagnostic(rule, message, span, fix, severity)


def line_of(node) -> str:
    span = getattr(node, "span", None)
    return f"line {span.line}" if span else "?"


def suggest(name: str, known) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def fmt_shape(shape: Shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def parse_mma(value: str | None) -> tuple[int, int, int] | None:
    m = re.fullmatch(r"m(\d+)n(\d+)k(\d+)", value or "")
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def same(a: Dim, b: Dim) -> bool | None:
    """Equal, different, or unknown (one side not static, or two different unevaluated names)."""
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    if isinstance(a, str) and isinstance(b, str) and a == b:
        return True
    return None


def gemm_of(stmt) -> ast.Call | None:
    """The gemm call when a Compute's whole right-hand side is one."""
    if isinstance(stmt, ast.Compute) and isinstance(stmt.value, ast.Call) and stmt.value.func == "gemm":
        return stmt.value
    return None


def operand_name(e) -> tuple[str | None, bool]:
    """`x` or `x.T` -> (x, transposed)."""
    if isinstance(e, ast.Transpose):
        return (e.operand.id if isinstance(e.operand, ast.Name) else None), True
    return (e.id if isinstance(e, ast.Name) else None), False


def names_in(e) -> set[str]:
    return {x.id for x in ast.walk_expr(e) if isinstance(x, ast.Name)}


def calls_in(e, func: str) -> list[ast.Call]:
    return [x for x in ast.walk_expr(e) if isinstance(x, ast.Call) and x.func == func]


# ---------------------------------------------------------------- per-kernel tables
@dataclass
class Flat:
    """A statement with its position in program order and its enclosing loops (outermost first)."""

    index: int
    stmt: ast.Stmt
    loops: tuple[ast.Loop, ...]
    role: ast.Role | None = None  # the warp-specialised Role it runs in (sm_90), if any


def inside(f: Flat, loop: ast.Loop) -> bool:
    """Is statement f in the body of this very loop (identity, not structural equality)?"""
    return any(x is loop for x in f.loops)


@dataclass
class KernelInfo:
    kernel: ast.Kernel
    buffers: dict[str, ast.Allocate] = field(default_factory=dict)
    lets: dict[str, ast.Expr] = field(default_factory=dict)
    grid: dict[str, ast.Expr] = field(default_factory=dict)
    loop_vars: set[str] = field(default_factory=set)
    flat: list[Flat] = field(default_factory=list)

    @classmethod
    def build(cls, kernel: ast.Kernel) -> "KernelInfo":
        k = cls(kernel, grid={g.name: g.extent for g in kernel.grid})
        k._flatten(kernel.body, ())
        for f in k.flat:
            s = f.stmt
            if isinstance(s, ast.Allocate):
                k.buffers.setdefault(s.name, s)
            elif isinstance(s, ast.Let):
                k.lets[s.name] = s.value
            elif isinstance(s, ast.Loop):
                k.loop_vars.add(s.var)
        return k

    def _flatten(self, stmts, loops, role=None) -> None:
        for s in stmts:
            if isinstance(s, ast.Comment):
                continue
            self.flat.append(Flat(len(self.flat), s, loops, role))
            if isinstance(s, ast.Loop):
                self._flatten(s.body, loops + (s,), role)
            elif isinstance(s, ast.Role):  # a role is no loop: its body runs once per CTA
                self._flatten(s.body, loops, s)

    def statements(self, kind=None) -> Iterator[Flat]:
        return (f for f in self.flat if kind is None or isinstance(f.stmt, kind))

    def gemms(self) -> Iterator[tuple[Flat, ast.Call]]:
        for f in self.flat:
            g = gemm_of(f.stmt)
            if g is not None:
                yield f, g

    def writes_to(self, name: str) -> list[Flat]:
        out = []
        for f in self.flat:
            s = f.stmt
            dst = s.dst if isinstance(s, (ast.Compute, ast.Reshape)) else None
            if isinstance(s, ast.Copy):
                dst = s.dst.id if isinstance(s.dst, ast.Name) else s.dst.base
            if dst == name:
                out.append(f)
        return out


# ---------------------------------------------------------------- the context
class Context:
    def __init__(self, program: ast.Program, target: Target, spec: AttentionSpec, form: str) -> None:
        self.program, self.target, self.spec, self.form = program, target, spec, form
        self.consts = spec.constants()
        self.params: dict[str, ast.Param] = program.param_exprs(self.consts)
        self.globals = GLOBALS_BY_OP.get(spec.op, _QKVO)
        self.kernels = [KernelInfo.build(kn) for kn in program.kernels]
        self.values: dict[str, int | float] = {k: v for k, v in self.consts.items() if not isinstance(v, str)}
        self._eval_params()

    @property
    def sketch(self) -> bool:
        return self.form == "sketch"

    def _eval_params(self) -> None:
        """Params may refer to spec constants and to each other, in any order: iterate to a fixpoint."""
        pending = dict(self.params)
        while pending:
            done = {n: v for n, p in pending.items() if (v := self.eval(p.value)) is not None}
            if not done:
                break
            self.values.update(done)
            for n in done:
                del pending[n]
        for name, value in PARAM_DEFAULTS.items():
            self.values.setdefault(name, value)

    def param_names(self) -> set[str]:
        return set(self.params) | set(PARAM_DEFAULTS)

    def is_scalar(self, name: str, k: KernelInfo) -> bool:
        """A spec constant, param, runtime scalar, grid/let/loop name: an integer or float, not a buffer."""
        return (name in SPEC_CONSTANTS or name in self.values or name in RUNTIME_SCALARS or name in k.lets
                or name in k.grid or name in k.loop_vars)

    def dtype(self, name: str) -> str:
        return self.spec.dtype if name == "DTYPE" else name

    # ---- static evaluation: None whenever a runtime value is involved
    def eval(self, e, k: KernelInfo | None = None, _depth: int = 0):
        if _depth > 50:  # a let that refers to itself
            return None
        if isinstance(e, ast.Num):
            return e.value
        if isinstance(e, ast.Name):
            if e.id in self.values:
                return self.values[e.id]
            if k is not None and e.id in k.lets:
                return self.eval(k.lets[e.id], k, _depth + 1)
            return None
        if isinstance(e, ast.Neg):
            v = self.eval(e.operand, k, _depth + 1)
            return None if v is None else -v
        if isinstance(e, ast.BinOp):
            return _binop(e.op, self.eval(e.left, k, _depth + 1), self.eval(e.right, k, _depth + 1))
        if isinstance(e, ast.Call):
            return self._eval_call(e, k, _depth)
        return None

    def _eval_call(self, e: ast.Call, k, depth):
        args = [self.eval(a, k, depth + 1) for a in e.args]
        if any(a is None for a in args):
            return None
        if e.func == "cdiv" and len(args) == 2 and args[1]:
            return -(-args[0] // args[1])
        if e.func == "gcd" and len(args) == 2 and all(isinstance(a, int) for a in args):
            return math.gcd(*args)
        if e.func in ("max", "min") and len(args) == 2:
            return max(args) if e.func == "max" else min(args)
        if e.func == "select" and len(args) == 3:
            return args[1] if args[0] else args[2]
        return None

    def dim(self, e, k: KernelInfo | None = None) -> Dim:
        v = self.eval(e, k)
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        return v if isinstance(v, int) else print_expr(e)

    def shape(self, alloc: ast.Allocate, k: KernelInfo | None = None) -> Shape:
        return tuple(self.dim(d, k) for d in alloc.shape)

    def level(self, ref, k: KernelInfo) -> str | None:
        """Memory level of a Copy side: global, shared, register, or None when unknown."""
        base = ref.id if isinstance(ref, ast.Name) else ref.base
        if base in self.globals:
            return "global"
        return k.buffers[base].level if base in k.buffers else None


def _binop(op, a, b):
    if a is None or b is None:
        return None
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        return None
    integral = isinstance(a, int) and isinstance(b, int)
    if op == "/":
        return a // b if integral else a / b
    return a % b if integral else math.fmod(a, b)


# ---------------------------------------------------------------- shapes
class Shapes:
    """Infers the shape of tile expressions in one kernel: () scalar, (rows,) vector, (rows, cols) tile,
    None unknown. Mismatches met on the way are collected in `problems` as (message, fix)."""

    def __init__(self, ctx: Context, k: KernelInfo) -> None:
        self.ctx, self.k = ctx, k
        self.problems: list[tuple[str, str]] = []

    def of(self, e) -> Shape | None:
        if isinstance(e, ast.Num):
            return ()
        if isinstance(e, ast.Name):
            return self._name(e.id)
        if isinstance(e, ast.Indexed):
            return self.view(e)
        if isinstance(e, ast.Neg):
            return self.of(e.operand)
        if isinstance(e, ast.Transpose):
            s = self.of(e.operand)
            if s is not None and len(s) != 2:
                self.problems.append((f"`.T` needs a 2-D tile, {print_expr(e.operand)} is {fmt_shape(s)}",
                                      "transpose only tiles (K stored [BLOCK_N, D] is used as sK.T)"))
                return None
            return None if s is None else (s[1], s[0])
        if isinstance(e, ast.BinOp):
            return self.broadcast(self.of(e.left), self.of(e.right), e)
        if isinstance(e, ast.Call):
            return self._call(e)
        return None

    def _name(self, name: str) -> Shape | None:
        if name in self.k.buffers:
            return self.ctx.shape(self.k.buffers[name], self.k)
        return () if self.ctx.is_scalar(name, self.k) else None  # unknown names: the names rule says so

    def view(self, e: ast.Indexed) -> Shape | None:
        """A global view is rows x D (LSE: rows); its rows are the product of its range lengths."""
        if e.base in RUNTIME_ARRAYS:
            return ()
        if e.base not in self.ctx.globals:
            return None
        rows: Dim = 1
        for i in e.indices:
            if isinstance(i, ast.Slice):
                rows = _mul(rows, self.range_length(i))
        return (rows,) if e.base in VECTOR_TENSORS else (rows, self.ctx.dim(ast.Name("D")))

    def range_length(self, s: ast.Slice) -> Dim:
        """hi - lo, read off `lo : lo + n` symbolically when lo is a runtime value."""
        hi, lo = s.hi, s.lo
        if isinstance(hi, ast.BinOp) and hi.op == "+":
            if hi.left == lo:
                return self.ctx.dim(hi.right, self.k)
            if hi.right == lo:
                return self.ctx.dim(hi.left, self.k)
        return self.ctx.dim(ast.BinOp("-", hi, lo), self.k)

    def broadcast(self, a: Shape | None, b: Shape | None, node) -> Shape | None:
        if a is None or b is None:
            return None
        if not a or not b:
            return a or b
        if len(a) == len(b):
            if any(same(x, y) is False for x, y in zip(a, b)):
                self.problems.append((f"shapes {fmt_shape(a)} and {fmt_shape(b)} differ in `{print_expr(node)}`",
                                      "combine tiles of the same shape (or a tile with a vector of its rows)"))
            return a
        tile, vec = (a, b) if len(a) > len(b) else (b, a)
        if same(tile[0], vec[0]) is False:
            self.problems.append((
                f"vector {fmt_shape(vec)} does not match the rows of tile {fmt_shape(tile)} in `{print_expr(node)}`",
                "a vector [rows] broadcasts along a tile's columns: its length must equal the tile's rows"))
        return tile

    def _call(self, e: ast.Call) -> Shape | None:
        args = [self.of(a) for a in e.args]
        f = e.func
        if f == "gemm" and len(args) == 2:
            return self.gemm(e, args[0], args[1])
        if f in ("row_max", "row_sum") and args:
            if args[0] is not None and len(args[0]) != 2:
                self.problems.append((f"{f} reduces a 2-D tile, {print_expr(e.args[0])} is {fmt_shape(args[0])}",
                                      f"apply {f} to a [rows, cols] tile"))
                return None
            return None if args[0] is None else (args[0][0],)
        if f == "mask" and args:
            if args[0] is not None and len(args[0]) != 2:
                self.problems.append((f"mask needs a score tile, {print_expr(e.args[0])} is {fmt_shape(args[0])}",
                                      "mask the [BLOCK_M, BLOCK_N] score tile S"))
            return args[0]
        if f in ("cdiv", "gcd"):
            return ()
        if f == "select" and len(args) == 3:
            return self.broadcast(args[1], args[2], e)
        if f in ("max", "min") and len(args) == 2:
            return self.broadcast(args[0], args[1], e)
        return args[0] if args else None

    def gemm(self, e: ast.Call, a: Shape | None, b: Shape | None) -> Shape | None:
        if a is None or b is None:
            return None
        if len(a) != 2 or len(b) != 2:
            self.problems.append((f"gemm operands must be 2-D tiles: {print_expr(e.args[0])} is {fmt_shape(a)}, "
                                  f"{print_expr(e.args[1])} is {fmt_shape(b)}", "pass [M, K] and [K, N] tiles"))
            return None
        if same(a[1], b[0]) is False:
            self.problems.append(_gemm_mismatch(e, a, b))
        return (a[0], b[1])


def _gemm_mismatch(e: ast.Call, a: Shape, b: Shape) -> tuple[str, str]:
    sa, sb = print_expr(e.args[0]), print_expr(e.args[1])
    msg = (f"gemm({sa}, {sb}): inner dimensions differ: {sa} is {fmt_shape(a)} (K = {a[1]}) but {sb} is "
           f"{fmt_shape(b)} (K = {b[0]})")
    if same(a[1], b[1]) is True:
        name, transposed = operand_name(e.args[1])
        new = name if transposed else f"{name}.T"
        return msg, f"write gemm({sa}, {new}): a K tile stored [BLOCK_N, D] is used transposed"
    return msg, "make the first operand's columns equal the second operand's rows"


def _mul(a: Dim, b: Dim) -> Dim:
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    if a == 1:
        return b
    if b == 1:
        return a
    return f"{a} * {b}"
