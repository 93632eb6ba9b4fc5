"""Rules: header, names (defined before use, known functions), allocate (destinations are
Allocated), level (what may live where), shape (gemm, views, vectors vs tiles)."""

from __future__ import annotations

import re
from typing import Iterator

from qimeng_serve.targets import TARGETS, normalize_arch
from qimeng_serve.tl import ast
from qimeng_serve.tl.printer import print_expr
from qimeng_serve.tl.rules.context import (
    FUNCTIONS, INPUT_TENSORS, RUNTIME_ARRAYS, RUNTIME_SCALARS, SPEC_CONSTANTS, Context, Diagnostic,
    KernelInfo, Shapes, diag, fmt_shape, gemm_of, line_of, operand_name, same, suggest,
)

_PARAM_LIKE = re.compile(r"[A-Z][A-Z0-9_]*")


# ---------------------------------------------------------------- header
def rule_header(ctx: Context) -> Iterator[Diagnostic]:
    p, spec, arch = ctx.program, ctx.spec, ctx.target.arch
    first = next((i for i in p.items if not isinstance(i, ast.Comment)), None)
    if p.op is None:
        yield diag("header", first, "the program declares no op",
                   f"add `op {spec.op}` after the `program` line")
    elif p.op != spec.op:
        decl = next(i for i in p.items if isinstance(i, ast.OpDecl))
        yield diag("header", decl, f"the program is for op {p.op} but the spec asks for {spec.op}",
                   f"check it against a {p.op} spec, or write a program with `op {spec.op}`")
    declared = tuple(normalize_arch(t) for t in p.targets)
    for t in declared:
        if t not in TARGETS:
            decl = next(i for i in p.items if isinstance(i, ast.TargetsDecl))
            yield diag("header", decl, f"`targets` names {t}, which has no profile",
                       f"use names from {', '.join(TARGETS)}")
    if declared and arch not in declared:
        decl = next(i for i in p.items if isinstance(i, ast.TargetsDecl))
        yield diag("header", decl,
                   f"{arch} is not among the targets this program declares ({', '.join(p.targets)})",
                   f"check it with --arch {declared[0]}, or adapt the program to {arch} and add it to `targets`")
    if not p.kernels:
        yield diag("header", first, "the program has no kernel",
                   "add `kernel attn grid (...) { ... }` (docs/tl.md §8)")


# ---------------------------------------------------------------- names + allocate
class _Scope:
    """Names in force while walking one kernel in program order."""

    def __init__(self, ctx: Context, k: KernelInfo) -> None:
        self.ctx, self.k = ctx, k
        self.reported: set[str] = set()  # report each bad name once per kernel

    def known(self, defined: set[str]) -> set[str]:
        return defined | set(FUNCTIONS)

    def later_definition(self, name: str):
        for f in self.k.flat:
            s = f.stmt
            if (isinstance(s, (ast.Let, ast.Allocate)) and s.name == name) or (
                    isinstance(s, ast.Loop) and s.var == name):
                return s
        return None


def base_names(ctx: Context) -> set[str]:
    """Names every kernel may use: spec constants, params, runtime values and the op's tensors."""
    return set(SPEC_CONSTANTS) | ctx.param_names() | set(RUNTIME_SCALARS) | set(RUNTIME_ARRAYS) | set(ctx.globals)


def rule_names(ctx: Context) -> Iterator[Diagnostic]:
    yield from _param_names(ctx)
    for k in ctx.kernels:
        scope = _Scope(ctx, k)
        defined = base_names(ctx)
        for g in k.kernel.grid:
            yield from _expr(scope, g.extent, defined)
            defined.add(g.name)
        yield from _block(scope, k.kernel.body, defined)


def _param_names(ctx: Context) -> Iterator[Diagnostic]:
    allowed = set(SPEC_CONSTANTS) | ctx.param_names()
    for p in ctx.params.values():
        for n in ast.walk_expr(p.value):
            if isinstance(n, ast.Name) and n.id not in allowed:
                yield diag("names", n, f"param {p.name} uses `{n.id}`, which is neither a spec constant nor a param"
                           + suggest(n.id, allowed),
                           "param values are expressions over spec constants (D, GROUP, QLEN, ...) and other params")


