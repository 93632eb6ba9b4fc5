"""The TL interpreter: a program's sequential meaning (docs/tl.md §1-6), executed on the CPU with torch.

Every kernel runs in file order, one CTA per grid point, its body top to bottom; pipelining and
layouts change nothing here. Uninitialised buffers hold NaN, so a read before a write reaches the
output. With emulate_dtypes, every store into an f16/bf16/e4m3/DTYPE buffer (and into O) rounds to
that dtype, as the GPU would; otherwise all values stay in float32 (float64 for a float64 problem)
and an exact program matches the reference to rounding.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from qimeng_serve.errors import QimengError, TLRuntimeError
from qimeng_serve.spec import AttentionSpec
from qimeng_serve.tl import ast
from qimeng_serve.tl.functions import call
from qimeng_serve.tl.problem import Problem
from qimeng_serve.tl.roles import run_roles
from qimeng_serve.tl.values import TORCH_DTYPES, EvalError, Tile, Value, binop, describe, negate, round_to
from qimeng_serve.tl.views import GlobalTensor, make_globals, outputs

ARRAYS = ("seqlen_q", "seqlen_k")


@dataclass
class Buffer:
    name: str
    dtype: str  # f32 | f16 | bf16 | e4m3 (DTYPE resolved)
    shape: tuple[int, ...]
    value: Tile


@dataclass
class _Machine:
    """What every CTA of a run shares."""

    spec: AttentionSpec
    problem: Problem
    emulate: bool
    compute: torch.dtype
    globals: dict[str, GlobalTensor]
    source_name: str


# ---------------------------------------------------------------- public API
def run_tl(program: ast.Program, spec: AttentionSpec, problem: Problem, *, emulate_dtypes: bool = False,
           source_name: str = "<tl>") -> list[torch.Tensor]:
    """Execute program on problem; per sequence, O as [Hq, Lq, D]."""
    # Tiles are tiny: intra-op threads only add synchronisation, which costs 5x and more on a busy
    # machine. One thread while the interpreter runs; the caller's setting is restored.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(program, spec, problem, emulate_dtypes, source_name)
    finally:
        torch.set_num_threads(threads)


def _run(program, spec, problem, emulate_dtypes, source_name) -> list[torch.Tensor]:
    _check_inputs(program, spec, problem)
    names = {**spec.constants(), **problem.runtime_values()}
    names.update(resolve_params(program, spec, source_name=source_name))
    exact64 = problem.dtype == torch.float64 and not emulate_dtypes
    compute = torch.float64 if exact64 else torch.float32
    out_dtype = problem.dtype if emulate_dtypes else compute
    machine = _Machine(spec, problem, emulate_dtypes, compute, {}, source_name)
    splits = _num_splits(program, machine, names)
    machine.globals = make_globals(problem, splits, names["QLEN"], out_dtype, compute)
    for kernel in program.kernels:
        _run_kernel(kernel, machine, names)
    return outputs(problem, machine.globals["O"])


def resolve_params(program: ast.Program, spec: AttentionSpec, *, source_name: str = "<tl>") -> dict[str, Value]:
    """The program's params for this spec, evaluated in order (STAGES defaults to 1).

    Params are fixed per compiled kernel: their expressions see the spec constants and earlier
    params, never runtime values such as batch or seqlen_q."""
    if program.is_sketch:
        raise TLRuntimeError("a sketch has no params: the interpreter needs tile sizes", None,
                             "add a `params { BLOCK_M = ... BLOCK_N = ... WARPS = ... }` block", source_name)
    scope = _CTA(None, spec.constants(), "params", source_name)
    out: dict[str, Value] = {"STAGES": 1}
    for name, param in program.param_exprs(spec.constants()).items():
        scope.stmt = param
        out[name] = scope.names[name] = scope.eval(param.value)
    return out


def max_rel_error(outs: list[torch.Tensor], refs: list[torch.Tensor]) -> float:
    """||out - ref|| / ||ref|| over all sequences (Frobenius, float64); inf when any output is NaN."""
    if len(outs) != len(refs) or any(o.shape != r.shape for o, r in zip(outs, refs)):
        raise QimengError("outputs and references differ in number or shape",
                          fix="compare run_tl(...) with reference_attention(...) of the same problem")
    diff = sum(float(((o.double() - r.double()) ** 2).sum()) for o, r in zip(outs, refs))
    norm = sum(float((r.double() ** 2).sum()) for r in refs)
    if diff != diff:  # NaN
        return float("inf")
    return (diff / norm) ** 0.5 if norm > 0 else diff ** 0.5


# ---------------------------------------------------------------- driver
def _check_inputs(program: ast.Program, spec: AttentionSpec, problem: Problem) -> None:
    if program.op != spec.op or problem.op != spec.op:
        raise QimengError(f"program op {program.op}, spec op {spec.op}, problem op {problem.op} differ",
                          fix="run a program on a spec and problem of its own op")
    if problem.heads_q != problem.heads_kv * spec.gqa_group or problem.head_dim != spec.head_dim:
        raise QimengError("the problem's heads or head size do not fit the spec",
                          fix="build the problem with make_problem(spec, ...)")


def _num_splits(program: ast.Program, machine: _Machine, names: dict) -> int:
    """The split-KV workspace's first extent (paged_decode): the extent of the grid dim named `split`."""
    for kernel in program.kernels:
        for dim in kernel.grid:
            if dim.name == "split":
                scope = _CTA(machine, names, f"kernel {kernel.name} grid", machine.source_name)
                scope.stmt = dim
                return scope.eval_int(dim.extent)
    return 1


