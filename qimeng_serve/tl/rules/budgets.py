"""Rules that need the params' values (program form only): tiles (divisibility by the warps and
the MMA shape), smem (shared-memory budget), registers (per-thread estimate), pipeline (stages).

The register estimate (documented in docs/tl.md §7 and in the final report):
    regs/thread = ceil(sum of register-buffer bytes / 4 / (WARPS * 32)) + REG_OVERHEAD
with one refinement that mirrors what the lowering does: a Reshape destination shares the
registers of its source (the f32 -> DTYPE conversion runs fragment by fragment and the source is
dead afterwards), so the pair counts max(src, dst). A register buffer is held whole: a program that
wants an operand streamed from shared memory says so by passing the shared buffer to gemm.
"""

from __future__ import annotations

import math
from typing import Iterator

from qimeng_serve.tl import ast
from qimeng_serve.tl.printer import print_expr
from qimeng_serve.tl.rules.context import (
    DTYPE_BYTES, RUNTIME_SCALARS, Context, Diagnostic, KernelInfo, Shapes, diag, line_of,
    names_in, parse_mma,
)
from qimeng_serve.tl.rules.legality import staged_stores
from qimeng_serve.tl.rules.names_shapes import symbolic_shape

REG_OVERHEAD = 48  # addresses, loop counters, predicates, softmax temporaries: ptxas needs ~40-60
KIB = 1024


def _kib(n: int) -> str:
    return f"{n / KIB:.1f} KiB"


# ---------------------------------------------------------------- tiles
def rule_tiles(ctx: Context) -> Iterator[Diagnostic]:
    if ctx.sketch:
        return
    v = ctx.values
    if not all(isinstance(v.get(n), int) for n in ("BLOCK_M", "BLOCK_N", "WARPS")):
        return  # form / names rules report missing or non-static params
    yield from _warps(ctx)
    yield from _block_m(ctx)
    yield from _split_kv(ctx)
    for k in ctx.kernels:
        for f, g in k.gemms():
            yield from _mma_divides(ctx, k, f.stmt, g)


def _param_node(ctx: Context, name: str):
    return ctx.params.get(name)


def _warps(ctx: Context) -> Iterator[Diagnostic]:
    w = ctx.values["WARPS"]
    # warp-specialised kernels (Roles) count whole consumer warpgroups: 4, 8, 12 warps
    specialised = any(k.statements(ast.Role) for k in ctx.kernels)
    if specialised and w >= 4 and w % 4 == 0 and w * 32 <= ctx.target.max_threads_per_block:
        return
    if w < 1 or w & (w - 1) or w * 32 > ctx.target.max_threads_per_block:
        yield diag("tiles", _param_node(ctx, "WARPS"), f"WARPS = {w}: use a power of two with "
                   f"WARPS * 32 <= {ctx.target.max_threads_per_block} threads", "use WARPS = 4 (or 8)")


def _block_m(ctx: Context) -> Iterator[Diagnostic]:
    """Prefill: the warps split the query rows, 16 per MMA row slice. Decode (few packed query rows,
    e.g. BLOCK_M = 16): the warps may split the KV columns instead, 8 per MMA column slice."""
    bm, bn, w = (ctx.values[n] for n in ("BLOCK_M", "BLOCK_N", "WARPS"))
    node = _param_node(ctx, "BLOCK_M")
    if bm % 16:
        yield diag("tiles", node, f"BLOCK_M = {bm} is not a multiple of 16, the rows of an MMA tile",
                   "round BLOCK_M up to a multiple of 16 (e.g. `cdiv(..., 16) * 16`; padding rows read as zero)")
        return
    if bm % (16 * w) == 0 or (ctx.spec.op == "paged_decode" and bn % (8 * w) == 0):
        return
    if ctx.spec.op == "paged_decode":
        yield diag("tiles", node, f"BLOCK_M = {bm}, BLOCK_N = {bn}, WARPS = {w}: the warps can split neither the "
                   f"rows (BLOCK_M % (16 * WARPS) != 0) nor the KV columns (BLOCK_N % (8 * WARPS) != 0)",
                   f"make BLOCK_N a multiple of {8 * w}, or BLOCK_M a multiple of {16 * w}")
        return
    good = [x for x in (16 * w, 32 * w, 64 * w, 128 * w) if x <= 256] or [16 * w]
    yield diag("tiles", node, f"BLOCK_M = {bm} is not a multiple of 16 * WARPS = {16 * w}: each of the {w} warps "
               "owns 16-row MMA slices of the query tile",
               f"use BLOCK_M = {' or '.join(map(str, good))}, or change WARPS so that 16 * WARPS divides BLOCK_M")


