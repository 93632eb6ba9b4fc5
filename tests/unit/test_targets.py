"""Target profiles: the facts the checker and the lowering rely on."""

import pytest

from qimeng_serve.errors import UnknownTargetError
from qimeng_serve.targets import PRIMARY_ARCHS, TARGETS, get_target


def test_primary_archs():
    assert PRIMARY_ARCHS == ("sm_75", "sm_80", "sm_86", "sm_89", "sm_90")


def test_turing_profile():
    t = get_target("sm_75")
    assert t.smem_optin_max == 64 * 1024
    assert t.mma_shapes("f16") == ("m16n8k8",)
    assert "bf16" not in t.dtypes
    assert not t.cp_async and t.ldmatrix and not t.tma and not t.gmma
    assert "cp.async" not in t.copy_paths()
    assert "T4" in " ".join(t.examples)


@pytest.mark.parametrize("arch", ["sm_80", "sm_86", "sm_89", "sm_90"])
def test_ampere_and_newer_have_cp_async_and_bf16(arch):
    t = get_target(arch)
    assert t.cp_async and "m16n8k16" in t.mma_shapes("bf16")


def test_fp8_and_hopper_features():
    assert "e4m3" in get_target("sm_89").dtypes and "e4m3" not in get_target("sm_86").dtypes
    h = get_target("sm_90")
    assert h.tma and h.gmma and h.sass_arch == "sm_90a" and h.smem_optin_max == 227 * 1024


@pytest.mark.parametrize("spelling", ["sm_75", "sm75", "SM_75", "7.5", "compute_75"])
def test_spellings(spelling):
    assert get_target(spelling).arch == "sm_75"


def test_sm90a_spelling():
    assert get_target("sm_90a").arch == "sm_90"


@pytest.mark.parametrize("bad", ["sm_61", "sm_70", "gfx90a", ""])
def test_unknown_arch_says_what_exists(bad):
    with pytest.raises(UnknownTargetError) as info:
        get_target(bad)
    assert "sm_75" in info.value.message and info.value.fix


def test_compute_capability():
    assert {a: t.compute_capability for a, t in TARGETS.items()}["sm_86"] == (8, 6)