def _block(scope: _Scope, stmts, defined: set[str]) -> Iterator[Diagnostic]:
    for s in stmts:
        if isinstance(s, ast.Let):
            yield from _expr(scope, s.value, defined)
            yield from _reserved(scope, s, s.name, "let")
            defined.add(s.name)
        elif isinstance(s, ast.Allocate):
            for d in s.shape:
                yield from _expr(scope, d, defined)
            yield from _reserved(scope, s, s.name, "Allocate")
            defined.add(s.name)
        elif isinstance(s, ast.Copy):
            yield from _copy(scope, s, defined)
        elif isinstance(s, ast.Compute):
            yield from _expr(scope, s.value, defined)
            yield from _destination(scope, s, s.dst, defined)
        elif isinstance(s, ast.Reshape):
            yield from _expr(scope, ast.Name(s.src, s.span), defined)
            yield from _destination(scope, s, s.dst, defined)
        elif isinstance(s, ast.Loop):
            yield from _expr(scope, s.start, defined)
            yield from _expr(scope, s.stop, defined)
            yield from _block(scope, s.body, defined | {s.var})
        elif isinstance(s, ast.Role):  # a role's own names stay inside it
            yield from _block(scope, s.body, set(defined))
        elif isinstance(s, (ast.Wait, ast.Release)):
            for name in s.buffers:
                yield from _name(scope, s, name, defined)


def _reserved(scope: _Scope, stmt, name: str, what: str) -> Iterator[Diagnostic]:
    ctx = scope.ctx
    if name in ctx.globals:
        yield diag("names", stmt, f"{what} {name}: {name} is a global tensor of {ctx.spec.op}; it exists already",
                   f"never Allocate global tensors: Copy a view of {name} into a buffer with another name "
                   f"(e.g. s{name})")
    elif name in base_names(ctx):
        yield diag("names", stmt, f"{what} {name} redefines a spec constant, param or runtime name",
                   f"pick another name than {name}")


def _copy(scope: _Scope, s: ast.Copy, defined: set[str]) -> Iterator[Diagnostic]:
    yield from _expr(scope, s.src, defined)
    if isinstance(s.dst, ast.Indexed):
        yield from _expr(scope, s.dst, defined)
        return
    if s.dst.id in scope.ctx.globals:
        return
    yield from _destination(scope, s, s.dst.id, defined)


def _destination(scope: _Scope, stmt, name: str, defined: set[str]) -> Iterator[Diagnostic]:
    """Every Compute/Copy/Reshape destination must be a buffer Allocated before it."""
    k = scope.k
    if name in defined and name in k.buffers:
        return
    if name in scope.reported:
        return
    scope.reported.add(name)
    verb = type(stmt).__name__
    if name in k.buffers:
        later = k.buffers[name]
        yield diag("allocate", stmt, f"{verb} writes {name} before its Allocate on {line_of(later)}",
                   f"move `Allocate {name} ...` above {line_of(stmt)}")
    elif name in defined:
        yield diag("allocate", stmt, f"{verb} writes {name}, which is a scalar (let, loop variable or runtime "
                   "value), not a buffer", f"Allocate a buffer for the result, or use `let {name} = ...` for scalars")
    else:
        yield diag("allocate", stmt, f"{verb} writes {name}, which is not Allocated",
                   f"add `{suggest_allocate(scope.ctx, k, stmt, name)}` before {line_of(stmt)}")
    defined.add(name)  # no cascade of 'unknown name' for the same buffer


def suggest_allocate(ctx: Context, k: KernelInfo, stmt, name: str) -> str:
    """An Allocate that would make `stmt` legal, with the shape written in the program's own terms."""
    src = None
    if isinstance(stmt, ast.Reshape):
        src = k.buffers.get(stmt.src)
        if src is not None:
            shape = ", ".join(print_expr(d) for d in src.shape)
            return f"Allocate {name} : register DTYPE [{shape}] with layout=mma_a"
    if isinstance(stmt, ast.Compute):
        shape = symbolic_shape(k, stmt.value)
        if shape:
            f32 = gemm_of(stmt) is not None or len(shape) == 1
            opts = " with layout=mma_c" if gemm_of(stmt) is not None else ""
            return f"Allocate {name} : register {'f32' if f32 else 'DTYPE'} [{', '.join(shape)}]{opts}"
    return f"Allocate {name} : register f32 [BLOCK_M, BLOCK_N] with layout=mma_c"


