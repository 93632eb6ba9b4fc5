"""Interpreter semantics on small hand-written programs: views, predication, metadata, dtypes, errors.

The golden programs are run against the reference in test_golden_programs_run.py.
"""

import math

import pytest
import torch

from qimeng_serve.errors import QimengError, TLRuntimeError
from qimeng_serve.spec import AttentionSpec
from qimeng_serve.tl import functions as F
from qimeng_serve.tl.values import EvalError
from qimeng_serve.tl.interpreter import max_rel_error, resolve_params, run_tl
from qimeng_serve.tl.parser import parse_tl
from qimeng_serve.tl.problem import Problem, make_problem
from qimeng_serve.tl.reference import reference_attention
from qimeng_serve.tl.values import Tile
from qimeng_serve.tl.views import make_globals

HEADER = "program t\nop {op}\ntargets sm_80\nparams {{\n  BLOCK_M = 16\n  BLOCK_N = 16\n  WARPS = 1\n}}\n"


def program(body: str, op: str = "dense_prefill", grid: str = "m : cdiv(max_seq_q, BLOCK_M), h : heads_q, b : batch"):
    text = HEADER.format(op=op) + f"kernel k grid ({grid}) {{\n{body}}}\n"
    return parse_tl(text), text


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def problem(op="dense_prefill", group=1, heads_kv=2, lq=(5, 20), lk=(5, 20), dtype=torch.float32, **spec_kw):
    spec = AttentionSpec(op, "f16", 64, gqa_group=group, **spec_kw)
    return spec, make_problem(spec, batch=len(lq), heads_kv=heads_kv, seqlen_q=list(lq), seqlen_k=list(lk), dtype=dtype)


COPY_ROWS = """\
  let r0 = m * BLOCK_M
  Allocate t : register {dtype} [BLOCK_M, D]
  Copy t <- {src}[b, {head}, r0 : r0 + BLOCK_M] with via=ldg
  Copy O[b, h, r0 : r0 + BLOCK_M] <- t with via=stg
"""


# ---------------------------------------------------------------- problems
def test_problem_shapes_and_seed():
    spec, p = problem(group=4, heads_kv=2, lq=(3, 7), lk=(9, 7))
    assert (p.heads_q, p.q[0].shape, p.k[0].shape, p.v[1].shape) == (8, (8, 3, 64), (2, 9, 64), (2, 7, 64))
    assert p.softmax_scale == pytest.approx(1 / 8)
    _, again = problem(group=4, heads_kv=2, lq=(3, 7), lk=(9, 7))
    assert torch.equal(p.q[1], again.q[1])
    other = make_problem(spec, batch=2, heads_kv=2, seqlen_q=[3, 7], seqlen_k=[9, 7], seed=1)
    assert not torch.equal(p.q[1], other.q[1])


