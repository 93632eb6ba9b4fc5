"""Attention-semantics rules: mask (kv_len, causal, window after the QK gemm), softmax (online
rescale of the accumulator and the row sum), reshape (the P operand of the second GEMM),
normalize (divide by the row sum before writing O), kv-head (K/V indexed by q_head / GROUP)."""

from __future__ import annotations

from typing import Iterator

from qimeng_serve.tl import ast
from qimeng_serve.tl.printer import print_expr
from qimeng_serve.tl.rules.context import (
    Context, Diagnostic, Flat, KernelInfo, calls_in, diag, gemm_of, inside, line_of, names_in, operand_name,
)

OUTPUTS = ("O", "O_part")  # tensors written from a normalised accumulator


def _qk_gemm(k: KernelInfo) -> tuple[Flat, ast.Call] | None:
    """The score GEMM: the first `S = gemm(...)` (an assignment, not an accumulation)."""
    return next(((f, g) for f, g in k.gemms() if f.stmt.op == "="), None)


def _same_loop(f: Flat, g: Flat) -> bool:
    """f runs in g's loop (or a loop nested in it)."""
    return all(inside(f, loop) for loop in g.loops)


def _kv_len_name(k: KernelInfo) -> str:
    return next((n for n, v in k.lets.items() if print_expr(v).startswith("seqlen_k[")), "seqlen_k[b]")


def _q_len_name(k: KernelInfo) -> str:
    return next((n for n, v in k.lets.items() if print_expr(v).startswith("seqlen_q[")), "seqlen_q[b]")


# ---------------------------------------------------------------- mask
def rule_mask(ctx: Context) -> Iterator[Diagnostic]:
    for k in ctx.kernels:
        qk = _qk_gemm(k)
        if qk is not None:
            yield from _mask_kernel(ctx, k, qk[0])


def _mask_kernel(ctx: Context, k: KernelInfo, gemm: Flat) -> Iterator[Diagnostic]:
    S = gemm.stmt.dst
    after = [f for f in k.flat[gemm.index + 1:] if _same_loop(f, gemm) and isinstance(f.stmt, ast.Compute)]
    masks = [(f, c) for f in after for c in calls_in(f.stmt.value, "mask") if c.args and S in names_in(c.args[0])]
    if not masks:
        lk, lq = _kv_len_name(k), _q_len_name(k)
        yield diag("mask", gemm.stmt, f"no mask(...) on {S} after the score GEMM `{S} = gemm(...)`: keys past the "
                   "sequence end (and, when causal, future keys) would get attention weight",
                   f"add `Compute {S} = mask({S}, kv_len={lk}, causal=CAUSAL, offset={lk} - {lq}, window=WINDOW)` "
                   f"after {line_of(gemm.stmt)}")
        return
    f, call = masks[0]
    yield from _mask_args(ctx, k, f.stmt, call)
    yield from _mask_before_max(k, after, f, S)


def _mask_args(ctx: Context, k: KernelInfo, stmt, call: ast.Call) -> Iterator[Diagnostic]:
    if call.kwarg("kv_len") is None:
        yield diag("mask", stmt, "mask(...) has no kv_len=: keys at positions >= the sequence length would be "
                   "attended to", f"add `kv_len={_kv_len_name(k)}` to the mask call")
    offset = f"offset={_kv_len_name(k)} - {_q_len_name(k)}"
    for key, const, want in (("causal", "CAUSAL", int(ctx.spec.causal)), ("window", "WINDOW", ctx.spec.sliding_window)):
        v = call.kwarg(key)
        got = ctx.eval(v, k) if v is not None else 0
        if got is None or got == want or (key == "causal" and bool(got) == bool(want)):
            continue  # a runtime value cannot be judged here: the interpreter can
        spec_says = f"the spec has {key} = {want}" if key == "window" else \
            f"the spec is {'causal' if want else 'not causal'}"
        has = f"no {key}=" if v is None else f"{key}={print_expr(v)} (= {got})"
        yield diag("mask", stmt, f"{spec_says} but the mask has {has}",
                   f"pass `{key}={const}` (with `{offset}`) to mask: the spec constant follows the spec")


def rule_softcap(ctx: Context) -> Iterator[Diagnostic]:
    for k in ctx.kernels:
        qk = _qk_gemm(k)
        if qk is not None:
            yield from _softcap(ctx, k, qk[0])


