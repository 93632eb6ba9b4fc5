"""Rules: copy-path (via= legal for the levels and the target), mma (tensor-core shape and dtype on
the target, GMMA only on sm_90), options (known keys and values), form (what a program needs)."""

from __future__ import annotations

from typing import Iterator

from qimeng_serve.tl import ast
from qimeng_serve.tl.rules.context import (
    DTYPE_BYTES, F32_TENSORS, Context, Diagnostic, KernelInfo, Shapes, diag, gemm_of, operand_name, parse_mma, suggest,
)

# which paths can move data between which levels (target legality is checked separately)
PATHS = {
    ("global", "shared"): ("cp.async", "ldg", "tma"),  # ldg: staged through registers
    ("global", "register"): ("ldg",),
    ("shared", "register"): ("ldmatrix", "lds"),
    ("register", "shared"): ("sts",),
    ("register", "global"): ("stg", "tma"),  # tma: through a shared tile the lowering adds (sm_90's O store)
    ("shared", "global"): ("stg", "tma"),
}
ALL_PATHS = ("cp.async", "ldg", "tma", "ldmatrix", "lds", "sts", "stg")
# `via=` may name a param that is 1 or 0, so that `params when D = ...` can choose: tma (1) or stg (0).
# Where it is O's store from registers, tma stages O through a shared tile (as large as the view),
# which not every head size has room for.
VIA_SWITCH = {1: "tma", 0: "stg"}
# `order=reverse` visits the KV tiles last to first (the masked diagonal tiles come first);
# `schedule=pingpong` is FA2's overlap of single-stage K and V buffers (docs/tl.md §5).
LOOP_ORDERS = ("forward", "reverse")
LOOP_SCHEDULES = ("sequential", "pingpong")

OPTIONS = {
    ast.Allocate: ("layout", "stages", "init"),
    ast.Copy: ("via", "transfer"),
    ast.Compute: ("mma",),
    ast.Reshape: (),
    ast.Loop: ("pipeline", "order", "schedule"),
    ast.Role: ("warpgroups", "regs", "schedule", "overlap", "carry", "idle", "rescale"),  # values: rules/hopper.py
}
LAYOUTS = {"shared": ("swizzle", "row"), "register": ("mma_a", "mma_b", "mma_c")}
GMMA_WORDS = ("gmma", "wgmma")


def copy_via(s: ast.Copy, values: dict) -> str | None:
    """A Copy's path: its `via=` word, or for a param that is 1 or 0, VIA_SWITCH's (another value comes
    back as its number, which the options rule rejects)."""
    v = ast.option(s.options, "via")
    if v is not None and isinstance(values.get(v), int):
        return VIA_SWITCH.get(values[v], str(values[v]))
    return v


def staged_stores(ctx: Context, k: KernelInfo) -> list[tuple[ast.Copy, int]]:
    """The shared tiles a kernel holds beyond its Allocates: one per register -> global Copy with
    via=tma, as many bytes as its global view's rows x D (None where the rows are not static)."""
    out = []
    for f in k.statements(ast.Copy):
        s = f.stmt
        if copy_via(s, ctx.values) != "tma" or (ctx.level(s.src, k), ctx.level(s.dst, k)) != ("register", "global"):
            continue
        rows = Shapes(ctx, k).view(s.dst) if isinstance(s.dst, ast.Indexed) else None
        if rows and isinstance(rows[0], int):
            out.append((s, rows[0] * ctx.consts["D"] * DTYPE_BYTES.get(ctx.spec.dtype, 2)))
    return out


def global_dtype(ctx: Context, base: str) -> str:
    return "f32" if base in F32_TENSORS else ctx.spec.dtype


def ref_dtype(ctx: Context, k: KernelInfo, ref) -> str | None:
    base = ref.id if isinstance(ref, ast.Name) else ref.base
    if base in ctx.globals:
        return global_dtype(ctx, base)
    return ctx.dtype(k.buffers[base].dtype) if base in k.buffers else None


def default_path(ctx: Context, k: KernelInfo, s: ast.Copy) -> str:
    """The path a program would normally use for this copy on this target."""
    pair = (ctx.level(s.src, k), ctx.level(s.dst, k))
    if pair == ("global", "shared"):
        return "cp.async" if ctx.target.cp_async else "ldg"
    if pair == ("shared", "register"):
        return "ldmatrix" if is_16bit(ref_dtype(ctx, k, s.dst)) else "lds"
    return PATHS.get(pair, ("ldg",))[0]


