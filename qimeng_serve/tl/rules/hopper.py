"""Hopper rules (sm_90): warp specialisation (`Role`, `Wait`, `Release`), TMA copies into staged
shared-memory rings, warpgroup MMA (GMMA) shapes, register reallocation between the roles, and the
shared-memory budget with every stage and barrier. docs/tl.md "Hopper" is the contract.

Rule ids: hopper (target legality), roles (structure and the barrier protocol), gmma, tma,
setmaxnreg (register reallocation), smem (stages, barriers and alignment).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from qimeng_serve.tl import ast
from qimeng_serve.tl.printer import print_expr
from qimeng_serve.tl.rules.budgets import register_estimate
from qimeng_serve.tl.rules.context import (
    DTYPE_BYTES,
    Context,
    Diagnostic,
    Flat,
    KernelInfo,
    Shapes,
    diag,
    line_of,
    names_in,
    operand_name,
    parse_mma,
)
from qimeng_serve.tl.rules.legality import GMMA_WORDS, copy_via, staged_stores

WARPGROUP_WARPS = 4
WARPGROUP_THREADS = 128
GMMA_M = 64  # rows of one warpgroup MMA
GMMA_N_MAX = 256
TMA_BOX_MAX = 256  # elements per box dimension
TMA_INNER_ALIGN = 16  # bytes: the box's inner extent
REG_MIN, REG_MAX, REG_STEP = 24, 256, 8  # setmaxnreg's range and granularity
BARRIER_BYTES = 8  # one mbarrier
SWIZZLE_ALIGN = 1024  # a 128-byte-swizzled tile starts on a 1024-byte boundary
ROLE_NAMES = ("producer", "consumer")
# intra-warpgroup overlap of the consumer (docs/tl.md §10); a param names one by its index (0 .. 3)
OVERLAPS = ("none", "softmax", "pinned", "gemms")
# what a consumer carries from one tile into the next (tiles=persistent): nothing, or the tile's last
# O += P V with its store, issued with the next tile's first S GEMM (docs/tl.md §10)
CARRIES = ("none", "pv")
# a consumer warpgroup whose rows all lie outside its tile's sequence (padding): its GEMMs run on
# the padding (compute), or it skips the tile and the producer arrives for it (skip; docs/tl.md §10)
IDLES = ("compute", "skip")
# when a consumer rescales O by the online softmax's alpha: every KV tile (eager), or only when a row of the
# warp raises its running max by more than a slack, the max held otherwise (lazy; docs/tl.md §10)
RESCALES = ("eager", "lazy")
# `kernel ... with split=`: the tail wave's tiles whole, in parts along the keys (tail), or every CTA an
# equal run of the walk's KV steps, a tile cut by two runs in parts (stream)
SPLIT_MODES = ("none", "tail", "stream")
TILE_MODES = ("grid", "persistent")  # `kernel ... with tiles=`: a CTA per grid tile, or one per SM walking them
ROLE_STMTS = (ast.Role, ast.Wait, ast.Release)


# ---------------------------------------------------------------- helpers
def switch_value(value: str | None, values: dict, on: str, off: str | None) -> str | None:
    """A schedule option written as a param (`overlap=OVERLAP`, `schedule=PINGPONG`, `tiles=PERSISTENT`)
    so `params when D = ...` can choose it: the param 1 means `on`, 0 means `off`."""
    if value is not None and isinstance(values.get(value), int):
        return on if values[value] else off
    return value


def overlap_value(value: str | None, values: dict) -> str | None:
    """`overlap=` on a consumer: a name, or a param whose value indexes OVERLAPS (0 none, 1 softmax,
    2 pinned, 3 gemms); an index past them comes back as its number, which the checker rejects."""
    if value is not None and isinstance(values.get(value), int):
        i = values[value]
        return OVERLAPS[i] if 0 <= i < len(OVERLAPS) else str(i)
    return value


def idle_value(value: str | None, values: dict) -> str | None:
    """`idle=` on a consumer: `skip` or `compute`, or a param that is 1 (skip) or 0 (compute)."""
    return switch_value(value, values, "skip", "compute")


def rescale_value(value: str | None, values: dict) -> str | None:
    """`rescale=` on a consumer: `lazy` or `eager`, or a param that is 1 (lazy) or 0 (eager)."""
    return switch_value(value, values, "lazy", "eager")


def carry_value(value: str | None, values: dict) -> str | None:
    """`carry=` on a consumer: `pv` or `none`, or a param that is 1 (pv) or 0 (none)."""
    return switch_value(value, values, "pv", "none")


def kernel_tiles(kernel: ast.Kernel, values: dict) -> str:
    """`grid` or `persistent`: how the kernel's CTAs cover its grid."""
    return switch_value(ast.option(kernel.options, "tiles"), values, "persistent", "grid") or "grid"