def test_paged_problem_reads_through_a_shuffled_block_table():
    _, p = problem("paged_prefill", lq=(5, 20), lk=(40, 33))
    table, page = p.block_table, p.page_size
    used = table[table >= 0]
    assert used.unique().numel() == used.numel() == 3 + 3  # cdiv(40, 16) + cdiv(33, 16)
    assert p.k_cache.shape[0] > used.numel()  # spare blocks
    assert not torch.equal(used, torch.arange(used.numel()))  # shuffled
    assert not p.k_cache.is_contiguous()  # any strides
    for b, lk in enumerate(p.seqlen_k):
        j = torch.arange(lk)
        gathered = p.k_cache[table[b, j // page], :, j % page].transpose(0, 1)
        assert torch.equal(gathered, p.k[b])
    assert torch.equal(p.cu_seqlens_q, torch.tensor([0, 5, 25]))
    assert torch.equal(p.q_varlen[5:25].transpose(0, 1), p.q[1])


@pytest.mark.parametrize("kwargs, needle", [
    (dict(seqlen_q=[5], seqlen_k=[4]), "seqlen_k[0] = 4 < seqlen_q[0] = 5"),
    (dict(seqlen_q=[5, 5], seqlen_k=[5]), "seqlen_k"),
    (dict(seqlen_q=[0], seqlen_k=[3]), "needs a query token"),
])
def test_problem_validation(kwargs, needle):
    spec = AttentionSpec("dense_prefill")
    with pytest.raises(QimengError) as info:
        make_problem(spec, batch=len(kwargs["seqlen_q"]), heads_kv=1, **kwargs)
    assert needle in info.value.message and info.value.fix


def test_decode_problem_limits_query_tokens():
    spec = AttentionSpec("paged_decode", decode_query_len=2)
    with pytest.raises(QimengError, match="decode_query_len"):
        make_problem(spec, batch=1, heads_kv=1, seqlen_q=[3], seqlen_k=[10])


# ---------------------------------------------------------------- reference
def test_reference_matches_sdpa_when_lengths_agree():
    spec, p = problem(group=2, heads_kv=1, lq=(37,), lk=(37,), causal=True)
    ref = reference_attention(p, spec)[0]
    k = p.k[0].double().repeat_interleave(2, 0)
    v = p.v[0].double().repeat_interleave(2, 0)
    sdpa = torch.nn.functional.scaled_dot_product_attention(p.q[0].double(), k, v, is_causal=True)
    assert torch.allclose(ref, sdpa, atol=1e-12)


def test_reference_bottom_right_diagonal_window_and_softcap():
    spec, p = problem(heads_kv=1, lq=(3,), lk=(7,), causal=True, sliding_window=2, softcap=0.5)
    ref = reference_attention(p, spec)[0]
    q, k, v = p.q[0].double(), p.k[0].double(), p.v[0].double()
    for i in range(3):  # query i is key position i + 4: it sees keys i + 3 and i + 4
        s = 0.5 * torch.tanh(q[:, i:i + 1] @ k[:, i + 3:i + 5].transpose(1, 2) * p.softmax_scale / 0.5)
        assert torch.allclose(ref[:, i:i + 1], torch.softmax(s, -1) @ v[:, i + 3:i + 5], atol=1e-12)


def test_reference_row_that_sees_no_key_is_zero():
    spec, p = problem(heads_kv=1, lq=(4,), lk=(4,), causal=True)
    p.k, p.v, p.seqlen_k = [p.k[0][:, :2]], [p.v[0][:, :2]], [2]  # Lk < Lq: query 0 sits at key -2
    ref = reference_attention(p, spec)[0]
    assert torch.equal(ref[:, :2], torch.zeros_like(ref[:, :2])) and ref[:, 2:].abs().sum() > 0


# ---------------------------------------------------------------- views and predication
@pytest.mark.parametrize("op", ["dense_prefill", "paged_prefill"])
def test_copy_q_to_o_is_exact_and_predicated(op):
    prog, _ = program(COPY_ROWS.format(dtype="f32", src="Q", head="h"), op)
    # 16-row tiles: both sequences end mid-tile, and the tile past sequence 0's end overlaps sequence 1's
    # varlen rows after sequence 1 was written
    spec, p = problem(op, lq=(20, 5), lk=(20, 5))
    outs = run_tl(prog, spec, p)
    assert all(torch.equal(o, q) for o, q in zip(outs, p.q))


@pytest.mark.parametrize("op", ["dense_prefill", "paged_prefill"])
def test_k_view_goes_through_the_block_table(op):
    prog, _ = program(COPY_ROWS.format(dtype="f32", src="K", head="h"), op)
    spec, p = problem(op, lq=(33, 17), lk=(33, 17))
    outs = run_tl(prog, spec, p)
    assert all(torch.equal(o, k) for o, k in zip(outs, p.k))


def test_view_rows_are_head_major():
    spec, p = problem("paged_decode", group=4, heads_kv=1, lq=(2,), lk=(9,), decode_query_len=2)
    q = make_globals(p, 1, 2, torch.float32, torch.float32)["Q"]
    tile = q.read([0, range(1, 3), range(0, 3)], torch.float32, (8, 64))
    assert tile.row_head.tolist() == [1, 1, 1, 2, 2, 2, -1, -1]  # then two padding rows
    assert tile.row_pos.tolist() == [0, 1, 2, 0, 1, 2, -1, -1]
    assert torch.equal(tile.data[[0, 1, 3, 4]], p.q[0][1:3, :2].reshape(4, 64))
    assert tile.data[[2, 5, 6, 7]].abs().sum() == 0  # position 2 >= Lq and the padding read as zero


def test_uninitialised_buffer_shows_as_nan():
    prog, _ = program("  Allocate t : register f32 [BLOCK_M, D]\n  Copy O[b, h, m * BLOCK_M : m * BLOCK_M + BLOCK_M] <- t\n")
    spec, p = problem()
    outs = run_tl(prog, spec, p)
    assert torch.isnan(outs[0]).all()
    assert max_rel_error(outs, reference_attention(p, spec)) == math.inf


def test_loop_runs_lo_to_hi_and_its_variable_ends_with_it():
    body = ("  Allocate t : register f32 [BLOCK_M, D] with init=0\n"
            "  Loop n in 2 .. 5 {\n    Compute t += n\n  }\n  Loop n in 3 .. 1 {\n    Compute t += 100\n  }\n"
            "  Copy O[b, h, m * BLOCK_M : m * BLOCK_M + BLOCK_M] <- t\n")
    spec, p = problem()
    outs = run_tl(program(body)[0], spec, p)
    assert (outs[0] == 9).all()
    prog, text = program(body + "  let after = n\n")
    with pytest.raises(TLRuntimeError, match="unknown name 'n'") as info:
        run_tl(prog, spec, p)
    assert info.value.span.line == line_of(text, "let after")


# ---------------------------------------------------------------- dtypes
def test_emulated_stores_round_to_the_buffer_dtype():
    prog, _ = program(COPY_ROWS.format(dtype="bf16", src="Q", head="h"))
    spec, p = problem()
    exact = run_tl(prog, spec, p)
    rounded = run_tl(prog, spec, p, emulate_dtypes=True)
    assert torch.equal(exact[1], p.q[1])
    assert torch.equal(rounded[1], p.q[1].to(torch.bfloat16).float()) and not torch.equal(rounded[1], p.q[1])


def test_emulated_o_takes_the_problem_dtype_and_dtype_buffers_the_spec_dtype():
    prog, _ = program(COPY_ROWS.format(dtype="DTYPE", src="Q", head="h"))
    spec, p = problem(dtype=torch.float16)
    outs = run_tl(prog, spec, p, emulate_dtypes=True)
    assert outs[0].dtype == torch.float16 and torch.equal(outs[0], p.q[0])
    assert run_tl(prog, spec, p)[0].dtype == torch.float32


# ---------------------------------------------------------------- params and scalars
def test_params_are_expressions_over_spec_constants():
    text = ("program t\nop paged_decode\nparams {\n  BLOCK_M = max(16, GROUP * QLEN)\n  FLOOR = -7 / 2\n"
            "  REM = -7 % 2\n  UP = cdiv(7, 2)\n  HALF = 7.0 / 2\n  TWICE = BLOCK_M * 2\n}\n"
            "params when D = 256 {\n  UP = 0\n}\n")
    spec = AttentionSpec("paged_decode", head_dim=256, gqa_group=8, decode_query_len=4)
    got = resolve_params(parse_tl(text), spec)
    assert got == {"STAGES": 1, "BLOCK_M": 32, "FLOOR": -4, "REM": 1, "UP": 0, "HALF": 3.5, "TWICE": 64}
    with pytest.raises(TLRuntimeError, match="unknown name 'batch' in params") as info:
        resolve_params(parse_tl("op paged_decode\nparams {\n  BLOCK_M = batch\n}\n"), spec)
    assert info.value.span.line == 3  # params are fixed per compiled kernel: no runtime values


def test_a_sketch_cannot_run():
    prog = parse_tl("op dense_prefill\nkernel k grid (b : batch) {\n  let x = 1\n}\n")
    spec, p = problem()
    with pytest.raises(TLRuntimeError, match="sketch"):
        run_tl(prog, spec, p)


def test_op_mismatch():
    prog, _ = program(COPY_ROWS.format(dtype="f32", src="Q", head="h"), "paged_prefill")
    spec, p = problem("dense_prefill")
    with pytest.raises(QimengError, match="op"):
        run_tl(prog, spec, p)


# ---------------------------------------------------------------- runtime errors point at the statement
@pytest.mark.parametrize("body, needle, message", [
    ("  let x = nope + 1\n", "let x", "unknown name 'nope'"),
    ("  Allocate t : register f32 [BLOCK_M, D] with init=0\n  Compute t = gemm(t, t)\n", "Compute t", "gemm inner"),
    ("  Compute t = 0\n", "Compute t", "'t' is not Allocated"),
    ("  Allocate t : register f32 [BLOCK_M, D]\n  Copy t <- Q[b, h, 0 : 2 * BLOCK_M]\n", "Copy t", "only 16"),
    ("  Allocate t : register f32 [BLOCK_M, D]\n  Copy t <- K[b, heads_kv, 0 : BLOCK_M]\n", "Copy t",
     "head index 2 is out of range"),
    ("  Allocate t : register f32 [BLOCK_M, 32]\n  Copy t <- Q[b, h, 0 : BLOCK_M]\n", "Copy t", "each row of Q"),
    ("  Allocate t : register f32 [BLOCK_M, D]\n  Allocate v : register f32 [8]\n"
     "  Compute t = t * v + row_sum(t)\n", "Compute t", "shape mismatch"),
    ("  let x = b / 0\n", "let x", "division by zero"),
    ("  Allocate t : register f32 [BLOCK_M, D] with init=0\n  Compute t = mask(t, kv_len=3)\n", "Compute t",
     "no positions"),
    ("  Allocate Q : shared f32 [BLOCK_M, D]\n", "Allocate Q", "global tensor"),
    ("  let x = seqlen_q[batch]\n", "let x", "out of range"),
])
def test_runtime_errors_carry_span_and_fix(body, needle, message):
    prog, text = program(body)
    spec, p = problem()
    with pytest.raises(TLRuntimeError) as info:
        run_tl(prog, spec, p, source_name="t.tl")
    err = info.value
    assert message in err.message and err.fix
    assert err.span is not None and err.span.line == line_of(text, needle)
    assert "kernel k at m=0, h=0, b=0" in err.message and err.render().startswith("t.tl:")


def test_decode_workspace_is_sized_by_the_split_grid():
    body = ("  Allocate t : register f32 [QLEN, D] with init=0\n"
            "  Copy O_part[split, b, 0, 0 : QLEN] <- t\n  Copy O_part[split + 3, b, 0, 0 : QLEN] <- t\n")
    prog, text = program(body, "paged_decode", grid="split : cdiv(max_seq_k, 512), b : batch")
    spec, p = problem("paged_decode", lq=(1, 2), lk=(600, 1100), decode_query_len=2)
    with pytest.raises(TLRuntimeError, match="split index 3 is out of range 0 .. 2") as info:
        run_tl(prog, spec, p)
    assert info.value.span.line == line_of(text, "split + 3")


def test_run_restores_the_thread_count():
    threads = torch.get_num_threads()
    spec, p = problem()
    run_tl(program(COPY_ROWS.format(dtype="f32", src="Q", head="h"))[0], spec, p)
    assert torch.get_num_threads() == threads


# ---------------------------------------------------------------- functions of §6
def test_mask_uses_row_and_column_positions():
    s = Tile(torch.zeros(3, 7), row_pos=torch.tensor([0, 1, -1]), col_pos=torch.tensor([0, 1, 2, 3, 4, 5, -1]))
    out = F.mask(s, kv_len=5, causal=1, offset=2, window=2)
    seen = (out.data == 0).int().tolist()
    # row 0 sits at key 2 (keys 1, 2), row 1 at key 3 (keys 2, 3); padding rows and columns see nothing
    assert seen == [[0, 1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0, 0], [0] * 7]
    assert (F.mask(s, kv_len=5).data[:2] == 0).int().sum() == 10


def test_elementwise_functions():
    t = Tile(torch.tensor([[float("-inf"), 0.0], [2.0, 0.0]]))
    assert F.finite(t).data.tolist() == [[0.0, 0.0], [2.0, 0.0]]
    assert F.nonzero(t).data.tolist() == [[float("-inf"), 1.0], [2.0, 1.0]]
    assert F.softcap(t, 0.0) is t
    assert torch.allclose(F.softcap(Tile(torch.tensor([3.0])), 2.0).data, 2 * torch.tanh(torch.tensor([1.5])))
    assert F.select(1, 2, 3) == 2 and F.select(0, 2, 3) == 3
    picked = F.select(Tile(torch.tensor([1.0, 0.0])), Tile(torch.tensor([5.0, 6.0])), 7)
    assert picked.data.tolist() == [5.0, 7.0]
    assert (F.cdiv(65, 64), F.cdiv(64, 64), F.tl_max(3, 5), F.tl_min(3, 5)) == (2, 1, 5, 3)
    assert (F.gcd(192, 128), F.gcd(192, 96), F.gcd(128, 80)) == (64, 96, 16)
    with pytest.raises(EvalError, match="must be positive"):
        F.gcd(0, 64)
    assert F.log2(0) == float("-inf") and F.exp2(3) == 8.0
    vec = Tile(torch.tensor([1.0, 2.0]), row_pos=torch.tensor([4, 5]))
    scaled = F.tl_max(Tile(torch.zeros(2, 3)), vec)  # a [rows] vector broadcasts along the columns
    assert scaled.data.tolist() == [[1.0] * 3, [2.0] * 3] and scaled.row_pos.tolist() == [4, 5]
    assert F.row_max(scaled).data.tolist() == [1.0, 2.0] and F.row_sum(scaled).data.tolist() == [3.0, 6.0]


def test_max_rel_error():
    a = [torch.ones(2, 3, 4)]
    assert max_rel_error(a, a) == 0.0
    assert max_rel_error([a[0] * 1.1], a) == pytest.approx(0.1)
    assert max_rel_error([a[0] * float("nan")], a) == math.inf
    with pytest.raises(QimengError):
        max_rel_error(a, [torch.ones(2, 3, 5)])


def test_problem_is_a_plain_dataclass():
    _, p = problem()
    assert isinstance(p, Problem) and p.runtime_values()["max_seq_k"] == 20 and not p.paged
