"""AttentionSpec validation: each refusal says what to do."""

import pytest

from qimeng_serve.errors import SpecError
from qimeng_serve.spec import AttentionSpec
from qimeng_serve.targets import get_target


def test_defaults_and_constants():
    s = AttentionSpec("paged_decode", "fp16", 128, gqa_group=4)
    assert s.dtype == "f16"
    c = s.constants()
    assert (c["D"], c["GROUP"], c["QLEN"], c["CAUSAL"], c["DTYPE"]) == (128, 4, 1, 1, "f16")
    assert AttentionSpec("paged_prefill").constants()["QLEN"] == 0


def test_bf16_on_turing_says_use_fp16():
    with pytest.raises(SpecError) as info:
        AttentionSpec("dense_prefill", "bf16").validate_for(get_target("sm_75"))
    assert info.value.message == "sm_75 has no bf16 tensor cores" and "fp16" in info.value.fix


def test_bf16_on_ampere_is_fine():
    AttentionSpec("dense_prefill", "bf16").validate_for(get_target("sm_80"))


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(op="attention"), "unknown op"),
        (dict(op="dense_prefill", dtype="f64"), "unsupported dtype"),
        (dict(op="dense_prefill", head_dim=96), "unsupported head size 96"),
        (dict(op="dense_prefill", gqa_group=0), "GQA group"),
        (dict(op="dense_prefill", sliding_window=-1), "sliding window"),
        (dict(op="dense_prefill", softcap=-1.0), "soft-cap"),
    ],
)
def test_bad_specs(kwargs, needle):
    with pytest.raises(SpecError) as info:
        AttentionSpec(**kwargs)
    assert needle in info.value.message and info.value.fix


def test_key_is_readable_and_digest_stable():
    s = AttentionSpec("paged_prefill", "bf16", 128, 8, True, 4096, 50.0)
    assert s.key() == "paged_prefill_bf16_hd128_g8_causal_win4096_cap50"
    assert s.digest() == AttentionSpec("paged_prefill", "bfloat16", 128, 8, True, 4096, 50.0).digest()