def kernel_split(kernel: ast.Kernel, values: dict) -> str:
    """`none`, `tail` or `stream`: whether the last partial wave's tiles of a persistent walk run in parts
    (tail), or the walk's KV steps are shared out equally among the CTAs (stream). A param: 0 none, N >= 1
    tail (at most N parts), -1 stream."""
    value = ast.option(kernel.options, "split")
    if value is not None and values.get(value) == -1:
        return "stream"
    return switch_value(value, values, "tail", "none") or "none"


def split_max_parts(kernel: ast.Kernel, values: dict) -> int:
    """`split=PARAM` with the param N >= 2: at most N parts a tail tile (the host's rule picks up to 7
    otherwise; docs/perf-notes.md "fifteenth run": more than 3 measured slower)."""
    value = values.get(ast.option(kernel.options, "split") or "")
    return value if isinstance(value, int) and value >= 2 else 7


def roles_of(k: KernelInfo) -> dict[str, ast.Role]:
    return {f.stmt.role: f.stmt for f in k.statements(ast.Role)}


def _int_option(ctx: Context, node, key: str) -> int | str | None:
    """An option's static integer value, the text when it is not static, None when absent."""
    v = ast.option(getattr(node, "options", ()), key)
    if v is None:
        return None
    if v.lstrip("-").isdigit():
        return int(v)
    value = ctx.values.get(v)
    return value if isinstance(value, int) else v


def _option_node(node, key: str):
    return next((o for o in getattr(node, "options", ()) if o.key == key), node)


def produced(k: KernelInfo) -> dict[str, Flat]:
    """Shared buffers the producer role copies into -> the Copy that fills them."""
    out: dict[str, Flat] = {}
    for f in k.statements(ast.Copy):
        s = f.stmt
        if f.role is not None and f.role.role == "producer" and isinstance(s.dst, ast.Name):
            out.setdefault(s.dst.id, f)
    return out


def _reads(s) -> set[str]:
    if isinstance(s, ast.Compute):
        return names_in(s.value)
    if isinstance(s, ast.Reshape):
        return {s.src}
    if isinstance(s, ast.Copy):
        return names_in(s.src)
    return set()


# ---------------------------------------------------------------- legality on the target
def rule_hopper_target(ctx: Context) -> Iterator[Diagnostic]:
    """Warp specialisation needs GMMA, TMA and setmaxnreg: sm_90 (the `a` features)."""
    t = ctx.target
    if t.gmma and t.tma:
        return
    for k in ctx.kernels:
        for f in k.statements(ast.Role):
            yield diag("hopper", f.stmt, f"Role (warp specialisation with TMA, GMMA and register reallocation) "
                       f"needs sm_90; {t.arch} has {'no GMMA' if t.tma else 'neither TMA nor GMMA'}",
                       f"check it with --arch sm_90, or for {t.arch} write the FA2 form without Role/Wait/Release "
                       "(kernels_src/tl/dense_prefill_sm80.tl)")


# ---------------------------------------------------------------- structure and the barrier protocol
def rule_roles(ctx: Context) -> Iterator[Diagnostic]:
    for k in ctx.kernels:
        roles = [f for f in k.statements(ast.Role)]
        for f in k.flat:
            if isinstance(f.stmt, (ast.Wait, ast.Release)) and (f.role is None or f.role.role != "consumer"):
                verb = type(f.stmt).__name__
                yield diag("roles", f.stmt, f"{verb} outside the consumer role: only the consumer takes and hands "
                           "back stages of the producer's buffers", f"move `{verb} ...` into `Role consumer {{ ... }}`")
        if not roles:
            continue
        yield from _role_layout(ctx, k, roles)
        yield from _role_contents(ctx, k)
        yield from _protocol(ctx, k)