def _run_kernel(kernel: ast.Kernel, machine: _Machine, names: dict) -> None:
    scope = _CTA(machine, names, f"kernel {kernel.name} grid", machine.source_name)
    extents = []
    for dim in kernel.grid:
        scope.stmt = dim
        extents.append(range(scope.eval_int(dim.extent)))
    for point in itertools.product(*extents):
        coords = dict(zip((d.name for d in kernel.grid), point))
        where = f"kernel {kernel.name} at " + ", ".join(f"{k}={v}" for k, v in coords.items())
        _CTA(machine, {**names, **coords}, where, machine.source_name).run(kernel.body)


# ---------------------------------------------------------------- one CTA
class _CTA:
    def __init__(self, machine: _Machine | None, names: dict, where: str, source_name: str) -> None:
        self.m = machine
        self.names = dict(names)
        self.buffers: dict[str, Buffer] = {}
        self.where = where
        self.source_name = source_name
        self.stmt = None
        self.alloc_options: dict[str, ast.Options] = {}  # stages= of shared rings (roles.py)

    def error(self, message: str, fix: str, node=None) -> TLRuntimeError:
        span = getattr(node, "span", None) or getattr(self.stmt, "span", None)
        return TLRuntimeError(f"{message} ({self.where})", span, fix, self.source_name)

    # ---- statements
    def run(self, stmts) -> None:
        stmts = [s for s in stmts if not isinstance(s, ast.Comment)]
        for i, s in enumerate(stmts):
            if isinstance(s, ast.Role):
                # the consecutive roles of a CTA run side by side (warp specialisation, roles.py)
                if i == 0 or not isinstance(stmts[i - 1], ast.Role):
                    group = list(itertools.takewhile(lambda x: isinstance(x, ast.Role), stmts[i:]))
                    run_roles(self, group)
                continue
            if isinstance(s, (ast.Wait, ast.Release)):
                raise self.error(f"{type(s).__name__} outside a consumer Role",
                                 "Wait and Release belong to `Role consumer { ... }`", s)
            self.stmt = s
            try:
                _EXEC[type(s)](self, s)
            except EvalError as err:
                raise self.error(err.message, err.fix) from None
            except (RuntimeError, IndexError, ValueError) as err:  # a torch failure still points at its statement
                raise self.error(f"{type(err).__name__}: {err}", "check the statement's shapes and indices") from err

    def _let(self, s: ast.Let) -> None:
        value = self.eval(s.value)
        if isinstance(value, Tile):
            raise EvalError(f"let {s.name} is a {describe(value)}", fix="let binds scalars; Allocate a buffer for tiles")
        self.names[s.name] = value

    def _allocate(self, s: ast.Allocate) -> None:
        if s.name in self.m.globals:
            raise EvalError(f"{s.name} is a global tensor", fix=f"never Allocate {s.name}: Copy views of it instead")
        dtype = self.m.spec.dtype if s.dtype == "DTYPE" else s.dtype
        if dtype not in TORCH_DTYPES:
            raise EvalError(f"unknown dtype '{s.dtype}'", fix="use f32, f16, bf16, e4m3 or DTYPE")
        shape = tuple(self.eval_int(d) for d in s.shape)
        if len(shape) not in (1, 2) or min(shape) < 1:
            raise EvalError(f"{s.name} has shape {list(shape)}", fix="buffers are [rows] vectors or [rows, cols] tiles")
        init = ast.option(s.options, "init")
        try:
            fill = float("nan") if init is None else float(init)
        except ValueError:
            raise EvalError(f"init={init} is not a number", fix="use init=0 or init=-inf") from None
        self.buffers[s.name] = Buffer(s.name, dtype, shape, Tile(torch.full(shape, fill, dtype=self.m.compute)))
        self.alloc_options[s.name] = s.options

    def _copy(self, s: ast.Copy) -> None:
        dst, src = self._ref(s.dst), self._ref(s.src)
        if isinstance(dst, Buffer) and isinstance(src, Buffer):
            self.store(dst, src.value, f"Copy {dst.name} <- {src.name}")
        elif isinstance(dst, Buffer):
            tensor, indices = src
            self.store(dst, tensor.read(indices, self.m.compute, dst.shape), f"Copy {dst.name}")
        elif isinstance(src, Buffer):
            tensor, indices = dst
            tensor.write(indices, src.value.data)
        else:
            raise EvalError("Copy between two global tensors", fix="stage the data through a shared or register buffer")

    def _compute(self, s: ast.Compute) -> None:
        dst = self.buffer(s.dst, s, "Compute")
        value = self.eval(s.value)
        if s.op == "+=":
            value = binop("+", dst.value, value)
        self.store(dst, value, f"Compute {s.dst}")

    def _reshape(self, s: ast.Reshape) -> None:
        dst, src = self.buffer(s.dst, s, "Reshape"), self.buffer(s.src, s, "Reshape")
        self.store(dst, src.value, f"Reshape {s.dst} <- {s.src}")

    def _loop(self, s: ast.Loop) -> None:
        lo, hi = self.eval_int(s.start), self.eval_int(s.stop)
        saved = self.names.get(s.var)
        steps = range(lo, hi)
        # schedule= and pipeline= only overlap copies with compute; order= changes the visiting order
        for n in reversed(steps) if ast.option(s.options, "order") == "reverse" else steps:
            self.names[s.var] = n
            self.run(s.body)
        self.stmt = s
        if saved is None:
            self.names.pop(s.var, None)
        else:
            self.names[s.var] = saved

    # ---- buffers and views
    def buffer(self, name: str, node, what: str) -> Buffer:
        if name not in self.buffers:
            raise self.error(f"{what}: '{name}' is not Allocated", f"add `Allocate {name} : register f32 [...]` before",
                             node)
        return self.buffers[name]

    def store(self, buf: Buffer, value: Value, what: str) -> None:
        """value into buf, converted to its dtype; metadata the value lacks is kept from buf."""
        if isinstance(value, Tile):
            if tuple(value.data.shape) != buf.shape:
                raise EvalError(f"{what}: the value is a {describe(value)}, {buf.name} is {list(buf.shape)}",
                                fix=f"make the shapes agree with {buf.name}'s Allocate")
            tile = value.with_data(value.data.to(self.m.compute))
        elif isinstance(value, (int, float)):
            tile = Tile(torch.full(buf.shape, float(value), dtype=self.m.compute))
        else:
            raise EvalError(f"{what}: {value!r} is not a number", fix="store numbers or tiles")
        if self.m.emulate:
            tile = tile.with_data(round_to(tile.data, buf.dtype))
        buf.value = tile.merged_meta(buf.value)

    def _ref(self, ref) -> Buffer | tuple[GlobalTensor, list]:
        """A Copy operand: a whole buffer, or a global tensor and its evaluated indices."""
        if isinstance(ref, ast.Name):
            if ref.id in self.m.globals:
                raise self.error(f"{ref.id} is a global tensor", f"copy a view of it: {ref.id}[b, head, lo : hi]", ref)
            return self.buffer(ref.id, ref, "Copy")
        if ref.base in self.buffers:
            raise self.error(f"{ref.base} is a buffer: buffers are copied whole", f"write `{ref.base}` without indices",
                             ref)
        if ref.base not in self.m.globals:
            known = ", ".join(self.m.globals)
            raise self.error(f"unknown tensor '{ref.base}'", f"views index the op's tensors: {known}", ref)
        return self.m.globals[ref.base], [self._index(i) for i in ref.indices]

    def _index(self, i) -> int | range:
        if isinstance(i, ast.Slice):
            return range(self.eval_int(i.lo), self.eval_int(i.hi))
        return self.eval_int(i)

    # ---- expressions
    def eval_int(self, e) -> int:
        v = self.eval(e)
        if not isinstance(v, int):
            raise self.error(f"expected an integer, got a {describe(v)}", "use integer expressions for sizes and indices",
                             e)
        return v

    def eval(self, e) -> Value:
        try:
            return _EVAL[type(e)](self, e)
        except EvalError as err:
            raise self.error(err.message, err.fix, e) from None

    def _name(self, e: ast.Name) -> Value:
        if e.id in self.names:
            return self.names[e.id]
        if e.id in self.buffers:
            return self.buffers[e.id].value
        if self.m is not None and e.id in self.m.globals:
            raise EvalError(f"{e.id} is a global tensor", fix=f"Copy a view of {e.id} into a buffer and use the buffer")
        if self.m is None:
            raise EvalError(f"unknown name '{e.id}' in params",
                            fix="params are expressions over spec constants (D, GROUP, QLEN, ...) and earlier params")
        raise EvalError(f"unknown name '{e.id}'",
                        fix="define it with let, Allocate, a Loop or the grid, or use a param / spec constant")

    def _indexed(self, e: ast.Indexed) -> int:
        if e.base not in ARRAYS:
            raise EvalError(f"'{e.base}[...]' in an expression",
                            fix="only seqlen_q[b] and seqlen_k[b] index in expressions; Copy views of tensors")
        if self.m is None:
            raise EvalError(f"{e.base} is a runtime value", fix="params may use spec constants only")
        if len(e.indices) != 1 or isinstance(e.indices[0], ast.Slice):
            raise EvalError(f"{e.base} takes one integer index", fix=f"write {e.base}[b]")
        b, lengths = self.eval_int(e.indices[0]), getattr(self.m.problem, e.base)
        if not 0 <= b < len(lengths):
            raise EvalError(f"{e.base}[{b}]: sequence out of range 0 .. {len(lengths) - 1}", fix="index by b < batch")
        return lengths[b]

    def _call(self, e: ast.Call) -> Value:
        args = [self.eval(a) for a in e.args]
        kwargs = {k: self.eval(v) for k, v in e.kwargs}
        return call(e.func, args, kwargs)

    def _transpose(self, e: ast.Transpose) -> Tile:
        v = self.eval(e.operand)
        if not isinstance(v, Tile):
            raise EvalError(f"`.T` of a {describe(v)}", fix="transpose a [rows, cols] buffer, e.g. sK.T")
        return v.transposed()


_EXEC = {ast.Let: _CTA._let, ast.Allocate: _CTA._allocate, ast.Copy: _CTA._copy, ast.Compute: _CTA._compute,
         ast.Reshape: _CTA._reshape, ast.Loop: _CTA._loop}
_EVAL = {
    ast.Num: lambda self, e: e.value,
    ast.Name: _CTA._name,
    ast.BinOp: lambda self, e: binop(e.op, self.eval(e.left), self.eval(e.right)),
    ast.Neg: lambda self, e: negate(self.eval(e.operand)),
    ast.Transpose: _CTA._transpose,
    ast.Call: _CTA._call,
    ast.Indexed: _CTA._indexed,
}
