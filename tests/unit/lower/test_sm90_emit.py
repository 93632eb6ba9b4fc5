"""Stage 2 for Hopper: the warp-specialised golden program lowers to the sm90 building blocks,
deterministically, with launch metadata that matches the blocks; programs or targets the lowering
does not implement are refused with the line and the fix."""

import pytest

from qimeng_serve.errors import TLCheckError
from qimeng_serve.lower.cexpr import LoweringError
from qimeng_serve.lower.emit import Entry
from qimeng_serve.lower.emit_sm90 import KERNEL_ABI, lower_sm90, smem_bytes
from qimeng_serve.spec import AttentionSpec
from qimeng_serve.targets import get_target
from qimeng_serve.tl.parser import parse_tl
from tests.conftest import GOLDEN_DIR

SM90 = (GOLDEN_DIR / "dense_prefill_sm90.tl").read_text()
SM90_TARGET = get_target("sm_90")


def lowered(text=SM90, dtype="bf16", d=128, **kw):
    return lower_sm90(parse_tl(text), SM90_TARGET, AttentionSpec("dense_prefill", dtype, d, **kw))


@pytest.mark.parametrize("d, block_n", [(64, 128), (128, 128), (256, 64)])
@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_golden_lowers_for_each_head_size(d, dtype, block_n):
    src = lowered(dtype=dtype, d=d)
    (entry,) = src.entries
    assert isinstance(entry, Entry) and entry.abi == KERNEL_ABI
    assert entry.name == f"qm_dense_prefill_sm90_attn_{dtype}_hd{d}"
    assert entry.threads == 384 and entry.grid == ["cdiv(max_seq_q, 128)", "heads_q", "batch"]
    assert entry.tensor_maps == {"q": 128, "k": block_n, "v": block_n}
    assert entry.smem_bytes == smem_bytes(d, 128, block_n, 2) <= SM90_TARGET.smem_optin_max
    cpp = {"f16": "fp16", "bf16": "bf16"}[dtype]
    assert f"qm::sm90::Traits<qm::sm90::{cpp}, {d}, 128, {block_n}, 2, 2, 24, 240>" in src.text
    assert f"static_assert(qm::sm90::smem_bytes<KT>() == {entry.smem_bytes}" in src.text


def test_every_statement_is_traced_to_its_tl_line():
    text = lowered().text
    for tl in ("Copy sQ <- Q[b, q_head, q0 : q0 + BLOCK_M] with via=tma", "Wait sQ", "Wait sK", "Release sK",
               "Compute S = gemm(sQ, sK.T) with mma=gmma", "Reshape P <- S", "Compute acc += gemm(P, sV) with mma=gmma",
               "Release sV", "Copy O[b, q_head, q0 : q0 + BLOCK_M] <- acc with via=stg"):
        assert tl in text, tl
    assert "__launch_bounds__(384, 1)" in text and "const __grid_constant__ qm::sm90::TmaDescs tma" in text
    assert "for (int t_n = n_hi - 1; t_n >= n_lo; --t_n)" in text  # order=reverse in both roles


def test_lowering_is_deterministic_and_follows_the_spec():
    assert lowered().text == lowered().text
    assert "c.scores<false>" in lowered().text
    assert "c.scores<true>" in lowered(softcap=30.0).text  # the soft-cap is compiled in


def test_params_flow_into_the_traits():
    text = SM90.replace("STAGES = 2", "STAGES = 3").replace("CONSUMER_REGS = 240", "CONSUMER_REGS = 232")
    assert "qm::sm90::Traits<qm::sm90::bf16, 64, 128, 128, 3, 2, 24, 232>" in lowered(text, d=64).text


def test_refused_off_hopper():
    with pytest.raises(LoweringError, match="needs sm_90"):
        lower_sm90(parse_tl(SM90), get_target("sm_80"), AttentionSpec("dense_prefill", "bf16", 128))


def test_fa2_program_is_refused_with_the_fix():
    fa2 = (GOLDEN_DIR / "dense_prefill_sm80.tl").read_text()
    with pytest.raises(LoweringError, match="Role producer") as e:
        lower_sm90(parse_tl(fa2), SM90_TARGET, AttentionSpec("dense_prefill", "bf16", 128))
    assert "dense_prefill_sm90.tl" in e.value.fix


def test_checker_runs_first():
    with pytest.raises(TLCheckError, match="setmaxnreg"):
        lowered(SM90.replace("CONSUMER_REGS = 240", "CONSUMER_REGS = 244"))


def test_warp_mma_in_the_consumer_is_refused():
    text = SM90.replace("Compute acc += gemm(P, sV) with mma=gmma", "Compute acc += gemm(P, sV) with mma=m16n8k16")
    with pytest.raises(LoweringError, match="warpgroup MMAs"):
        lowered(text)


PINGPONG = (GOLDEN_DIR / "dense_prefill_sm90_pingpong.tl").read_text()


def test_pingpong_takes_turns_around_the_score_gemm():
    text = lowered(PINGPONG).text
    assert "qm_dense_prefill_sm90_pingpong_attn_bf16_hd128" in text
    wait, gemm, hand = text.index("turn.wait_turn();"), text.index("c.gemm_qk(S, sm"), text.index("turn.pass_turn(t_n == n_lo);")
    assert wait < gemm < hand  # the turn spans S = Q K^T only: the softmax overlaps the other's GEMM
    assert "if (n_hi > n_lo) turn.start();" in text
    assert "turn" not in lowered().text  # the plain schedule has none


def test_pingpong_needs_two_consumer_warpgroups():
    with pytest.raises(TLCheckError, match="ping-pong alternates"):
        lowered(PINGPONG.replace("CONSUMERS = 2", "CONSUMERS = 1").replace("WARPS = 8", "WARPS = 4")
                .replace("BLOCK_M = 128", "BLOCK_M = 64"))


OVERLAP = (GOLDEN_DIR / "dense_prefill_sm90_overlap.tl").read_text()


def test_overlap_issues_the_next_score_gemm_with_the_previous_pv():
    text = lowered(OVERLAP).text
    loop = text[text.index("for (int t_n = n_hi - 2; t_n >= n_lo; --t_n)"):]
    order = [loop.index(s) for s in ("c.issue_qk(S_next", "c.issue_pv(acc, P", "c.wait_gemms<1>(S_next)",
                                     "c.online_softmax(S_next", "c.wait_gemms<0>(acc, P)", "c.rescale(acc)",
                                     "P = c.reshape(S_next)")]
    assert order == sorted(order)  # acc is rescaled only after the P V GEMM that writes it is done
    assert "// the last tile's O += P V" in text and "if (n_hi > n_lo) {" in text


def test_overlap_with_pingpong_is_refused():
    text = OVERLAP.replace("overlap=softmax", "overlap=softmax, schedule=pingpong")
    with pytest.raises(LoweringError, match="not lowered yet"):
        lowered(text)


def test_overlap_values_are_checked():
    with pytest.raises(TLCheckError, match="overlap=fast"):
        lowered(OVERLAP.replace("overlap=softmax", "overlap=fast"))