def _role_layout(ctx: Context, k: KernelInfo, roles: list[Flat]) -> Iterator[Diagnostic]:
    body = [s for s in k.kernel.body if not isinstance(s, ast.Comment)]
    top = [s for s in body if isinstance(s, ast.Role)]
    for f in roles:
        if f.loops or f.role is not None:
            yield diag("roles", f.stmt, "a Role nested in a Loop or another Role",
                       "write the roles at the kernel's top level, after the lets and the shared Allocates")
    if top:
        first = body.index(top[0])
        after = [s for s in body[first:] if not isinstance(s, ast.Role)]
        if after:
            yield diag("roles", after[0], f"{type(after[0]).__name__} between or after the roles: once the warps "
                       "split into roles, every statement belongs to one of them",
                       "move it above the first Role (lets, shared Allocates) or into a role")
    names = [f.stmt.role for f in roles]
    for want in ROLE_NAMES:
        if names.count(want) != 1:
            node = roles[0].stmt
            yield diag("roles", node, f"kernel {k.kernel.name} has {names.count(want)} {want} roles; warp "
                       "specialisation has exactly one producer and one consumer",
                       "write `Role producer { ... }` (TMA copies) and `Role consumer { ... }` (the math)")


def _role_contents(ctx: Context, k: KernelInfo) -> Iterator[Diagnostic]:
    for f in k.flat:
        s, role = f.stmt, f.role
        if isinstance(s, ast.Allocate):
            if role is not None and s.level == "shared":
                yield diag("roles", s, f"shared buffer {s.name} Allocated inside the {role.role} role: shared "
                           "memory belongs to the whole CTA", f"move `Allocate {s.name}` above the first Role")
            elif role is None and s.level == "register" and roles_of(k):
                yield diag("roles", s, f"register buffer {s.name} Allocated outside the roles: registers belong "
                           "to the threads of one role", f"move `Allocate {s.name}` into the role that uses it")
        if role is None or role.role != "producer":
            if role is not None and isinstance(s, ast.Copy) and ctx.level(s.src, k) == "global" \
                    and ctx.level(s.dst, k) == "shared":
                yield diag("roles", s, "the consumer copies global -> shared itself: the producer role issues "
                           "every load into shared memory", "move this Copy into `Role producer { ... }`")
            continue
        if isinstance(s, (ast.Compute, ast.Reshape, ast.Allocate)):
            yield diag("roles", s, f"{type(s).__name__} in the producer role: the producer only issues copies "
                       "(its warpgroup keeps few registers)", "move it into `Role consumer { ... }`")
        elif isinstance(s, ast.Copy) and not (ctx.level(s.src, k) == "global" and ctx.level(s.dst, k) == "shared"):
            yield diag("roles", s, "the producer copies global -> shared only", "move this Copy into the consumer")


def _protocol(ctx: Context, k: KernelInfo) -> Iterator[Diagnostic]:
    """Every read of a produced buffer follows its Wait; a ring refilled in a loop is released there."""
    fills = produced(k)
    consumer = [f for f in k.flat if f.role is not None and f.role.role == "consumer"]
    for name, fill in fills.items():
        waits = [f for f in consumer if isinstance(f.stmt, ast.Wait) and name in f.stmt.buffers]
        releases = [f for f in consumer if isinstance(f.stmt, ast.Release) and name in f.stmt.buffers]
        reads = [f for f in consumer if name in _reads(f.stmt)]
        if not reads:
            continue
        if not waits:
            yield diag("roles", reads[0].stmt, f"{name} is read before `Wait {name}`: the producer's copy of it may "
                       "still be in flight", f"add `Wait {name}` above {line_of(reads[0].stmt)}")
            continue
        w = waits[0]
        first = next((r for r in reads if r.index > w.index), None)
        early = [r for r in reads if r.index < w.index]
        if early:
            yield diag("roles", early[0].stmt, f"{name} is read before `Wait {name}` ({line_of(w.stmt)})",
                       f"move `Wait {name}` above {line_of(early[0].stmt)}")
        if fill.loops:
            yield from _ring_protocol(ctx, name, fill, w, releases, reads, first)
        elif w.loops:
            yield diag("roles", w.stmt, f"{name} is filled once but waited for in a loop: the second wait would "
                       "never end", f"move `Wait {name}` out of the loop")


