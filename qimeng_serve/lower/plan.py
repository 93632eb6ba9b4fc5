"""Recognise the statements of a TL kernel: which statement plays which role in an FA2-style kernel.

The lowering maps each role to one building block of kernels_src/include/qimeng. A statement the
lowering does not know, or a missing or misplaced role, is a LoweringError that names the line and
says what stage 2 accepts, so a generator (planner or LLM) can repair the program.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qimeng_serve.lower.cexpr import LoweringError
from qimeng_serve.tl import ast
from qimeng_serve.tl.printer import print_expr

# Scale lines the building blocks implement (softmax_scale and LOG2E folded into exp2).
SCALE_FORMS = {
    "softcap(S * softmax_scale, SOFTCAP) * LOG2E": True,
    "S * softmax_scale * LOG2E": False,
    "S * (softmax_scale * LOG2E)": False,
}
ROLE_ORDER = ("copy_k", "copy_v", "gemm_qk", "scale", "mask", "m_new", "alpha", "exp", "l_update",
              "rescale", "m_update", "reshape", "gemm_pv")
# (earlier, later): data dependences the emitted FA2 sequence relies on
ROLE_DEPENDENCES = [
    ("copy_k", "gemm_qk"), ("copy_v", "gemm_pv"), ("gemm_qk", "scale"), ("scale", "mask"), ("gemm_qk", "mask"),
    ("mask", "m_new"), ("m_new", "alpha"), ("m_new", "exp"), ("alpha", "l_update"), ("exp", "l_update"),
    ("alpha", "rescale"), ("alpha", "m_update"), ("exp", "m_update"), ("exp", "reshape"), ("reshape", "gemm_pv"),
    ("rescale", "gemm_pv"),
]


@dataclass
class View:
    """A global view `T[i0, i1, i2(, i3)]` split into its index expressions."""

    tensor: str
    indices: tuple
    span: object


@dataclass
class LoopPlan:
    var: str
    start: ast.Expr
    stop: ast.Expr
    reverse: bool
    schedule: str
    pipeline: str | None  # `pipeline=` as written (a number or a param name)
    roles: dict[str, ast.Stmt]
    k_view: View
    v_view: View
    mask: ast.Call
    softcap: bool
    q_operand: str  # the buffer gemm_qk reads Q from
    span: object


@dataclass
class KernelPlan:
    kernel: ast.Kernel
    lets: list[ast.Let]
    buffers: dict[str, ast.Allocate]
    q_view: View | None = None
    q_shared: str | None = None
    q_regs: str | None = None
    q_copies: list = field(default_factory=list)  # the Copy statements that bring Q in
    loop: LoopPlan | None = None
    out_views: dict[str, View] = field(default_factory=dict)  # O / O_part / LSE -> view
    normalized: bool = False
    lse_written: bool = False


def _view(ref, span) -> View | None:
    if isinstance(ref, ast.Indexed):
        return View(ref.base, ref.indices, span)
    return None


def _refuse(node, message: str, fix: str) -> LoweringError:
    return LoweringError(message, getattr(node, "span", None), fix=fix)


def plan_attention_kernel(kernel: ast.Kernel) -> KernelPlan:
    """Roles of an FA2-style kernel (prefill `attn` or decode `split`)."""
    plan = KernelPlan(kernel, [], {})
    for s in kernel.body:
        if isinstance(s, ast.Comment):
            continue
        if isinstance(s, ast.Let):
            if plan.loop is not None:
                raise _refuse(s, "a let after the KV loop", "compute every let before the loop")
            plan.lets.append(s)
        elif isinstance(s, ast.Allocate):
            plan.buffers[s.name] = s
        elif isinstance(s, ast.Copy):
            _plan_copy(plan, s)
        elif isinstance(s, ast.Loop):
            if plan.loop is not None:
                raise _refuse(s, "a second loop in the kernel", "stage 2 lowers one KV loop per kernel")
            plan.loop = _plan_loop(plan, s)
        elif isinstance(s, ast.Compute):
            _plan_epilogue_compute(plan, s)
        else:
            raise _refuse(s, f"{type(s).__name__} outside the KV loop", "Reshape belongs inside the KV loop")
    _require(plan)
    return plan


def _plan_copy(plan: KernelPlan, s: ast.Copy) -> None:
    src, dst = _view(s.src, s.span), _view(s.dst, s.span)
    if src is not None and src.tensor == "Q":
        if plan.q_view is not None:
            raise _refuse(s, "Q is copied twice", "copy the Q tile once, before the loop")
        plan.q_view, plan.q_shared = src, s.dst.id
        plan.q_copies.append(s)
    elif dst is not None and dst.tensor in ("O", "O_part", "LSE"):
        if plan.loop is None:
            raise _refuse(s, f"{dst.tensor} is written before the KV loop", "store after the loop")
        plan.out_views[dst.tensor] = dst
    elif isinstance(s.src, ast.Name) and s.src.id == plan.q_shared and isinstance(s.dst, ast.Name):
        plan.q_regs = s.dst.id
        plan.q_copies.append(s)
    else:
        raise _refuse(s, f"this Copy has no role in an FA2 kernel: {print_expr(s.dst)} <- {print_expr(s.src)}",
                      "copy Q into shared memory (and optionally on to registers) before the loop, K and V "
                      "tiles inside it, and the result to O after it")


def _plan_epilogue_compute(plan: KernelPlan, s: ast.Compute) -> None:
    text = print_expr(s.value)
    if plan.loop is None:
        raise _refuse(s, "a Compute before the KV loop", "move it into the loop or after it")
    if s.op == "=" and isinstance(s.value, ast.BinOp) and s.value.op == "/" and text.startswith(f"{s.dst} / nonzero("):
        plan.normalized = True
    elif s.op == "=" and isinstance(s.value, ast.BinOp) and s.value.op == "+" and "log2(" in text:
        plan.lse_written = True
    else:
        raise _refuse(s, f"after the KV loop the lowering knows `acc = acc / nonzero(l)` and `lse = m + log2(l)`, "
                      f"not `{s.dst} {s.op} {text}`", "normalise the accumulator by the row sum, then store")


def _is_vector(e, buffers: dict[str, ast.Allocate]) -> bool:
    return isinstance(e, ast.Name) and e.id in buffers and len(buffers[e.id].shape) == 1


def _loop_role(s, buffers: dict[str, ast.Allocate]) -> str | None:
    """The role of one statement of the KV loop, from its shape."""
    if isinstance(s, ast.Copy) and isinstance(s.src, ast.Indexed) and s.src.base in ("K", "V"):
        return "copy_k" if s.src.base == "K" else "copy_v"
    if isinstance(s, ast.Reshape):
        return "reshape"
    if not isinstance(s, ast.Compute):
        return None
    v, text = s.value, print_expr(s.value)
    if isinstance(v, ast.Call) and v.func == "gemm":
        return "gemm_pv" if s.op == "+=" else "gemm_qk"
    if isinstance(v, ast.Call) and v.func == "mask":
        return "mask"
    if text.replace(s.dst, "S", 1) in SCALE_FORMS or text in SCALE_FORMS:
        return "scale"
    if isinstance(v, ast.Call) and v.func == "max" and "row_max(" in text:
        return "m_new"
    if isinstance(v, ast.Call) and v.func == "exp2" and "finite(" in text:
        diff = v.args[0]
        return "alpha" if isinstance(diff, ast.BinOp) and _is_vector(diff.left, buffers) else "exp"
    if "row_sum(" in text:
        return "l_update"
    if (isinstance(v, ast.BinOp) and v.op == "*" and isinstance(v.left, ast.Name) and v.left.id == s.dst
            and _is_vector(v.right, buffers)):
        return "rescale"
    if isinstance(v, ast.Name):
        return "m_update"
    return None


def _plan_loop(plan: KernelPlan, loop: ast.Loop) -> LoopPlan:
    roles: dict[str, ast.Stmt] = {}
    for s in loop.body:
        if isinstance(s, ast.Comment):
            continue
        role = _loop_role(s, plan.buffers)
        if role is None:
            raise _refuse(s, "this statement has no role in the FA2 loop the lowering knows",
                          f"the loop holds, in dependence order: {', '.join(ROLE_ORDER)} (docs/tl.md §8)")
        if role in roles:
            raise _refuse(s, f"a second `{role}` statement in the KV loop (first at line {roles[role].span.line})",
                          "keep one statement per role")
        roles[role] = s
    optional = {"scale"}
    missing = [r for r in ROLE_ORDER if r not in roles and r not in optional]
    if missing:
        raise _refuse(loop, f"the KV loop lacks {', '.join(missing)}", "write the loop as in docs/tl.md §8")
    order = {id(s): i for i, s in enumerate(loop.body)}
    for early, late in ROLE_DEPENDENCES:
        if early in roles and late in roles and order[id(roles[early])] > order[id(roles[late])]:
            raise _refuse(roles[late], f"`{late}` comes before `{early}` (line {roles[early].span.line}) it depends on",
                          f"move it after line {roles[early].span.line}")
    scale = roles.get("scale")
    softcap = bool(scale is not None and SCALE_FORMS.get(print_expr(scale.value).replace(scale.dst, "S", 1), False))
    if scale is None:
        raise _refuse(loop, "the KV loop never scales the scores by softmax_scale * LOG2E",
                      "add `Compute S = softcap(S * softmax_scale, SOFTCAP) * LOG2E` after the first gemm")
    gemm = roles["gemm_qk"].value
    q_operand = gemm.args[0].id if isinstance(gemm.args[0], ast.Name) else None
    return LoopPlan(
        var=loop.var, start=loop.start, stop=loop.stop,
        reverse=ast.option(loop.options, "order") == "reverse",
        schedule=ast.option(loop.options, "schedule") or "sequential",
        pipeline=ast.option(loop.options, "pipeline"),
        roles=roles, k_view=_view(roles["copy_k"].src, roles["copy_k"].span),
        v_view=_view(roles["copy_v"].src, roles["copy_v"].span), mask=roles["mask"].value,
        softcap=softcap, q_operand=q_operand, span=loop.span,
    )


def _require(plan: KernelPlan) -> None:
    k = plan.kernel
    if plan.q_view is None:
        raise _refuse(k, f"kernel {k.name} never copies Q", "add `Copy sQ <- Q[...]` before the loop")
    if plan.loop is None:
        raise _refuse(k, f"kernel {k.name} has no KV loop", "add the Loop over KV tiles")
    if not plan.normalized:
        raise _refuse(k, f"kernel {k.name} never divides the accumulator by the row sum",
                      "add `Compute acc = acc / nonzero(l)` after the loop")
    if "O" not in plan.out_views and "O_part" not in plan.out_views:
        raise _refuse(k, f"kernel {k.name} stores no output", "add `Copy O[...] <- acc` after the loop")