def symbolic_shape(k: KernelInfo, e) -> list[str] | None:
    """The shape of e written with the Allocate expressions of the buffers it reads (BLOCK_M, D...)."""
    if isinstance(e, ast.Call) and e.func == "gemm" and len(e.args) == 2:
        a, b = (symbolic_shape(k, x) for x in e.args)
        return [a[0], b[1]] if a and b and len(a) == 2 and len(b) == 2 else None
    if isinstance(e, ast.Transpose):
        s = symbolic_shape(k, e.operand)
        return s[::-1] if s and len(s) == 2 else None
    if isinstance(e, ast.Call) and e.func in ("row_max", "row_sum"):
        s = symbolic_shape(k, e.args[0]) if e.args else None
        return s[:1] if s else None
    if isinstance(e, ast.Name) and e.id in k.buffers:
        return [print_expr(d) for d in k.buffers[e.id].shape]
    for sub in ast.walk_expr(e):
        if sub is not e and isinstance(sub, (ast.Name, ast.Call)):
            s = symbolic_shape(k, sub)
            if s:
                return s
    return None


def _expr(scope: _Scope, e, defined: set[str]) -> Iterator[Diagnostic]:
    for n in ast.walk_expr(e):
        if isinstance(n, ast.Call):
            yield from _call(scope, n)
        elif isinstance(n, ast.Name):
            yield from _name(scope, n, n.id, defined)
        elif isinstance(n, ast.Indexed):
            yield from _name(scope, n, n.base, defined)


def _name(scope: _Scope, node, name: str, defined: set[str]) -> Iterator[Diagnostic]:
    ctx = scope.ctx
    if name in defined or name in scope.reported:
        return
    if ctx.sketch and _PARAM_LIKE.fullmatch(name):
        return  # a sketch leaves params (BLOCK_M, ...) to the program form
    scope.reported.add(name)
    later = scope.later_definition(name)
    if later is not None:
        yield diag("names", node, f"`{name}` is used before it is defined ({line_of(later)})",
                   f"move the definition of {name} above {line_of(node)}")
    elif _PARAM_LIKE.fullmatch(name) and not ctx.program.params_blocks:
        return  # a sketch checked as a program: the form rule asks for the params block
    elif _PARAM_LIKE.fullmatch(name):
        yield diag("names", node, f"`{name}` is not defined: it is not a param in force for D={ctx.consts['D']}"
                   + suggest(name, base_names(ctx)),
                   f"add `{name} = ...` to the plain `params {{ ... }}` block (params in force: "
                   f"{', '.join(sorted(ctx.params)) or 'none'})")
    else:
        known = defined | set(scope.k.buffers) | set(scope.k.lets)
        yield diag("names", node, f"unknown name `{name}`" + suggest(name, known),
                   f"define it with `let {name} = ...` or `Allocate {name} ...` before {line_of(node)}, or use a "
                   "name from docs/tl.md §3 (spec constants, runtime values, grid and loop variables)")


def _call(scope: _Scope, c: ast.Call) -> Iterator[Diagnostic]:
    if c.func not in FUNCTIONS:
        if c.func in scope.reported:
            return
        scope.reported.add(c.func)
        yield diag("names", c, f"unknown function `{c.func}`" + suggest(c.func, FUNCTIONS),
                   f"TL has {', '.join(FUNCTIONS)}; see docs/tl.md §6")
        return
    arity, kwargs = FUNCTIONS[c.func]
    if len(c.args) != arity:
        yield diag("names", c, f"{c.func} takes {arity} positional argument(s), got {len(c.args)}",
                   f"see the table of functions in docs/tl.md §6 for {c.func}")
    for key, value in c.kwargs:
        if key not in kwargs:
            yield diag("names", value, f"{c.func} has no keyword `{key}`"
                       + (f"; it takes {', '.join(kwargs)}" if kwargs else ""),
                       f"remove `{key}=`" + suggest(key, kwargs))