def is_16bit(dtype: str | None) -> bool:
    return dtype in ("f16", "bf16")


# ---------------------------------------------------------------- copy paths
def rule_copy_paths(ctx: Context) -> Iterator[Diagnostic]:
    for k in ctx.kernels:
        for f in k.statements(ast.Copy):
            via = copy_via(f.stmt, ctx.values)
            if via is not None and via in ALL_PATHS:
                yield from _copy_path(ctx, k, f.stmt, via)


def _copy_path(ctx: Context, k: KernelInfo, s: ast.Copy, via: str) -> Iterator[Diagnostic]:
    t, arch = ctx.target, ctx.target.arch
    pair = (ctx.level(s.src, k), ctx.level(s.dst, k))
    legal_here = [p for p in PATHS.get(pair, ()) if p in t.copy_paths()]
    if pair in PATHS and via not in PATHS[pair]:
        yield diag("copy-path", s, f"via={via} cannot copy {pair[0]} -> {pair[1]}",
                   f"use via={' or via='.join(legal_here)} for a {pair[0]} -> {pair[1]} copy on {arch}")
        return
    if via not in t.copy_paths():
        use = default_path(ctx, k, s)
        yield diag("copy-path", s, f"{_missing_path(arch, via)}: use via={use}", f"write `with via={use}` on this Copy")
        return
    if via == "cp.async" and ref_dtype(ctx, k, s.src) != ref_dtype(ctx, k, s.dst):
        yield diag("copy-path", s, f"cp.async copies bytes unchanged, but the copy converts "
                   f"{ref_dtype(ctx, k, s.src)} to {ref_dtype(ctx, k, s.dst)}",
                   "Allocate the shared buffer with the source's dtype (DTYPE), or use via=ldg to convert")
    if via == "ldmatrix" and not is_16bit(ref_dtype(ctx, k, s.dst)):
        yield diag("copy-path", s, f"ldmatrix moves 16-bit elements, the destination is "
                   f"{ref_dtype(ctx, k, s.dst)}", "use via=lds for 32-bit tiles")


def _missing_path(arch: str, via: str) -> str:
    if via == "cp.async":
        return f"{arch} has no cp.async (it needs sm_80+)"
    if via == "tma":
        return f"{arch} has no TMA (tma needs sm_90)"
    return f"via={via} is not available on {arch}"


# ---------------------------------------------------------------- tensor cores
def rule_mma(ctx: Context) -> Iterator[Diagnostic]:
    for k in ctx.kernels:
        for f, g in k.gemms():
            yield from _gemm_legal(ctx, k, f.stmt, g)


def _operand_dtypes(ctx: Context, k: KernelInfo, g: ast.Call) -> list[tuple[str, str]]:
    out = []
    for arg in g.args:
        name, _ = operand_name(arg)
        if name in k.buffers:
            out.append((name, ctx.dtype(k.buffers[name].dtype)))
    return out


def _gemm_legal(ctx: Context, k: KernelInfo, s: ast.Compute, g: ast.Call) -> Iterator[Diagnostic]:
    t = ctx.target
    for n, d in _operand_dtypes(ctx, k, g):  # f32 register operands are the reshape rule's
        if d == "f32" and k.buffers[n].level == "shared":
            yield diag("mma", s, f"gemm operand {n} is a shared f32 tile; tensor cores take {ctx.spec.dtype} operands",
                       f"Allocate {n} with DTYPE (a Copy converts on the way in)")
    ops = [(n, d) for n, d in _operand_dtypes(ctx, k, g) if d != "f32"]
    dtypes = {d for _, d in ops}
    if len(dtypes) > 1:
        yield diag("mma", s, f"gemm operands differ in dtype: {', '.join(f'{n} {d}' for n, d in ops)}",
                   "Allocate both operands with the same dtype (DTYPE)")
    if not dtypes:
        return
    dt = sorted(dtypes)[0]
    if dt not in t.dtypes:
        yield _no_tensor_cores(ctx, s, dt)
        return
    mma = ast.option(s.options, "mma")
    if mma is not None:
        yield from _mma_shape(ctx, s, mma, dt)


def _no_tensor_cores(ctx: Context, s, dt: str) -> Diagnostic:
    arch = ctx.target.arch
    origin = " (DTYPE is the spec's dtype)" if ctx.spec.dtype == dt else ""
    if dt == "bf16":
        return diag("mma", s, f"{arch} has no bf16 tensor cores{origin}: use fp16",
                    "use fp16: build the spec with dtype f16 and use f16/DTYPE operands")
    return diag("mma", s, f"{arch} has no {dt} tensor cores{origin}",
                f"use one of {', '.join(ctx.target.dtypes)}")