def _softcap(ctx: Context, k: KernelInfo, gemm: Flat) -> Iterator[Diagnostic]:
    """A soft-capped spec needs softcap(S, c) on the scores with c = SOFTCAP."""
    S, want = gemm.stmt.dst, ctx.spec.softcap
    calls = [c for f in k.flat[gemm.index + 1:] if isinstance(f.stmt, ast.Compute)
             for c in calls_in(f.stmt.value, "softcap") if c.args and S in names_in(c.args[0])]
    values = {ctx.eval(c.args[1], k) for c in calls if len(c.args) == 2}
    if not want and not (values - {0, 0.0, None}):
        return
    if want and (want in values or None in values):
        return
    found = ", ".join(print_expr(c) for c in calls) or "no softcap(...)"
    yield diag("softcap", gemm.stmt, f"the spec's logits soft-cap is {want:g} but the scores get {found}",
               f"after {line_of(gemm.stmt)} write `Compute {S} = softcap({S} * softmax_scale, SOFTCAP) * LOG2E`")


def _mask_before_max(k: KernelInfo, after: list[Flat], mask: Flat, S: str) -> Iterator[Diagnostic]:
    for f in after:
        if f.index >= mask.index:
            return
        if any(S in names_in(c) for c in calls_in(f.stmt.value, "row_max")):
            yield diag("mask", mask.stmt, f"{S} is masked after its row maximum is taken ({line_of(f.stmt)}): "
                       "masked keys would still set the running max", f"move the mask above {line_of(f.stmt)}")
            return


# ---------------------------------------------------------------- online softmax
def rule_softmax(ctx: Context) -> Iterator[Diagnostic]:
    for k in ctx.kernels:
        for f, g in k.gemms():
            if f.stmt.op == "+=" and f.loops:
                yield from _rescaled(k, f)


def _running_max(body: list[Flat]) -> Flat | None:
    """`m_new = max(m, row_max(S))`: a max() one of whose arguments takes a row maximum."""
    for f in body:
        if isinstance(f.stmt, ast.Compute):
            for c in calls_in(f.stmt.value, "max"):
                if any(calls_in(a, "row_max") for a in c.args):
                    return f
    return None


def _rescaled(k: KernelInfo, pv: Flat) -> Iterator[Diagnostic]:
    loop = pv.loops[-1]
    body = [f for f in k.flat if inside(f, loop)]
    mx = _running_max(body)
    if mx is None:
        return
    acc, alpha = pv.stmt.dst, _alpha_name(k, body)
    scaled = [f for f in body if _scales_itself(f.stmt, acc)]
    if not scaled:
        yield diag("softmax", pv.stmt, f"the running max is updated ({line_of(mx.stmt)}: {mx.stmt.dst}) but {acc} is "
                   f"not rescaled in this loop: what it accumulated under the old max would be too large",
                   f"add `Compute {acc} = {acc} * {alpha}` before {line_of(pv.stmt)} ({alpha} = exp2(m_old - m_new))")
    elif scaled[0].index > pv.index:
        yield diag("softmax", scaled[0].stmt, f"{acc} is rescaled after this iteration's `{acc} += gemm(...)` "
                   f"({line_of(pv.stmt)}), so the new tile is scaled too", f"move it above {line_of(pv.stmt)}")
    yield from _row_sum_rescaled(body, mx, pv, alpha)


def _row_sum_rescaled(body: list[Flat], mx: Flat, pv: Flat, alpha: str) -> Iterator[Diagnostic]:
    sums = [f for f in body if isinstance(f.stmt, ast.Compute) and calls_in(f.stmt.value, "row_sum")]
    if not sums:
        yield diag("softmax", pv.stmt, "no row sum is accumulated in this loop (nothing to divide the output by)",
                   f"add `Compute l = l * {alpha} + row_sum(P)` after the exponentials")
        return
    s = sums[0].stmt
    if not _scales_itself(s, s.dst):
        yield diag("softmax", s, f"the row sum {s.dst} is not rescaled when the running max changes "
                   f"({line_of(mx.stmt)})", f"write `Compute {s.dst} = {s.dst} * {alpha} + "
                   f"{print_expr(calls_in(s.value, 'row_sum')[0])}`")


def _scales_itself(s, name: str) -> bool:
    """`x = x * a`, `x = a * x + ...`: the new x multiplies the old x."""
    if not isinstance(s, ast.Compute) or s.dst != name or s.op != "=":
        return False
    for n in ast.walk_expr(s.value):
        if isinstance(n, ast.BinOp) and n.op == "*" and ast.Name(name) in (n.left, n.right):
            return True
    return False