def _ring_protocol(ctx, name, fill: Flat, w: Flat, releases, reads, first) -> Iterator[Diagnostic]:
    p_loop, c_loops = fill.loops[-1], w.loops
    if not c_loops:
        yield diag("roles", w.stmt, f"the producer refills {name} in a loop ({line_of(p_loop)}) but the consumer "
                   "waits for it once", f"put `Wait {name}` inside the consumer's loop over the same tiles")
        return
    c_loop = c_loops[-1]
    same = (print_expr(p_loop.start), print_expr(p_loop.stop), ast.option(p_loop.options, "order")) == \
        (print_expr(c_loop.start), print_expr(c_loop.stop), ast.option(c_loop.options, "order"))
    if not same:
        yield diag("roles", c_loop, f"the consumer's loop ({line_of(c_loop)}) and the producer's loop filling "
                   f"{name} ({line_of(p_loop)}) differ in bounds or order: the stages would be taken out of step",
                   f"loop over the same tiles in both roles: `Loop {p_loop.var} in {print_expr(p_loop.start)} .. "
                   f"{print_expr(p_loop.stop)}` with the same order=")
    rel = [r for r in releases if any(x is c_loop for x in r.loops)]
    if not rel:
        yield diag("roles", w.stmt, f"{name} is refilled every iteration but never released in the consumer's loop: "
                   f"the producer would wait for a free stage forever",
                   f"add `Release {name}` after the last read of {name} in the loop")
        return
    last_read = max((r for r in reads if any(x is c_loop for x in r.loops)), key=lambda r: r.index, default=None)
    if last_read is not None and rel[0].index < last_read.index:
        yield diag("roles", rel[0].stmt, f"{name} is released before its last read ({line_of(last_read.stmt)}): "
                   "the producer may already overwrite the stage", f"move `Release {name}` below "
                   f"{line_of(last_read.stmt)}")


# ---------------------------------------------------------------- GMMA shapes
def _consumer_warpgroups(ctx: Context, k: KernelInfo) -> int | None:
    consumer = roles_of(k).get("consumer")
    if consumer is not None:
        wg = _int_option(ctx, consumer, "warpgroups")
        return wg if isinstance(wg, int) else None
    warps = ctx.values.get("WARPS")
    return warps // WARPGROUP_WARPS if isinstance(warps, int) and warps % WARPGROUP_WARPS == 0 else None


def rule_gmma(ctx: Context) -> Iterator[Diagnostic]:
    if ctx.sketch or not ctx.target.gmma:
        return  # off sm_90 the mma rule already says GMMA is not there
    for k in ctx.kernels:
        for f, g in k.gemms():
            mma = ast.option(f.stmt.options, "mma")
            shape = parse_mma(mma)
            if mma in GMMA_WORDS or (shape and shape[0] == GMMA_M):
                yield from _gmma(ctx, k, f.stmt, g, mma)


