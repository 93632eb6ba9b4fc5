"""Parser: every construct reaches the AST; malformed text gives line:column errors with a fix."""

import pytest

from qimeng_serve.errors import Span, TLSyntaxError
from qimeng_serve.tl import ast
from qimeng_serve.tl.parser import parse_tl
from qimeng_serve.tl.printer import print_tl
from tests.conftest import golden_paths

MINIMAL = """\
program tiny
op dense_prefill
targets sm_80
params {
  BLOCK_M = 64
  BLOCK_N = max(16, GROUP * 8)  # an expression over spec constants
}
params when D = 256 {
  BLOCK_M = 32
}
kernel attn grid (m : cdiv(max_seq_q, BLOCK_M), h : heads_q, b : batch) {
  let q0 = m * BLOCK_M
  Allocate acc : register f32 [BLOCK_M, D] with layout=mma_c, init=0
  Copy acc <- Q[b, h, q0 : q0 + BLOCK_M] with via=ldg
  Loop n in 0 .. cdiv(seqlen_k[b], BLOCK_N) with pipeline=2 {
    Compute acc += gemm(acc, acc.T) with mma=m16n8k16
    Compute acc = mask(acc, kv_len=seqlen_k[b], causal=CAUSAL, offset=-1 - -2)
  }
  Reshape acc <- acc
}
"""


def test_minimal_program_structure():
    p = parse_tl(MINIMAL)
    assert (p.name, p.op, p.targets) == ("tiny", "dense_prefill", ("sm_80",))
    assert not p.is_sketch
    (kernel,) = p.kernels
    assert [g.name for g in kernel.grid] == ["m", "h", "b"]
    kinds = [type(s).__name__ for s in kernel.body]
    assert kinds == ["Let", "Allocate", "Copy", "Loop", "Reshape"]
    alloc = kernel.body[1]
    assert (alloc.level, alloc.dtype, ast.option(alloc.options, "init")) == ("register", "f32", "0")
    loop = kernel.body[3]
    assert ast.option(loop.options, "pipeline") == "2"
    gemm = loop.body[0]
    assert gemm.op == "+=" and isinstance(gemm.value, ast.Call) and isinstance(gemm.value.args[1], ast.Transpose)
    mask = loop.body[1].value
    assert [k for k, _ in mask.kwargs] == ["kv_len", "causal", "offset"]


def test_params_guard_overrides_only_when_constant_matches():
    p = parse_tl(MINIMAL)
    assert p.param_exprs({"D": 128})["BLOCK_M"].value == ast.Num(64)
    assert p.param_exprs({"D": 256})["BLOCK_M"].value == ast.Num(32)
    assert isinstance(p.param_exprs({"D": 256})["BLOCK_N"].value, ast.Call)


def test_params_guard_with_and_needs_every_condition_and_prints_back():
    text = MINIMAL + "\nparams when D = 64 and CAUSAL = 0 {\n  BLOCK_M = 16\n}\n"
    p = parse_tl(text)
    assert p.params_blocks[-1].guard == (("D", 64), ("CAUSAL", 0))
    assert p.param_exprs({"D": 64, "CAUSAL": 0})["BLOCK_M"].value == ast.Num(16)
    assert p.param_exprs({"D": 64, "CAUSAL": 1})["BLOCK_M"].value == ast.Num(64)
    assert p.param_exprs({"D": 128, "CAUSAL": 0})["BLOCK_M"].value == ast.Num(64)
    printed = print_tl(p)
    assert "params when D = 64 and CAUSAL = 0 {" in printed
    assert parse_tl(printed).params_blocks[-1].guard == (("D", 64), ("CAUSAL", 0))


def test_precedence_and_associativity():
    p = parse_tl("kernel k grid (i : 1) { let x = 1 - 2 - 3 * 4 / 5 % 6 }")
    value = p.kernels[0].body[0].value
    # ((1 - 2) - (((3 * 4) / 5) % 6))
    assert value.op == "-" and value.left == ast.BinOp("-", ast.Num(1), ast.Num(2))
    assert value.right.op == "%" and value.right.left.op == "/"


def test_spans_point_at_statements():
    p = parse_tl(MINIMAL)
    loop = p.kernels[0].body[3]
    assert loop.span == Span(15, 3)
    assert loop.body[0].span == Span(16, 5)


def test_comments_are_kept_and_inline_comments_stay_inline():
    p = parse_tl(MINIMAL)
    block = p.params_blocks[0]
    assert isinstance(block.items[2], ast.Comment) and block.items[2].inline
    text = print_tl(p)
    assert "BLOCK_N = max(16, GROUP * 8)  # an expression over spec constants" in text


@pytest.mark.parametrize(
    "source, line, col, needle",
    [
        ("kernel k grid (i : 1) {\n  Copy sQ <-\n}\n", 3, 1, "unexpected '}'"),
        ("kernel k grid (i : 1) {\n  Allocate x : global f16 [4]\n}\n", 2, 16, "unknown memory level 'global'"),
        ("kernel k grid (i : 1) {\n  let x = 3 $ 4\n}\n", 2, 13, "unexpected character '$'"),
        ("kernel k grid (i : 1) {\n  Loop n in 0 .. 4 {\n", 2, 21, "unexpected end of file"),
        ("kernel k grid (i : 1) {\n  Compute x == 1\n}\n", 2, 14, "unexpected"),
    ],
)
def test_syntax_errors_name_line_and_column(source, line, col, needle):
    with pytest.raises(TLSyntaxError) as info:
        parse_tl(source, source_name="bad.tl")
    exc = info.value
    assert needle in exc.message
    assert exc.span == Span(line, col)
    assert exc.fix
    rendered = exc.render(source)
    assert rendered.startswith(f"bad.tl:{line}:{col}: error:")
    assert rendered.splitlines()[2].index("^") == 4 + col - 1


def test_sketch_form_has_no_params():
    sketch = "op dense_prefill\nkernel k grid (i : 1) { Allocate a : register f32 [BLOCK_M] }"
    assert parse_tl(sketch).is_sketch


@pytest.mark.parametrize("path", golden_paths(), ids=lambda p: p.name)
def test_golden_programs_parse(path):
    p = parse_tl(path.read_text(), source_name=str(path))
    assert p.op in ("dense_prefill", "paged_prefill", "paged_decode")
    assert p.kernels and not p.is_sketch