def _alpha_name(k: KernelInfo, body: list[Flat]) -> str:
    """The rescale factor's name as the program spells it (for the fix text): the first vector
    assigned from exp2(...), as in `alpha = exp2(m - m_new)`."""
    for f in body:
        s = f.stmt
        buf = k.buffers.get(s.dst) if isinstance(s, ast.Compute) else None
        if buf is not None and len(buf.shape) == 1 and calls_in(s.value, "exp2"):
            return s.dst
    return "alpha"


# ---------------------------------------------------------------- reshape (the P operand)
def rule_reshape(ctx: Context) -> Iterator[Diagnostic]:
    for k in ctx.kernels:
        for f, g in k.gemms():
            yield from _gemm_operands(ctx, k, f.stmt, g)
        for f in k.statements(ast.Reshape):
            yield from _reshape_stmt(ctx, k, f.stmt)


def _is_accumulator(ctx: Context, buf: ast.Allocate) -> bool:
    return ctx.dtype(buf.dtype) == "f32" or ast.option(buf.options, "layout") == "mma_c"


def _gemm_operands(ctx: Context, k: KernelInfo, s: ast.Compute, g: ast.Call) -> Iterator[Diagnostic]:
    for i, arg in enumerate(g.args[:2]):
        name, _ = operand_name(arg)
        buf = k.buffers.get(name) if name else None
        if buf is None or buf.level != "register":
            continue
        layout = ast.option(buf.options, "layout")
        want = "mma_a" if i == 0 else "mma_b"
        if _is_accumulator(ctx, buf):
            yield _accumulator_operand(k, s, buf, i)
        elif layout is not None and layout != want:
            yield diag("reshape", s, f"gemm operand {name} has layout={layout}; as the "
                       f"{'A' if i == 0 else 'B'} operand it needs layout={want}",
                       f"Allocate {name} with layout={want}")


def _accumulator_operand(k: KernelInfo, s, buf: ast.Allocate, i: int) -> Diagnostic:
    layout = ast.option(buf.options, "layout") or "mma_c"
    shape = ", ".join(print_expr(d) for d in buf.shape)
    new = "P" if "P" not in k.buffers or k.buffers["P"].dtype != "f32" else f"{buf.name}_a"
    role = "an A" if i == 0 else "a B"
    return diag("reshape", s, f"gemm operand {buf.name} is an accumulator (layout={layout}, {buf.dtype}); the "
                f"second GEMM needs {role} operand: add `Reshape {new} <- {buf.name}` with "
                f"`Allocate {new} : register DTYPE [{shape}] with layout={'mma_a' if i == 0 else 'mma_b'}`",
                f"before {line_of(s)} write `Reshape {new} <- {buf.name}` and use {new} in the gemm")


def _reshape_stmt(ctx: Context, k: KernelInfo, r: ast.Reshape) -> Iterator[Diagnostic]:
    src, dst = k.buffers.get(r.src), k.buffers.get(r.dst)
    if src is not None and (src.level != "register" or not _is_accumulator(ctx, src)):
        yield diag("reshape", r, f"Reshape reads {r.src}, which is {src.level} {src.dtype}; Reshape re-lays an "
                   "accumulator (register f32, layout=mma_c)", "Reshape the f32 score tile (e.g. S) instead")
    if dst is not None and (dst.level != "register" or ctx.dtype(dst.dtype) == "f32"):
        yield diag("reshape", r, f"Reshape writes {r.dst}, which is {dst.level} {dst.dtype}; the destination is "
                   "an MMA operand", f"Allocate {r.dst} : register DTYPE [...] with layout=mma_a")


# ---------------------------------------------------------------- normalisation before the output
def rule_normalize(ctx: Context) -> Iterator[Diagnostic]:
    for k in ctx.kernels:
        yield from _normalize_kernel(k)


def _normalize_kernel(k: KernelInfo) -> Iterator[Diagnostic]:
    row_sums = {f.stmt.dst for f in k.statements(ast.Compute) if calls_in(f.stmt.value, "row_sum")}
    unnormalized: dict[str, Flat] = {}  # buffer -> the gemm that accumulated into it
    for f in k.flat:
        s = f.stmt
        if gemm_of(s) is not None and s.op == "+=":
            unnormalized[s.dst] = f
        elif isinstance(s, ast.Compute):
            yield from _track(s, f, unnormalized, row_sums)
        elif isinstance(s, ast.Reshape) and s.src in unnormalized:
            unnormalized[s.dst] = unnormalized[s.src]
        elif isinstance(s, ast.Copy):
            yield from _output_copy(s, unnormalized, row_sums)


