"""Stage 2 lowering: deterministic output, one building block per TL statement, refusals that name the line."""

import pytest

from qimeng_serve.lower.cexpr import LoweringError, Scope
from qimeng_serve.lower.emit import lower
from qimeng_serve.spec import AttentionSpec
from qimeng_serve.targets import get_target
from qimeng_serve.tl import ast
from qimeng_serve.tl.parser import parse_tl
from tests.conftest import GOLDEN_DIR

CASES = [
    ("dense_prefill_sm80.tl", "sm_80", AttentionSpec("dense_prefill", "bf16", 128)),
    ("paged_prefill_sm80.tl", "sm_90", AttentionSpec("paged_prefill", "f16", 64)),
    ("paged_decode_sm80.tl", "sm_86", AttentionSpec("paged_decode", "f16", 128, gqa_group=8)),
    ("dense_prefill_sm75.tl", "sm_75", AttentionSpec("dense_prefill", "f16", 64)),
    ("paged_prefill_sm75.tl", "sm_75", AttentionSpec("paged_prefill", "f16", 128, gqa_group=4)),
    ("paged_decode_sm75.tl", "sm_75", AttentionSpec("paged_decode", "f16", 64, gqa_group=16)),
]


def _golden(name: str) -> str:
    return (GOLDEN_DIR / name).read_text()


@pytest.mark.parametrize("name, arch, spec", CASES, ids=[c[0] for c in CASES])
def test_lowering_is_deterministic_and_complete(name, arch, spec):
    program = parse_tl(_golden(name))
    a = lower(program, get_target(arch), spec)
    b = lower(parse_tl(_golden(name)), get_target(arch), spec)
    assert a.text == b.text and a.sha256 == b.sha256
    # every FA2 role is there, each marked with the TL line it came from
    for call in ("qm::copy_q_g2s", "qm::copy_kv_g2s", "qm::apply_mask", "qm::online_softmax_update",
                 "qm::rescale_acc", "qm::reshape_acc_to_a", "qm::gemm_rs<KT, qm::OperandVt>"):
        assert call in a.text, call
    for s in ast.walk(program.kernels[0].body):
        if isinstance(s, (ast.Copy, ast.Reshape)) or (isinstance(s, ast.Compute) and "gemm" in str(s.value)):
            if not (isinstance(s, ast.Copy) and isinstance(s.dst, ast.Indexed)):  # stores are in the epilogue
                assert f"L{s.span.line}:" in a.text, f"TL line {s.span.line} not lowered"
    expected_mma = "qm::Sm75" if arch == "sm_75" else "qm::Sm80"
    assert f"qm::Traits<{expected_mma}, qm::{'fp16' if spec.dtype == 'f16' else 'bf16'}, {spec.head_dim}," in a.text
    assert all(e.threads > 0 and e.grid for e in a.entries)


def test_decode_has_split_and_combine_entries():
    src = lower(parse_tl(_golden("paged_decode_sm80.tl")), get_target("sm_80"), AttentionSpec("paged_decode", "f16", 128, 8))
    roles = [e.role for e in src.entries]
    assert roles == ["split", "combine"]
    split, combine = src.entries
    assert split.grid == ["cdiv(max_seq_k, 1024)", "heads_kv", "batch"]
    assert combine.grid == ["heads_q", "batch"] and combine.smem_bytes == 0
    assert "merge_and_store_partial" in src.text and "combine_splits<qm::fp16, 128, 128>" in src.text
    # 16 packed rows: Q 4 KB + one (K, V) pair of 128 x 128 (PIPE = 1); the warps' merge buffer
    # (4 x 16 x 136 floats) reuses that region
    assert split.smem_bytes == 16 * 128 * 2 + max(2 * 128 * 128 * 2, 4 * 16 * 136 * 4)


def test_prefill_grid_and_smem_come_from_the_params():
    src = lower(parse_tl(_golden("dense_prefill_sm80.tl")), get_target("sm_80"), AttentionSpec("dense_prefill", "f16", 64))
    (entry,) = src.entries
    assert entry.grid == ["cdiv(max_seq_q, 128)", "heads_q", "batch"]
    assert entry.smem_bytes == 128 * 64 * 2 + 2 * src.params["BLOCK_N"] * 64 * 2
    assert f"static_assert(KT::kSmemBytes == {entry.smem_bytes}" in src.text