def _split_kv(ctx: Context) -> Iterator[Diagnostic]:
    split, bn = ctx.values.get("SPLIT_KV"), ctx.values["BLOCK_N"]
    if isinstance(split, int) and split % bn:
        yield diag("tiles", _param_node(ctx, "SPLIT_KV"), f"SPLIT_KV = {split} is not a multiple of BLOCK_N = {bn}: "
                   "a KV split must hold whole KV tiles", f"use SPLIT_KV = {max(1, split // bn) * bn}")


def _mma_divides(ctx: Context, k: KernelInfo, s: ast.Compute, g: ast.Call) -> Iterator[Diagnostic]:
    """N and K of every gemm divide by the MMA's n and k (M is the BLOCK_M rule's, except for GMMA's m64)."""
    mma_text = ast.option(s.options, "mma")
    mma = parse_mma(mma_text)
    sh = Shapes(ctx, k)
    a, b = sh.of(g.args[0]), sh.of(g.args[1]) if len(g.args) == 2 else None
    if mma is None or not a or not b or len(a) != 2 or len(b) != 2:
        return
    sym_a, sym_b = symbolic_shape(k, g.args[0]) or ["M", "K"], symbolic_shape(k, g.args[1]) or ["K", "N"]
    checks = [("inner K", a[1], mma[2], sym_a[1]), ("columns N", b[1], mma[1], sym_b[1])]
    if mma[0] != 16:
        checks.insert(0, ("rows M", a[0], mma[0], sym_a[0]))
    for what, dim, unit, sym in checks:
        if isinstance(dim, int) and dim % unit:
            yield diag("tiles", s, f"gemm {what} = {sym} = {dim} is not a multiple of {unit}, the MMA's "
                       f"{what.split()[-1].lower()} (mma={mma_text})",
                       f"make {sym} a multiple of {unit} (BLOCK_N and D must divide by the MMA's n and k)")


# ---------------------------------------------------------------- shared memory
def _bytes(ctx: Context, k: KernelInfo, a: ast.Allocate) -> int | None:
    dims = ctx.shape(a, k)
    if not all(isinstance(d, int) for d in dims):
        return None
    return math.prod(dims) * DTYPE_BYTES.get(ctx.dtype(a.dtype), 4)


def _stages(ctx: Context, a: ast.Allocate) -> int:
    v = ast.option(a.options, "stages")
    n = int(v) if v and v.isdigit() else ctx.values.get(v, 1) if v else 1
    return n if isinstance(n, int) and n >= 1 else 1


def _runtime_shape(ctx: Context, k: KernelInfo, a: ast.Allocate) -> bool:
    """Does the shape use a runtime value (rather than an undefined name)?"""
    used = set().union(*(names_in(d) for d in a.shape))
    return any(n in k.lets or n in k.grid or n in k.loop_vars or n in RUNTIME_SCALARS for n in used)


def rule_smem(ctx: Context) -> Iterator[Diagnostic]:
    if ctx.sketch:
        return
    for k in ctx.kernels:
        yield from _smem_kernel(ctx, k)


def _smem_kernel(ctx: Context, k: KernelInfo) -> Iterator[Diagnostic]:
    items = []
    for f in k.statements(ast.Allocate):
        a = f.stmt
        if a.level != "shared":
            continue
        size = _bytes(ctx, k, a)
        if size is None:
            if not _runtime_shape(ctx, k, a):
                continue  # undefined names in the shape: the names rule reports them
            yield diag("smem", a, f"shared buffer {a.name} has a shape that is not static: "
                       f"[{', '.join(str(d) for d in ctx.shape(a, k))}]",
                       "size shared buffers with params and spec constants only")
            continue
        items.append((size * _stages(ctx, a), a))
    staged = staged_stores(ctx, k)  # O's tile for a TMA store from registers (`via=tma` on its Copy)
    total, limit = sum(n for n, _ in items) + sum(n for _, n in staged), ctx.target.smem_optin_max
    if total <= limit:
        return
    items.sort(key=lambda x: -x[0])
    parts = ", ".join(f"{a.name} {n} B" + (f" ({_stages(ctx, a)} stages x {n // _stages(ctx, a)} B)"
                                            if _stages(ctx, a) > 1 else "") for n, a in items)
    parts += "".join(f", {print_expr(s.dst)}'s store tile {n} B (via=tma)" for s, n in staged)
    yield diag("smem", items[0][1] if items else staged[0][0],
               f"kernel {k.kernel.name} uses {total} bytes ({_kib(total)}) of shared memory, over the "
               f"{limit} bytes ({_kib(limit)}) opt-in maximum of {ctx.target.arch}: {parts}",
               f"shrink the largest buffers ({', '.join(a.name for _, a in items[:2])}): lower BLOCK_N / BLOCK_M "
               f"or STAGES for D={ctx.consts['D']} (e.g. in `params when D = {ctx.consts['D']}`)")