def _mma_shape(ctx: Context, s: ast.Compute, mma: str, dt: str) -> Iterator[Diagnostic]:
    t, arch = ctx.target, ctx.target.arch
    legal = t.mma_shapes(dt)
    shape = parse_mma(mma)
    if mma in GMMA_WORDS or (shape and shape[0] == 64):
        if not t.gmma:
            yield diag("mma", s, f"mma={mma} is a GMMA (wgmma) shape; GMMA needs sm_90 and this is {arch}",
                       f"use mma={legal[0]} (warp-level mma.sync)")
        elif shape and not _gmma_ok(shape, dt):
            yield diag("mma", s, f"mma={mma} is not a wgmma shape for {dt}",
                       f"use m64nNk{32 if dt == 'e4m3' else 16} with N a multiple of 8 up to 256")
        return
    if mma not in legal:
        yield diag("mma", s, f"mma={mma} is not a tensor-core shape for {dt} on {arch} (it has "
                   f"{', '.join(legal)})", f"use mma={legal[0]}")


def _gmma_ok(shape: tuple[int, int, int], dt: str) -> bool:
    _, n, k = shape
    return n % 8 == 0 and 8 <= n <= 256 and k == (32 if dt == "e4m3" else 16)


# ---------------------------------------------------------------- options
def rule_options(ctx: Context) -> Iterator[Diagnostic]:
    for k in ctx.kernels:
        for f in k.flat:
            s = f.stmt
            allowed = OPTIONS.get(type(s), ())
            seen: set[str] = set()
            for o in getattr(s, "options", ()):
                if o.key not in allowed:
                    yield diag("options", o, f"{type(s).__name__} has no option `{o.key}`" + suggest(o.key, allowed),
                               f"{type(s).__name__} takes {', '.join(allowed) or 'no options'}; remove `{o.key}=`")
                elif o.key in seen:
                    yield diag("options", o, f"option `{o.key}` is given twice", f"keep one `{o.key}=`")
                else:
                    yield from _option_value(ctx, s, o)
                seen.add(o.key)


def _option_value(ctx: Context, s, o: ast.Option) -> Iterator[Diagnostic]:
    key, v = o.key, o.value
    if key == "layout" and isinstance(s, ast.Allocate):
        yield from _layout_value(s, o)
    elif key == "via" and isinstance(ctx.values.get(v), int) and ctx.values[v] not in VIA_SWITCH:
        yield diag("options", o, f"via={v} is {ctx.values[v]}: a param names a copy path as 1 (tma) or 0 (stg)",
                   f"set {v} to 1 or 0, or write the path (via=tma)")
    elif key == "via" and v not in ALL_PATHS and not isinstance(ctx.values.get(v), int) and \
            not (ctx.sketch and v.isupper()):  # a sketch's param, defined once it has a params block
        yield diag("options", o, f"unknown copy path via={v}" + suggest(v, ALL_PATHS),
                   f"use one of {', '.join(ALL_PATHS)}, or a param that is 1 (tma) or 0 (stg)")
    elif key == "transfer" and _value(ctx, v) not in (4, 8, 16):
        yield diag("options", o, f"transfer={v}: a thread moves 4, 8 or 16 bytes per access",
                   "use transfer=16 (or 8 / 4 for narrow rows)")
    elif key == "init" and v not in ("0", "-inf"):
        yield diag("options", o, f"init={v}: a buffer starts at 0 or -inf", "use init=0 or init=-inf")
    elif key in ("stages", "pipeline") and not (isinstance(_value(ctx, v), int) and _value(ctx, v) >= 1):
        yield diag("options", o, f"{key}={v} is not a positive integer or a param",
                   f"use {key}=STAGES with STAGES in the params block")
    elif key == "order" and v not in LOOP_ORDERS:
        yield diag("options", o, f"order={v}: a loop runs forward or reverse", "use order=forward or order=reverse")
    elif key == "schedule" and v not in LOOP_SCHEDULES and not (isinstance(s, ast.Role) and (
            ctx.sketch or isinstance(_value(ctx, v), int))):
        # (a Role may name a param, `schedule=PINGPONG`, 1 or 0 per head size: rules/hopper.py checks it)
        yield diag("options", o, f"unknown loop schedule schedule={v}" + suggest(v, LOOP_SCHEDULES),
                   f"use one of {', '.join(LOOP_SCHEDULES)}")
    elif key == "mma" and parse_mma(v) is None and v not in GMMA_WORDS:
        yield diag("options", o, f"mma={v} is not an MMA shape", "write it as mMnNkK, e.g. mma=m16n8k16")