# ---------------------------------------------------------------- levels
def rule_levels(ctx: Context) -> Iterator[Diagnostic]:
    for k in ctx.kernels:
        for f in k.flat:
            s = f.stmt
            if isinstance(s, ast.Compute):
                yield from _compute_levels(ctx, k, s)
            elif isinstance(s, ast.Copy):
                yield from _copy_levels(ctx, k, s)


def _compute_levels(ctx: Context, k: KernelInfo, s: ast.Compute) -> Iterator[Diagnostic]:
    for n in ast.walk_expr(s.value):
        if isinstance(n, (ast.Indexed, ast.Name)):
            base = n.base if isinstance(n, ast.Indexed) else n.id
            if base in ctx.globals:
                yield diag("level", n, f"Compute reads the global tensor {base} directly",
                           "Copy the view into a shared or register buffer first, then compute on that buffer")
    calls = [c for c in ast.walk_expr(s.value) if isinstance(c, ast.Call) and c.func == "gemm"]
    if calls and gemm_of(s) is None:
        yield diag("level", s, f"gemm must be the whole right-hand side of its Compute: `{print_expr(s.value)}`",
                   f"write `Compute {s.dst} {s.op} gemm(...)` on its own line and combine the result in a "
                   "following Compute")
    g = gemm_of(s)
    if g is None or s.dst not in k.buffers:
        return
    acc = k.buffers[s.dst]
    if acc.level != "register" or ctx.dtype(acc.dtype) != "f32":
        yield diag("level", s, f"gemm accumulates in f32 registers, but {s.dst} is {acc.level} {acc.dtype}",
                   f"Allocate {s.dst} : register f32 [...] with layout=mma_c")
    for arg in g.args:
        name, _ = operand_name(arg)
        if name in k.buffers:
            continue
        if name in ctx.globals or name is None or ctx.is_scalar(name, k):  # unknown names: rule_names
            what = "a global tensor" if name in ctx.globals else "not a buffer"
            yield diag("level", arg, f"gemm operand `{print_expr(arg)}` is {what}",
                       "gemm operands are register or shared buffers: Copy the tile into shared first")


_PAIRS_OK = {("global", "shared"), ("global", "register"), ("shared", "register"), ("register", "shared"),
             ("register", "global"), ("shared", "global")}


def _copy_levels(ctx: Context, k: KernelInfo, s: ast.Copy) -> Iterator[Diagnostic]:
    src, dst = ctx.level(s.src, k), ctx.level(s.dst, k)
    dst_base = s.dst.id if isinstance(s.dst, ast.Name) else s.dst.base
    if dst == "global" and dst_base in INPUT_TENSORS:
        yield diag("level", s, f"Copy writes the input tensor {dst_base}",
                   "write results only into the op's outputs (O; O_part and LSE for paged_decode)")
    if src and dst and (src, dst) not in _PAIRS_OK:
        fix = ("use `Compute dst = src` (or `Reshape dst <- src` for an accumulator) between register tiles"
               if src == dst == "register" else "a Copy moves data between two different memory levels")
        yield diag("level", s, f"Copy from {src} to {dst} is not a data movement TL has", fix)


# ---------------------------------------------------------------- shapes
def rule_shapes(ctx: Context) -> Iterator[Diagnostic]:
    for k in ctx.kernels:
        for f in k.flat:
            sh = Shapes(ctx, k)
            s = f.stmt
            if isinstance(s, ast.Compute):
                yield from _compute_shape(ctx, k, sh, s)
            elif isinstance(s, ast.Copy):
                yield from _copy_shape(ctx, k, sh, s)
            elif isinstance(s, ast.Reshape):
                yield from _reshape_shape(ctx, k, s)
            for msg, fix in sh.problems:
                yield diag("shape", s, msg, fix)