def _gmma(ctx: Context, k: KernelInfo, s: ast.Compute, g: ast.Call, mma: str) -> Iterator[Diagnostic]:
    if len(g.args) != 2:
        return
    (a_name, _), (b_name, _) = operand_name(g.args[0]), operand_name(g.args[1])
    a_buf, b_buf = k.buffers.get(a_name or ""), k.buffers.get(b_name or "")
    if b_buf is not None and b_buf.level != "shared":
        yield diag("gmma", s, f"GMMA reads its B operand from shared memory; {b_name} is {b_buf.level}",
                   "pass the shared buffer the tile was copied into, not a register copy of it")
    if a_buf is not None and a_buf.level == "register" and ast.option(a_buf.options, "layout") not in (None, "mma_a"):
        yield diag("gmma", s, f"a register A operand of GMMA is laid out as mma_a; {a_name} is not",
                   f"Allocate {a_name} with layout=mma_a")
    sh = Shapes(ctx, k)
    a, b = sh.of(g.args[0]), sh.of(g.args[1])
    if not a or not b or len(a) != 2 or len(b) != 2:
        return
    m, kk, n = a[0], a[1], b[1]
    wgs = _consumer_warpgroups(ctx, k)
    if isinstance(m, int) and isinstance(wgs, int) and m % (GMMA_M * wgs):
        yield diag("gmma", s, f"a GMMA instruction computes {GMMA_M} rows of one warpgroup: M = {m} does not split "
                   f"into {GMMA_M}-row slices over {wgs} warpgroup(s)",
                   f"make BLOCK_M a multiple of {GMMA_M * wgs} (e.g. {GMMA_M * wgs}), or change the warpgroups")
    if isinstance(n, int) and (n % 8 or not 8 <= n <= GMMA_N_MAX):
        yield diag("gmma", s, f"GMMA's N = {n} must be a multiple of 8 between 8 and {GMMA_N_MAX}",
                   f"use a tile of N = {min(GMMA_N_MAX, max(8, n // 8 * 8))} columns (BLOCK_N, or D for O += P V)")
    unit = 32 if ctx.spec.dtype == "e4m3" else 16
    if isinstance(kk, int) and kk % unit:
        yield diag("gmma", s, f"GMMA's K step is {unit} for {ctx.spec.dtype}; the gemm's K = {kk} is not a multiple",
                   f"make the inner dimension a multiple of {unit}")


# ---------------------------------------------------------------- TMA boxes
def rule_tma(ctx: Context) -> Iterator[Diagnostic]:
    if ctx.sketch or not ctx.target.tma:
        return
    for k in ctx.kernels:
        for f in k.statements(ast.Copy):
            if copy_via(f.stmt, ctx.values) == "tma":
                yield from _tma_copy(ctx, k, f.stmt)


def _tma_copy(ctx: Context, k: KernelInfo, s: ast.Copy) -> Iterator[Diagnostic]:
    view = s.src if isinstance(s.src, ast.Indexed) else s.dst if isinstance(s.dst, ast.Indexed) else None
    buf_ref = s.dst if view is s.src else s.src
    buf = k.buffers.get(buf_ref.id) if isinstance(buf_ref, ast.Name) else None
    if view is None or buf is None or view.base not in ctx.globals:
        return
    sh = Shapes(ctx, k)
    rows = sh.view(view)
    elem = DTYPE_BYTES.get(ctx.spec.dtype, 2)
    d = ctx.consts["D"]
    if rows and isinstance(rows[0], int) and rows[0] > TMA_BOX_MAX:
        yield diag("tma", s, f"a TMA box spans at most {TMA_BOX_MAX} rows; {print_expr(view)} has {rows[0]}",
                   f"copy at most {TMA_BOX_MAX} rows per Copy (lower BLOCK_M / BLOCK_N)")
    if (d * elem) % TMA_INNER_ALIGN:
        yield diag("tma", s, f"a TMA box's inner extent must be a multiple of {TMA_INNER_ALIGN} bytes; a row of "
                   f"D = {d} {ctx.spec.dtype} values is {d * elem} bytes", "use a head size that is a multiple of 8")
    heads = view.indices[1] if len(view.indices) >= 2 else None
    if isinstance(heads, ast.Slice):
        yield diag("tma", s, f"a TMA box reads rows of one head; {print_expr(view)} packs a range of heads",
                   "copy one head per Copy, or use via=cp.async for packed heads")
    if ctx.dtype(buf.dtype) != ctx.spec.dtype and view is s.src:
        yield diag("tma", s, f"TMA copies bytes unchanged, but {buf.name} is {ctx.dtype(buf.dtype)} and the source "
                   f"{ctx.spec.dtype}", f"Allocate {buf.name} with DTYPE")
    if buf.level == "shared" and ast.option(buf.options, "layout") not in (None, "swizzle"):
        yield diag("tma", s, f"TMA fills {buf.name} in the 128-byte swizzled layout GMMA reads; it has layout="
                   f"{ast.option(buf.options, 'layout')}", f"Allocate {buf.name} with layout=swizzle")


# ---------------------------------------------------------------- register reallocation
def rule_setmaxnreg(ctx: Context) -> Iterator[Diagnostic]:
    if ctx.sketch:
        return
    for k in ctx.kernels:
        roles = roles_of(k)
        if not roles:
            continue
        yield from _role_counts(ctx, k, roles)