def test_tl_integer_division_becomes_floor_division():
    scope = Scope({"BLOCK_N": 64}, {"q0", "Lk"})
    assert scope.cpp(parse_tl("kernel k grid (i : 1) { let x = (q0 - Lk) / BLOCK_N % 3 }").kernels[0].body[0].value) == \
        "qm::floormod(qm::floordiv((t_q0 - t_Lk), 64), 3)"
    assert scope.cpp(parse_tl("kernel k grid (i : 1) { let x = q0 % gcd(192, BLOCK_N) }").kernels[0].body[0].value) == \
        "qm::floormod(t_q0, qm::gcd(192, 64))"


def _refusal(text: str, arch="sm_80", spec=None) -> LoweringError:
    spec = spec or AttentionSpec("dense_prefill", "f16", 64)
    with pytest.raises(LoweringError) as info:
        lower(parse_tl(text), get_target(arch), spec)
    assert info.value.fix and info.value.span is not None
    return info.value


def test_sequential_schedule_is_refused_with_the_fix():
    text = _golden("dense_prefill_sm80.tl").replace("with order=reverse, schedule=pingpong", "with order=reverse")
    exc = _refusal(text)
    assert "schedule=sequential is not lowered yet" in exc.message and "schedule=pingpong" in exc.fix


def test_tile_shape_outside_the_building_blocks_is_refused():
    text = _golden("paged_decode_sm80.tl").replace("  BLOCK_N = 128\n", "  BLOCK_N = 32\n", 1)
    exc = _refusal(text, spec=AttentionSpec("paged_decode", "f16", 64, 8))
    assert "BLOCK_N a multiple of 16 * WARPS = 64" in exc.fix


def test_unknown_loop_statement_is_refused():
    gold = _golden("dense_prefill_sm80.tl")
    text = gold.replace("    Compute m = m_new\n", "    Compute m = m_new\n    Compute l = l + l\n")
    assert text != gold
    exc = _refusal(text)
    assert "second `l_update`" in exc.message or "no role" in exc.message


def test_pipeline_two_lowers_to_double_buffered_pairs():
    golden = _golden("paged_decode_sm80.tl")
    two_pairs = golden.replace("  BLOCK_N = 128\n", "  BLOCK_N = 64\n", 1).replace("  PIPE = 1\n", "  PIPE = 2\n", 1)
    d128 = lower(parse_tl(two_pairs), get_target("sm_90"), AttentionSpec("paged_decode", "f16", 128, 8))
    assert "qm::Traits<qm::Sm80, qm::fp16, 128, 16, 64, 4, 4>" in d128.text
    assert "qm::kv_stage<KT>(sm, it + 1)" in d128.text
    assert d128.entries[0].smem_bytes == 16 * 128 * 2 + 2 * 2 * 64 * 128 * 2  # Q + two (K, V) pairs
    d256 = lower(parse_tl(golden), get_target("sm_90"), AttentionSpec("paged_decode", "f16", 256, 8))
    assert ", 64, 4, 2>" in d256.text and "kv_stage" not in d256.text  # PIPE = 1; `params when D = 256`: 64 keys


def test_pipeline_two_needs_cp_async():
    text = _golden("paged_decode_sm75.tl").replace("with order=reverse, schedule=pingpong {",
                                                   "with order=reverse, pipeline=2 {")
    text = text.replace("Allocate sK : shared DTYPE [BLOCK_N, D] with layout=swizzle",
                        "Allocate sK : shared DTYPE [BLOCK_N, D] with layout=swizzle, stages=2")
    text = text.replace("Allocate sV : shared DTYPE [BLOCK_N, D] with layout=swizzle",
                        "Allocate sV : shared DTYPE [BLOCK_N, D] with layout=swizzle, stages=2")
    exc = _refusal(text, arch="sm_75", spec=AttentionSpec("paged_decode", "f16", 64, 8))
    assert "pipeline=2 is not lowered for sm_75" in exc.message