def _compute_shape(ctx: Context, k: KernelInfo, sh: Shapes, s: ast.Compute) -> Iterator[Diagnostic]:
    value = sh.of(s.value)
    if s.dst not in k.buffers or value is None:
        return
    dst = ctx.shape(k.buffers[s.dst], k)
    if len(value) > len(dst):
        kind = "tile" if len(value) == 2 else "vector"
        yield diag("shape", s, f"{s.dst} is {fmt_shape(dst)} but the value is a {kind} {fmt_shape(value)}",
                   f"reduce it first (row_max / row_sum give a [rows] vector) or Allocate {s.dst} as "
                   f"{fmt_shape(value)}")
    elif len(value) == len(dst) and any(same(a, b) is False for a, b in zip(value, dst)):
        yield diag("shape", s, f"{s.dst} is {fmt_shape(dst)} but `{print_expr(s.value)}` is {fmt_shape(value)}",
                   f"make the shapes agree: Allocate {s.dst} as {fmt_shape(value)} or fix the operands")
    elif len(value) == 1 and len(dst) == 2 and same(value[0], dst[0]) is False:
        yield diag("shape", s, f"vector {fmt_shape(value)} does not match the rows of {s.dst} {fmt_shape(dst)}",
                   "a vector broadcasts along a tile's columns: its length must equal the tile's rows")


def _copy_shape(ctx: Context, k: KernelInfo, sh: Shapes, s: ast.Copy) -> Iterator[Diagnostic]:
    for ref in (s.src, s.dst):
        if isinstance(ref, ast.Indexed) and ref.base in ctx.globals and len(ref.indices) != ctx.globals[ref.base]:
            want = ctx.globals[ref.base]
            layout = "[sequence, head, position]" if want == 3 else "[split, sequence, head, position]"
            yield diag("shape", ref, f"{ref.base} takes {want} indices {layout}, got {len(ref.indices)}",
                       f"write {ref.base}[{', '.join(['...'] * want)}] with ranges `lo : hi` selecting rows")
    a, b = sh.of(s.src), sh.of(s.dst)
    if a is None or b is None or not a or not b:
        return
    view = s.src if isinstance(s.src, ast.Indexed) else s.dst if isinstance(s.dst, ast.Indexed) else None
    if view is not None and view.base in ctx.globals:
        yield from _view_fits(s, view, a if view is s.src else b, b if view is s.src else a)
    elif len(a) != len(b) or any(same(x, y) is False for x, y in zip(a, b)):
        yield diag("shape", s, f"Copy between buffers of different shapes: {fmt_shape(b)} <- {fmt_shape(a)}",
                   "Allocate both buffers with the same shape")


def _view_fits(s: ast.Copy, view: ast.Indexed, vshape, bshape) -> Iterator[Diagnostic]:
    if len(vshape) != len(bshape):
        yield diag("shape", s, f"the view {print_expr(view)} is {fmt_shape(vshape)} but the buffer is "
                   f"{fmt_shape(bshape)}", "a view of Q/K/V/O/O_part is [rows, D]; LSE is [rows]")
        return
    if isinstance(vshape[0], int) and isinstance(bshape[0], int) and vshape[0] > bshape[0]:
        yield diag("shape", s, f"the view {print_expr(view)} has {vshape[0]} rows but the buffer holds {bshape[0]}",
                   "select at most as many rows as the buffer has, or Allocate it with more rows")
    if len(vshape) == 2 and same(vshape[1], bshape[1]) is False:
        yield diag("shape", s, f"the view {print_expr(view)} has rows of D = {vshape[1]} values but the buffer "
                   f"has {bshape[1]} columns", "Allocate the buffer as [rows, D]")


def _reshape_shape(ctx: Context, k: KernelInfo, s: ast.Reshape) -> Iterator[Diagnostic]:
    if s.src in k.buffers and s.dst in k.buffers:
        a, b = ctx.shape(k.buffers[s.src], k), ctx.shape(k.buffers[s.dst], k)
        if len(a) != len(b) or any(same(x, y) is False for x, y in zip(a, b)):
            yield diag("shape", s, f"Reshape {s.dst} {fmt_shape(b)} <- {s.src} {fmt_shape(a)}: shapes differ",
                       f"Allocate {s.dst} with the shape of {s.src}")