def _role_counts(ctx: Context, k: KernelInfo, roles: dict[str, ast.Role]) -> Iterator[Diagnostic]:
    total_regs = total_warps = 0
    complete = True
    for name, role in roles.items():
        wg, regs = _int_option(ctx, role, "warpgroups"), _int_option(ctx, role, "regs")
        for key, v in (("warpgroups", wg), ("regs", regs)):
            if v is None:
                yield diag("setmaxnreg", role, f"Role {name} has no {key}= option",
                           f"add `{key}=` ({'1 for the producer, 2 for the consumer' if key == 'warpgroups' else '24 for the producer, 240 for the consumer'})")
            elif isinstance(v, str):
                yield diag("setmaxnreg", _option_node(role, key), f"{key}={v} is not a static integer",
                           f"use a number or a param for {key}=")
        if not (isinstance(wg, int) and isinstance(regs, int)):
            complete = False
            continue
        overlap = overlap_value(ast.option(role.options, "overlap"), ctx.values)
        if overlap is not None and (overlap not in OVERLAPS or name == "producer"):
            yield diag("setmaxnreg", _option_node(role, "overlap"), f"overlap={overlap} on the {name} role: the "
                       f"consumer takes overlap={' or overlap='.join(OVERLAPS)}",
                       "write `overlap=softmax`, `pinned` or `gemms` on `Role consumer` (the softmax of a KV tile "
                       "runs while the GEMMs of its neighbours do; gemms: a tile's S GEMM and the previous "
                       "tile's O += P V issued together), or drop it")
        yield from _carry(ctx, k, name, role, overlap)
        idle = idle_value(ast.option(role.options, "idle"), ctx.values)
        if idle is not None and (idle not in IDLES or (name == "producer" and idle == "skip")):
            yield diag("setmaxnreg", _option_node(role, "idle"), f"idle={idle} on the {name} role: a consumer "
                       "warpgroup with no row of its tile's sequence takes idle=skip (no GEMM) or idle=compute",
                       "write `idle=skip` on `Role consumer` (or a param that is 1 or 0), or drop it")
        rescale = rescale_value(ast.option(role.options, "rescale"), ctx.values)
        if rescale is not None and (rescale not in RESCALES or (name == "producer" and rescale == "lazy")):
            yield diag("setmaxnreg", _option_node(role, "rescale"), f"rescale={rescale} on the {name} role: a "
                       "consumer rescales O every KV tile (rescale=eager) or when its running max grows past "
                       "the slack (rescale=lazy)", "write `rescale=lazy` on `Role consumer` (or a param that is "
                       "1 or 0), or drop it")
        schedule = switch_value(ast.option(role.options, "schedule"), ctx.values, "pingpong", None)
        if schedule not in (None, "pingpong"):
            yield diag("setmaxnreg", _option_node(role, "schedule"), f"schedule={schedule} on Role {name}: a "
                       "role's schedule is pingpong (or a param that is 1 or 0)", "write `schedule=pingpong`")
        if schedule == "pingpong" and (name == "producer" or wg < 2):
            yield diag("setmaxnreg", _option_node(role, "schedule"), f"schedule=pingpong on the {name} role with "
                       f"warpgroups={wg}: ping-pong passes the turn to issue GEMMs between consumer warpgroups",
                       "put it on `Role consumer with warpgroups=2` (or 3), or drop it")
        if wg < 1 or (name == "producer" and wg != 1):
            yield diag("setmaxnreg", _option_node(role, "warpgroups"), f"Role {name} has warpgroups={wg}",
                       "the producer is one warpgroup; the consumer one or more")
        if regs % REG_STEP or not REG_MIN <= regs <= REG_MAX:
            good = min(REG_MAX, max(REG_MIN, regs // REG_STEP * REG_STEP))
            yield diag("setmaxnreg", _option_node(role, "regs"), f"regs={regs}: setmaxnreg takes a multiple of "
                       f"{REG_STEP} from {REG_MIN} to {REG_MAX}", f"use regs={good}")
        total_regs += regs * wg * WARPGROUP_THREADS
        total_warps += wg * WARPGROUP_WARPS
    if not complete or "consumer" not in roles:
        return
    consumer = roles["consumer"]
    t = ctx.target
    # setmaxnreg moves registers between a CTA's warpgroups; it cannot add any. The CTA holds what it
    # was launched with: the register file over its threads, per thread a multiple of 8 (384 threads:
    # 168 each, 64512 in all). A consumer asking past that waits in setmaxnreg.inc forever (a hang
    # seen at 32 + 2 x 240 with 384 threads: 65536 fits the register file, not the launch).
    threads = total_warps * 32
    per_thread = min(REG_MAX, t.regs_per_sm // max(threads, 1) // REG_STEP * REG_STEP)
    launched = per_thread * threads
    if total_regs > launched:
        parts = ", ".join(f"{n} {_int_option(ctx, r, 'warpgroups')} x 128 threads x {_int_option(ctx, r, 'regs')}"
                          for n, r in roles.items())
        yield diag("setmaxnreg", consumer, f"the roles ask for {total_regs} registers ({parts}); a CTA of {threads} "
                   f"threads launches with {per_thread} a thread, {launched} in all, and setmaxnreg only moves "
                   "them between warpgroups", "lower the consumer's regs= (e.g. 240 with a 24-register producer "
                   "and two consumer warpgroups)")
    if total_warps * 32 > t.max_threads_per_block:
        yield diag("setmaxnreg", consumer, f"{total_warps} warps are more than a CTA holds",
                   f"use at most {t.max_threads_per_block // 32} warps in all roles")
    wgs, warps = _int_option(ctx, consumer, "warpgroups"), ctx.values.get("WARPS")
    if isinstance(warps, int) and warps != wgs * WARPGROUP_WARPS:
        yield diag("setmaxnreg", ctx.params.get("WARPS") or consumer, f"WARPS = {warps} but the consumer has "
                   f"{wgs} warpgroups ({wgs * WARPGROUP_WARPS} warps): WARPS counts the warps that own query rows",
                   f"set WARPS = {wgs * WARPGROUP_WARPS}")
        return
    estimate, parts = register_estimate(ctx, k)
    regs = _int_option(ctx, consumer, "regs")
    if isinstance(regs, int) and estimate > regs:
        listed = ", ".join(f"{n} {r}" for n, r, _ in sorted(parts, key=lambda p: -p[1]) if r)
        yield diag("setmaxnreg", _option_node(consumer, "regs"), f"the consumer needs about {estimate} registers "
                   f"per thread ({listed} + overhead) but keeps regs={regs}: it would spill",
                   f"raise regs= (at most {REG_MAX}, within the register file) or shrink BLOCK_N / D tiles")


def _carry(ctx: Context, k: KernelInfo, name: str, role: ast.Role, overlap: str | None) -> Iterator[Diagnostic]:
    """carry=pv: a tile's last O += P V is issued with the next tile's first S GEMM and its store runs
    after that tile's first softmax, so there must be a next tile in the same CTA (tiles=persistent)
    and the overlapped loop that issues two GEMMs at once (overlap=softmax or pinned)."""
    carry = carry_value(ast.option(role.options, "carry"), ctx.values)
    if carry is None or carry == "none":
        return
    node = _option_node(role, "carry")
    if carry not in CARRIES or name == "producer":
        yield diag("setmaxnreg", node, f"carry={carry} on the {name} role: the consumer takes carry=pv or "
                   "carry=none", "write `carry=pv` on `Role consumer`, or drop it")
    elif overlap not in ("softmax", "pinned"):
        yield diag("setmaxnreg", node, "carry=pv issues a tile's last O += P V with the next tile's first S GEMM: "
                   "that needs the overlapped loop with the softmax beside O += P V (overlap=softmax or pinned; "
                   "not gemms)", "add `overlap=softmax` (or pinned) to the role, or drop carry=")
    elif kernel_tiles(k.kernel, ctx.values) != "persistent" and not ctx.sketch:
        yield diag("setmaxnreg", node, "carry=pv hands a tile's last O += P V to the CTA's next tile; with "
                   "tiles=grid a CTA runs one tile", "add `with tiles=persistent` to the kernel, or drop carry=")


# ---------------------------------------------------------------- how CTAs cover the grid
def rule_kernel_tiles(ctx: Context) -> Iterator[Diagnostic]:
    """`kernel ... with tiles=persistent`: one CTA per SM walks the grid's tiles; it needs the producer
    role (which loads the next tile while the consumers finish this one). `split=tail` (with
    tiles=persistent): the tiles of the walk's last, partial wave run in parts along the keys, combined
    by the last part to finish; the meaning is unchanged (the online softmax's parts merge exactly)."""
    for k in ctx.kernels:
        for o in k.kernel.options:
            if o.key == "split":
                value = kernel_split(k.kernel, ctx.values) if o.value in ctx.values else o.value
                if value not in SPLIT_MODES and not (ctx.sketch and value[:1].isupper()):
                    yield diag("roles", o, f"split={o.value}: a kernel's split is `tail`, `stream` or `none`",
                               "write `split=tail`, or drop the option")
                elif value != "none" and kernel_tiles(k.kernel, ctx.values) != "persistent" and not ctx.sketch:
                    yield diag("roles", o, f"split={value} splits the last wave of a persistent tile walk; with "
                               "tiles=grid every tile has its own CTA", "add `tiles=persistent`, or drop split=")
                continue
            value = switch_value(o.value, ctx.values, "persistent", "grid") if o.key == "tiles" else o.value
            if o.key != "tiles":
                yield diag("roles", o, f"unknown kernel option {o.key}=", "a kernel takes `with tiles=persistent`, "
                           "`split=tail` or no options")
            elif value not in TILE_MODES and not (ctx.sketch and value[:1].isupper()):  # a param, set later
                yield diag("roles", o, f"tiles={o.value}: a kernel's tiles are `grid` (a CTA per tile) or "
                           "`persistent` (a CTA per SM)", "write `with tiles=persistent`, or drop the option")
            elif value == "persistent" and not roles_of(k):
                yield diag("roles", o, "tiles=persistent needs warp specialisation: the producer role loads the "
                           "next tile while the consumers finish the current one",
                           "add `Role producer` / `Role consumer` (kernels_src/tl/dense_prefill_sm90.tl), or drop it")


# ---------------------------------------------------------------- shared memory with stages and barriers
def rule_smem_stages(ctx: Context) -> Iterator[Diagnostic]:
    if ctx.sketch:
        return
    for k in ctx.kernels:
        if roles_of(k):
            yield from _smem(ctx, k)


def _smem(ctx: Context, k: KernelInfo) -> Iterator[Diagnostic]:
    fills = produced(k)
    plain = padded = 0
    parts = []
    for f in k.statements(ast.Allocate):
        a = f.stmt
        if a.level != "shared":
            continue
        dims = ctx.shape(a, k)
        if not all(isinstance(d, int) for d in dims):
            return  # the smem rule reports shapes that are not static
        stages = _int_option(ctx, a, "stages") or 1
        stages = stages if isinstance(stages, int) else 1
        size = math.prod(dims) * DTYPE_BYTES.get(ctx.dtype(a.dtype), 4)
        barriers = (2 * stages if a.name in fills and fills[a.name].loops else 2) if a.name in fills else 0
        plain += size * stages
        padded += math.ceil(size / SWIZZLE_ALIGN) * SWIZZLE_ALIGN * stages + barriers * BARRIER_BYTES
        parts.append(f"{a.name} {stages} x {size} B")
        if a.name in fills and fills[a.name].loops and stages < 2:
            yield diag("smem", a, f"{a.name} is refilled every tile with one stage: the producer waits for the "
                       "consumer before each copy, nothing overlaps", f"Allocate {a.name} with stages=2 (STAGES)",
                       severity="warning")
    for s, size in staged_stores(ctx, k):  # O's tile for a TMA store from registers
        plain += size
        padded += math.ceil(size / SWIZZLE_ALIGN) * SWIZZLE_ALIGN
        parts.append(f"{print_expr(s.dst)}'s store tile {size} B")
    limit = ctx.target.smem_optin_max
    if plain <= limit < padded + SWIZZLE_ALIGN:
        yield diag("smem", k.kernel, f"kernel {k.kernel.name}: the tiles fit ({plain} B) but with 1024-byte aligned "
                   f"swizzled tiles and the stage barriers it needs {padded + SWIZZLE_ALIGN} B, over the {limit} B of "
                   f"{ctx.target.arch} ({', '.join(parts)})", "lower STAGES or BLOCK_N")
