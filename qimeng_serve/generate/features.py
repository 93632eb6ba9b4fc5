"""What the cost model reads from a TL program: any program, generated or hand-written.

The features come from the same places stage 2 takes them: the params in force for the spec
(`resolve_params`), the statement roles the lowering recognises (`plan_attention_kernel`), the
checker's register estimate, and the shared memory of the lowered launch. The KV loop's bounds are
compiled to a small Python function, so that the model can count the tiles each CTA really visits
(causal skipping, sliding windows, splits) for a workload without running the interpreter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from qimeng_serve.lower.emit import CudaSource, lower
from qimeng_serve.lower.plan import plan_attention_kernel
from qimeng_serve.spec import AttentionSpec
from qimeng_serve.targets import Target
from qimeng_serve.tl import ast
from qimeng_serve.tl.checker import register_estimate
from qimeng_serve.tl.interpreter import resolve_params
from qimeng_serve.tl.printer import print_expr

Bounds = Callable[[dict], tuple[int, int]]


@dataclass(frozen=True)
class KernelFeatures:
    """One FA2-style kernel (prefill `attn` or decode `split`) of a program."""

    name: str
    block_m: int
    block_n: int
    warps: int
    pairs: int  # (K, V) tile pairs in flight: 1 = FA2 ping-pong, 2 = pipeline=2
    schedule: str  # sequential | pingpong
    reverse: bool
    q_in_registers: bool
    copy_path: str  # via= of the K/V copies
    mma: str
    packed_heads: bool  # decode: the query heads of one KV head share a tile
    regs_estimate: int  # the checker's estimate (docs/tl.md §7), before any ptxas offset
    smem_bytes: int  # dynamic shared memory per CTA, from the lowered launch
    grid: tuple[str, ...]  # grid dimension names, x first
    bounds: Bounds  # names (grid point, runtime values) -> (n_start, n_end) of the KV loop
    bounds_key: tuple  # equal keys, equal bounds: lets them be evaluated once for many candidates


@dataclass(frozen=True)
class ProgramFeatures:
    op: str
    params: dict[str, int]
    kernel: KernelFeatures  # the attention kernel (decode: the split kernel)
    split_kv: int  # decode: keys per split; 0 otherwise


def program_features(program: ast.Program, target: Target, spec: AttentionSpec,
                     source: CudaSource | None = None) -> ProgramFeatures:
    """Features of a program that lowers for (target, spec); raises what `lower` raises otherwise."""
    source = source or lower(program, target, spec)
    params = {k: v for k, v in resolve_params(program, spec).items() if isinstance(v, int)}
    regs = register_estimate(program, target, spec)
    kernel = next(k for k in program.kernels if k.name != "combine")
    entry = next(e for e in source.entries if e.tl_kernel == kernel.name)
    plan = plan_attention_kernel(kernel)
    loop = plan.loop
    pairs = params.get(loop.pipeline, None) if loop.pipeline else 1
    pairs = int(loop.pipeline) if pairs is None else pairs
    heads = plan.q_view.indices[1]
    feats = KernelFeatures(
        name=kernel.name,
        block_m=params["BLOCK_M"], block_n=params["BLOCK_N"], warps=params["WARPS"],
        pairs=max(1, pairs), schedule=loop.schedule, reverse=loop.reverse,
        q_in_registers=loop.q_operand is not None and loop.q_operand == plan.q_regs,
        copy_path=ast.option(loop.roles["copy_k"].options, "via") or "",
        mma=ast.option(loop.roles["gemm_qk"].options, "mma") or "",
        packed_heads=isinstance(heads, ast.Slice),
        regs_estimate=regs[kernel.name],
        smem_bytes=entry.smem_bytes,
        grid=tuple(g.name for g in kernel.grid),
        bounds=compile_bounds(plan.lets, loop.start, loop.stop, {**spec.constants(), **params}),
        bounds_key=(tuple(f"{let.name}={print_expr(let.value)}" for let in plan.lets), print_expr(loop.start),
                    print_expr(loop.stop), tuple(sorted((k, v) for k, v in {**spec.constants(), **params}.items()
                                                        if k not in ("WARPS", "STAGES")))),
    )
    return ProgramFeatures(spec.op, params, feats, params.get("SPLIT_KV", 0))


# ---------------------------------------------------------------- loop bounds
def compile_bounds(lets: list[ast.Let], start: ast.Expr, stop: ast.Expr, constants: dict) -> Bounds:
    """A Python function of the names a kernel sees (grid point, runtime values) returning the KV
    loop's (start, stop). TL integer expressions map one to one onto Python's (`/` is floor division),
    so the generated code is a line per let; it is compiled once per program and called per CTA."""
    body = [f"    v[{let.name!r}] = {_py(let.value)}" for let in lets]
    source = "def bounds(v):\n" + "\n".join(body) + f"\n    return ({_py(start)}, {_py(stop)})\n"
    scope = {"__builtins__": {}, "min": min, "max": max, "_cdiv": lambda a, b: -(-a // b)}
    exec(compile(source, "<tl bounds>", "exec"), scope)  # noqa: S102 - code built from a parsed TL syntax tree
    inner = scope["bounds"]
    fixed = {k: v for k, v in constants.items() if isinstance(v, (int, float))}

    def bounds(names: dict) -> tuple[int, int]:
        return inner({**fixed, **names})

    return bounds


_BINOP = {"+": "+", "-": "-", "*": "*", "/": "//", "%": "%"}


def _py(e: ast.Expr) -> str:
    if isinstance(e, ast.Num):
        return repr(e.value)
    if isinstance(e, ast.Name):
        return f"v[{e.id!r}]"
    if isinstance(e, ast.BinOp):
        return f"({_py(e.left)} {_BINOP[e.op]} {_py(e.right)})"
    if isinstance(e, ast.Neg):
        return f"(-{_py(e.operand)})"
    if isinstance(e, ast.Indexed) and len(e.indices) == 1 and not isinstance(e.indices[0], ast.Slice):
        return f"v[{e.base!r}][{_py(e.indices[0])}]"
    if isinstance(e, ast.Call) and e.func in ("min", "max", "cdiv") and len(e.args) == 2:
        fn = "_cdiv" if e.func == "cdiv" else e.func
        return f"{fn}({_py(e.args[0])}, {_py(e.args[1])})"
    if isinstance(e, ast.Call) and e.func == "select" and len(e.args) == 3:
        return f"({_py(e.args[1])} if {_py(e.args[0])} else {_py(e.args[2])})"
    raise ValueError(f"not an integer TL expression the cost model evaluates: {e!r}")