def _layout_value(s: ast.Allocate, o: ast.Option) -> Iterator[Diagnostic]:
    if s.level == "register" and len(s.shape) == 1:
        yield diag("options", o, f"{s.name} is a register vector; vectors take no layout (one value per row)",
                   "remove `layout=`")
    elif o.value not in LAYOUTS.get(s.level, ()):
        yield diag("options", o, f"layout={o.value} is not a {s.level} layout",
                   f"use one of {', '.join(LAYOUTS.get(s.level, ()))}")


def _value(ctx: Context, v: str):
    if v.lstrip("-").isdigit():
        return int(v)
    return ctx.values.get(v)


# ---------------------------------------------------------------- program form
def rule_form(ctx: Context) -> Iterator[Diagnostic]:
    if ctx.sketch:
        return
    yield from _form_params(ctx)
    for k in ctx.kernels:
        for f in k.flat:
            yield from _form_stmt(ctx, k, f.stmt)


def _form_params(ctx: Context) -> Iterator[Diagnostic]:
    p = ctx.program
    if not p.params_blocks:
        first = next((i for i in p.items if not isinstance(i, ast.Comment)), None)
        yield diag("form", first, "the program form needs a params block; this is a sketch",
                   "add `params { BLOCK_M = 128  BLOCK_N = 64  WARPS = 4  STAGES = 2 }` before the kernel")
        return
    missing = [n for n in ("BLOCK_M", "BLOCK_N", "WARPS") if n not in ctx.params]
    if missing:
        block = next((b for b in p.params_blocks if b.guard is None), p.params_blocks[0])
        yield diag("form", block, f"params {', '.join(missing)} are not defined (for D={ctx.consts['D']})",
                   f"add {', '.join(f'{n} = ...' for n in missing)} to the plain params block")


def _form_stmt(ctx: Context, k: KernelInfo, s) -> Iterator[Diagnostic]:
    if isinstance(s, ast.Copy) and ast.option(s.options, "via") is None:
        yield diag("form", s, "Copy has no via= option (the program form names every copy path)",
                   f"add `with via={default_path(ctx, k, s)}`")
    elif gemm_of(s) is not None and ast.option(s.options, "mma") is None:
        dt = next((d for _, d in _operand_dtypes(ctx, k, gemm_of(s)) if d != "f32"), ctx.spec.dtype)
        shapes = ctx.target.mma_shapes(dt) or ("m16n8k16",)
        yield diag("form", s, "gemm Compute has no mma= option (the program form names the tensor-core shape)",
                   f"add `with mma={shapes[0]}`")
    elif isinstance(s, ast.Allocate) and _needs_layout(k, s) and ast.option(s.options, "layout") is None:
        role = "shared tiles" if s.level == "shared" else "register tiles that meet a gemm or a Reshape"
        yield diag("form", s, f"Allocate {s.name} has no layout= option (needed for 2-D {role})",
                   f"add `layout={_default_layout(ctx, k, s)}` to its `with` options")


def _needs_layout(k: KernelInfo, s: ast.Allocate) -> bool:
    """2-D shared tiles, and 2-D register tiles the tensor cores see (gemm operand or accumulator,
    Reshape source or destination). Elementwise-only register tiles (the split-KV combine's) are
    partitioned however the lowering likes, so they need none."""
    if len(s.shape) != 2:
        return False
    return s.level == "shared" or s.name in mma_tiles(k)


def mma_tiles(k: KernelInfo) -> set[str]:
    names: set[str] = set()
    for f, g in k.gemms():
        names.add(f.stmt.dst)
        names |= {n for n in (operand_name(a)[0] for a in g.args) if n}
    for f in k.statements(ast.Reshape):
        names |= {f.stmt.src, f.stmt.dst}
    return names


def _default_layout(ctx: Context, k: KernelInfo, s: ast.Allocate) -> str:
    if s.level == "shared":
        return "swizzle"
    if ctx.dtype(s.dtype) == "f32":
        return "mma_c"
    for _, g in k.gemms():
        if len(g.args) == 2 and operand_name(g.args[1])[0] == s.name:
            return "mma_b"
    return "mma_a"