# ---------------------------------------------------------------- registers
def rule_registers(ctx: Context) -> Iterator[Diagnostic]:
    if ctx.sketch or not isinstance(ctx.values.get("WARPS"), int):
        return
    for k in ctx.kernels:
        yield from _registers_kernel(ctx, k)


def register_estimate(ctx: Context, k: KernelInfo) -> tuple[int, list[tuple[str, int, str]]]:
    """(registers per thread, [(buffer, registers, note)]) for one kernel."""
    threads = ctx.values["WARPS"] * 32
    sizes: dict[str, tuple[int, str]] = {}
    for f in k.statements(ast.Allocate):
        a = f.stmt
        size = _bytes(ctx, k, a) if a.level == "register" else None
        if size is not None:
            sizes[a.name] = (size, "")
    for f in k.statements(ast.Reshape):  # the destination reuses the source's registers
        r = f.stmt
        if r.src in sizes and r.dst in sizes:
            big = max(sizes[r.src][0], sizes[r.dst][0])
            sizes[r.src] = (big, f"shared with {r.dst}")
            sizes[r.dst] = (0, f"reuses {r.src}'s registers")
    parts = [(n, math.ceil(b / 4 / threads), note) for n, (b, note) in sizes.items()]
    return math.ceil(sum(b for b, _ in sizes.values()) / 4 / threads) + REG_OVERHEAD, parts


def _registers_kernel(ctx: Context, k: KernelInfo) -> Iterator[Diagnostic]:
    total, parts = register_estimate(ctx, k)
    limit = ctx.target.max_regs_per_thread
    if total <= limit:
        return
    parts.sort(key=lambda p: -p[1])
    listed = ", ".join(f"{n} {r}" + (f" ({note})" if note else "") for n, r, note in parts if r)
    biggest = k.buffers[parts[0][0]]
    yield diag("registers", biggest,
               f"kernel {k.kernel.name}: estimated {total} registers per thread > {limit} on {ctx.target.arch} "
               f"({listed}, + {REG_OVERHEAD} overhead; WARPS = {ctx.values['WARPS']}): the compiler would spill",
               f"reduce BLOCK_M (now {ctx.values['BLOCK_M']}), raise WARPS to spread the tiles over more threads, "
               f"or tile D so that {biggest.name} holds fewer columns")


# ---------------------------------------------------------------- pipeline
def rule_pipeline(ctx: Context) -> Iterator[Diagnostic]:
    """A shared buffer filled inside a `pipeline=N` loop needs N stages."""
    if ctx.sketch:
        return
    for k in ctx.kernels:
        for f in k.statements(ast.Loop):
            yield from _pipeline_loop(ctx, k, f.stmt)


def _pipeline_loop(ctx: Context, k: KernelInfo, loop: ast.Loop) -> Iterator[Diagnostic]:
    p = ast.option(loop.options, "pipeline")
    depth = int(p) if p and p.isdigit() else ctx.values.get(p) if p else None
    if not isinstance(depth, int) or depth <= 1:
        return
    for s in loop.body:
        if isinstance(s, ast.Copy) and isinstance(s.dst, ast.Name) and s.dst.id in k.buffers:
            buf = k.buffers[s.dst.id]
            if buf.level == "shared" and _stages(ctx, buf) < depth:
                yield diag("pipeline", s, f"{buf.name} is filled in a loop with pipeline={p} ({depth} stages) but "
                           f"has stages={_stages(ctx, buf)} ({line_of(buf)})",
                           f"add `stages={p}` to `Allocate {buf.name}`, or lower the loop's pipeline=")