def _track(s: ast.Compute, f: Flat, unnormalized: dict, row_sums: set) -> Iterator[Diagnostic]:
    sources = [n for n in names_in(s.value) if n in unnormalized]
    if not sources:
        unnormalized.pop(s.dst, None)
        return
    divs = [n for n in ast.walk_expr(s.value) if isinstance(n, ast.BinOp) and n.op == "/"
            and names_in(n.left) & set(sources)]
    if not divs:
        unnormalized[s.dst] = unnormalized[sources[0]]
        return
    unnormalized.pop(s.dst, None)
    if row_sums and not any(names_in(d.right) & row_sums for d in divs):
        acc, l = sources[0], sorted(row_sums)[0]
        yield diag("normalize", s, f"{acc} is divided by `{print_expr(divs[0].right)}`, not by the row sum {l}",
                   f"write `Compute {acc} = {acc} / nonzero({l})`")


def _output_copy(s: ast.Copy, unnormalized: dict, row_sums: set) -> Iterator[Diagnostic]:
    dst = s.dst.base if isinstance(s.dst, ast.Indexed) else s.dst.id
    src = s.src.id if isinstance(s.src, ast.Name) else None
    if dst in OUTPUTS and src in unnormalized:
        l = sorted(row_sums)[0] if row_sums else "l"
        yield diag("normalize", s, f"{dst} is written from {src}, accumulated by the gemm on "
                   f"{line_of(unnormalized[src].stmt)} but never divided by the row sum {l}",
                   f"add `Compute {src} = {src} / nonzero({l})` before {line_of(s)}")


# ---------------------------------------------------------------- GQA: the KV head
def rule_kv_head(ctx: Context) -> Iterator[Diagnostic]:
    for k in ctx.kernels:
        q_heads = {n for n, ext in k.grid.items() if ext == ast.Name("heads_q")}
        q_heads |= {n for n, v in k.lets.items() if isinstance(v, ast.Name) and v.id in q_heads}
        if not q_heads:
            continue
        for f in k.statements(ast.Copy):
            for ref in (f.stmt.src, f.stmt.dst):
                if isinstance(ref, ast.Indexed) and ref.base in ("K", "V") and len(ref.indices) >= 2:
                    yield from _kv_index(k, ref, q_heads)


def _kv_index(k: KernelInfo, ref: ast.Indexed, q_heads: set[str]) -> Iterator[Diagnostic]:
    head = ref.indices[1]
    expr = _inline(k, head.lo if isinstance(head, ast.Slice) else head)
    if _bad_head(expr, q_heads):
        q = sorted(q_heads)[0]
        yield diag("kv-head", head if getattr(head, "span", None) else ref,
                   f"K/V must be indexed by the KV head {q} / GROUP: `{ref.base}[..., {print_expr(head)}, ...]` "
                   f"is `{print_expr(expr)}`", f"add `let kv_head = {q} / GROUP` and index "
                   f"{ref.base}[b, kv_head, ...] (GROUP query heads share one KV head)")


def _bad_head(e, q_heads: set[str]) -> bool:
    """A `%` on the head, or a query head that is not divided by GROUP."""
    if isinstance(e, ast.BinOp) and e.op == "%":
        return True
    if isinstance(e, ast.BinOp) and e.op == "/" and e.right == ast.Name("GROUP"):
        return False  # q_head / GROUP (or (q_head + x) / GROUP): the KV head
    if isinstance(e, ast.Name):
        return e.id in q_heads
    return any(_bad_head(c, q_heads) for c in _children(e))


def _children(e):
    if isinstance(e, ast.BinOp):
        return (e.left, e.right)
    if isinstance(e, (ast.Neg, ast.Transpose)):
        return (e.operand,)
    if isinstance(e, ast.Call):
        return tuple(e.args) + tuple(v for _, v in e.kwargs)
    return ()


def _inline(k: KernelInfo, e, depth: int = 0):
    """Substitute lets so that `kv_head` reads as `q_head / GROUP`."""
    if depth > 20:
        return e
    if isinstance(e, ast.Name) and e.id in k.lets:
        return _inline(k, k.lets[e.id], depth + 1)
    if isinstance(e, ast.BinOp):
        return ast.BinOp(e.op, _inline(k, e.left, depth + 1), _inline(k, e.right, depth + 1))
    if isinstance(e, ast.Neg):
        return ast.Neg(_inline(k, e.operand, depth + 1))
    if isinstance(e, ast.Call):
        return ast.Call(e.func, tuple(_inline(k, a, depth + 1) for a in e.args), e.kwargs)
    return e
