"""Which kernel runs a call, without a GPU: the loader's sm90a skip decision per compute capability,
KernelSet.find's choice between an sm90a kernel and the portable one (page sizes, alignment, pinning,
QIMENG_NO_SM90A), the paged TMA map geometry, and the launch ABI guard. (Loading and launching need
the GPU; the validate and bench commands exercise them there.)"""

from pathlib import Path

import pytest
import torch

from qimeng_serve.env import sm90a_enabled
from qimeng_serve.runtime import ops
from qimeng_serve.runtime.abi import AttnParams
from qimeng_serve.runtime.launch import launch
from qimeng_serve.runtime.loader import RuntimeLoadError, sm90a_skip_reason
from qimeng_serve.runtime.ops import CallDoesNotFit, KernelSet, NoKernelError, sm90a_fit
from qimeng_serve.runtime.tma_sm90 import (
    gather_stride_fit,
    paged_kv_map,
    paged_kv_rows,
    paged_page_fit,
    paged_q_map,
)

BLOCK_N = 128
SM90A_META = {"variant": "sm90a", "abi": "attn_params+tma_descs", "family": "paged_prefill", "role": "attn",
              "spec": {"head_dim": 64, "softcap": 0.0}, "tma_layout": "paged",
              "tensor_maps": {"q": 128, "k": BLOCK_N, "v": BLOCK_N}, "launch": {"grid": ["1"], "threads": 384,
                                                                              "smem_bytes": 1 << 16}}
PORTABLE_META = {"family": "paged_prefill", "role": "attn", "spec": {"head_dim": 64, "softcap": 0.0},
                 "launch": {"grid": ["1"], "threads": 128, "smem_bytes": 1 << 15}}


class Loaded:
    def __init__(self, name, meta):
        self.name, self.meta, self.method = name, meta, "test"


def _kernel_set(*kernels) -> KernelSet:
    """A KernelSet over fake loaded kernels (no cubins, no GPU): only the choice is under test."""
    ks = KernelSet.__new__(KernelSet)
    ks.dtype, ks.path, ks.manifest = "f16", Path("qimeng-default-sm_90-f16.safetensors"), {"arch": "sm_90"}
    ks.kernels = {k.name: k for k in kernels}
    ks._by_key, ks._sm90a = ops.index_kernels(kernels)
    return ks


FAST, SLOW = Loaded("qm_paged_prefill_sm90a_attn_f16_hd64", SM90A_META), Loaded("qm_paged_prefill_sm90_attn_f16_hd64", PORTABLE_META)


def _paged(page: int, tokens: int = 37, hq: int = 8, hkv: int = 2, d: int = 64, offset: int = 0):
    """CPU tensors in vLLM's layout: q [tokens, Hq, D], K/V halves of a [blocks, 2, page, Hkv, D] cache."""
    q = torch.zeros(tokens * hq * d + offset, dtype=torch.float16)[offset:].view(tokens, hq, d)
    cache = torch.zeros(6, 2, page, hkv, d, dtype=torch.float16)
    return q, cache[:, 0], cache[:, 1]


# ------------------------------------------------------------------ the loader's decision
@pytest.mark.parametrize("capability, loads", [((8, 0), False), ((8, 6), False), ((9, 0), True), ((10, 0), False),
                                               ((12, 0), False)])
def test_sm90a_kernels_load_on_compute_capability_9_0_only(capability, loads):
    why = sm90a_skip_reason(SM90A_META, capability)
    assert (why == "") == loads
    if not loads:
        assert "9.0" in why and f"{capability[0]}.{capability[1]}" in why
    assert sm90a_skip_reason(PORTABLE_META, capability) == ""  # portable kernels: SASS or PTX as before


def test_sm90a_kernels_never_load_from_ptx_nor_when_switched_off():
    assert "no PTX" in sm90a_skip_reason(SM90A_META, (9, 0), prefer="ptx")
    assert sm90a_skip_reason(SM90A_META, (9, 0), prefer="sass") == ""
    assert "QIMENG_NO_SM90A" in sm90a_skip_reason(SM90A_META, (9, 0), enabled=False)
    assert sm90a_skip_reason(PORTABLE_META, (9, 0), prefer="ptx", enabled=False) == ""


@pytest.mark.parametrize("value, enabled", [(None, True), ("", True), ("0", True), ("1", False), ("true", False)])
def test_qimeng_no_sm90a(monkeypatch, value, enabled):
    if value is None:
        monkeypatch.delenv("QIMENG_NO_SM90A", raising=False)
    else:
        monkeypatch.setenv("QIMENG_NO_SM90A", value)
    assert sm90a_enabled() is enabled


# ------------------------------------------------------------------ paged tensor maps
def test_paged_q_map_views_tokens_as_positions_of_one_batch():
    q, _, _ = _paged(16)
    tm = paged_q_map(q.shape, q.stride(), "f16", 128, q.data_ptr())
    assert tm.dims == (64, 37, 8, 1)  # (D, tokens, heads, batch 1)
    assert tm.strides == (8 * 64 * 2, 64 * 2, 37 * 8 * 64 * 2)  # bytes: token, head, (unused) batch
    assert tm.box == (64, 128, 1, 1)


@pytest.mark.parametrize("page, rows", [(16, 16), (128, 128), (256, 128)])
def test_paged_kv_map_views_each_page_per_head(page, rows):
    _, k, _ = _paged(page)
    assert paged_kv_rows(page, BLOCK_N) == rows
    tm = paged_kv_map(k.shape, k.stride(), "f16", rows, k.data_ptr())
    assert tm.dims == (64, page, 2, 6)  # (D, slot in page, KV head, page)
    # K is a strided half of vLLM's cache: page stride = 2 pages of K and V
    assert tm.strides == (2 * 64 * 2, 64 * 2, 2 * page * 2 * 64 * 2)
    assert tm.box == (64, rows, 1, 1)


@pytest.mark.parametrize("page, fits", [(8, True), (16, True), (32, True), (128, True), (256, True), (512, True),
                                        (1, False), (4, False), (12, False), (24, False), (48, False), (384, True)])
def test_page_sizes_the_paged_kernel_takes(page, fits):
    why = paged_page_fit(page, BLOCK_N)
    assert (why == "") == fits, why


@pytest.mark.parametrize("page, fits", [(8, True), (16, True), (24, True), (40, True), (48, True), (1, False),
                                        (4, False), (12, False), (20, False)])
def test_page_sizes_the_gathering_kernel_takes(page, fits):
    # no K/V maps (tensor_maps without "k"): the cp.async gather's 8-row segments, any tile width
    why = paged_page_fit(page, None)
    assert (why == "") == fits, why


GATHER_META = {**SM90A_META, "tensor_maps": {"q": 128}}


def test_a_gathering_kernel_gets_no_kv_maps_and_still_needs_aligned_caches():
    q, k, v = _paged(24)  # 24 rows a page: neither divides nor is a multiple of 128
    maps, why = ops.sm90a_maps(GATHER_META, "paged", "f16", q, k, v)
    assert why == "" and maps[0] is not None and maps[1:] == (None, None, None)
    assert "divide" in sm90a_fit(SM90A_META, "paged", "f16", q, k, v)  # a TMA-box kernel refuses it
    cache = torch.zeros(6 * 2 * 24 * 2 * 64 + 1, dtype=torch.float16)[1:].view(6, 2, 24, 2, 64)
    assert "16-byte aligned" in sm90a_fit(GATHER_META, "paged", "f16", q, cache[:, 0], cache[:, 1])


def test_the_gather_refuses_strides_its_32_bit_offsets_cannot_hold():
    # the strides of a cache whose pages lie 2 GiB apart (shape irrelevant to the rule): refused, with why
    assert gather_stride_fit((64 * 16 * 2, 64 * 2, 64, 1), 16, 2) == ""
    assert "2 GiB" in gather_stride_fit((1 << 30, 64 * 2, 64, 1), 16, 2)
    assert "2 GiB" in gather_stride_fit((64, 1 << 27, 64, 1), 16, 2)  # a page's slots span 4 GiB
    # through sm90a_fit: a cache view whose slots lie 256 MiB apart (meta: strides without storage)
    q, k, v = _paged(16)
    big = torch.empty_strided(k.shape, (k.stride(0), 1 << 27, 64, 1), device="meta", dtype=k.dtype)
    assert "V cache's page stride" in sm90a_fit(GATHER_META, "paged", "f16", q, k, big)
    assert sm90a_fit(GATHER_META, "paged", "f16", q, k, v) == ""


# ------------------------------------------------------------------ KernelSet.find: sm90a or portable
@pytest.mark.parametrize("page, chosen", [(16, FAST), (64, FAST), (256, FAST), (12, SLOW), (24, SLOW), (5, SLOW)])
def test_paged_calls_fall_back_to_the_portable_kernel_by_page_size(page, chosen):
    ks = _kernel_set(FAST, SLOW)
    q, k, v = _paged(page)
    assert ks.find("paged_prefill", "attn", 64, fits=ks._fits("paged", q, k, v)) is chosen


def test_unaligned_tensors_fall_back_too():
    ks = _kernel_set(FAST, SLOW)
    q, k, v = _paged(16, offset=1)  # q starts 2 bytes into its storage: TMA needs 16-byte aligned addresses
    why = sm90a_fit(FAST.meta, "paged", "f16", q, k, v)
    assert "16-byte aligned" in why
    assert ks.find("paged_prefill", "attn", 64, fits=ks._fits("paged", q, k, v)) is SLOW
    q, k, v = _paged(16)
    assert sm90a_fit(FAST.meta, "paged", "f16", q, k, v) == ""
    assert "tensor maps are 'paged'" in sm90a_fit(FAST.meta, "dense", "f16", q, k, v)


def test_without_a_fit_check_the_portable_kernel_is_found():
    ks = _kernel_set(FAST, SLOW)
    assert ks.find("paged_prefill", "attn", 64) is SLOW  # a caller that can only pass AttnParams


def test_an_sm90a_kernel_alone_that_does_not_fit_is_an_error():
    ks = _kernel_set(FAST)
    q, k, v = _paged(16)
    assert ks.find("paged_prefill", "attn", 64, fits=ks._fits("paged", q, k, v)) is FAST
    q, k, v = _paged(12)
    with pytest.raises(CallDoesNotFit, match="page size 12 is not a multiple of 8"):
        ks.find("paged_prefill", "attn", 64, fits=ks._fits("paged", q, k, v))
    with pytest.raises(NoKernelError, match="has no paged_prefill attn kernel for head size 128"):
        ks.find("paged_prefill", "attn", 128)


@pytest.mark.parametrize("order", ["causal first", "full first"])
def test_the_sm90a_kernel_tuned_for_the_calls_mask_is_found(order):
    full = Loaded("qm_paged_prefill_sm90a_full_attn_f16_hd64", {**SM90A_META, "tuned_mask": "full"})
    causal = Loaded(FAST.name, {**SM90A_META, "tuned_mask": "causal"})
    ks = _kernel_set(*((causal, full) if order == "causal first" else (full, causal)), SLOW)
    q, k, v = _paged(16)
    fits = ks._fits("paged", q, k, v)
    assert ks.find("paged_prefill", "attn", 64, fits=fits, causal=True) is causal
    assert ks.find("paged_prefill", "attn", 64, fits=fits, causal=False) is full
    q, k, v = _paged(12)  # neither sm90a kernel fits: the portable one, whatever the mask
    assert ks.find("paged_prefill", "attn", 64, fits=ks._fits("paged", q, k, v), causal=False) is SLOW


def test_a_kernel_tuned_for_the_other_mask_still_serves_a_call():
    full = Loaded("qm_paged_prefill_sm90a_full_attn_f16_hd64", {**SM90A_META, "tuned_mask": "full"})
    ks = _kernel_set(full, SLOW)
    q, k, v = _paged(16)
    assert ks.find("paged_prefill", "attn", 64, fits=ks._fits("paged", q, k, v), causal=True) is full
    # an entry written before `tuned_mask` was recorded was built for causal calls
    assert ops.tuned_for(FAST.meta, True) and not ops.tuned_for(FAST.meta, False)


@pytest.mark.parametrize("order", ["long first", "long last"])
def test_the_long_sequence_kernel_serves_calls_from_its_length_on(order):
    """A `_long` kernel (manifest min_seqlen_k, tuned_mask any) comes first from its key length on, under
    either mask, and after the mask-tuned kernels below it; the portable one stays the last resort."""
    full = Loaded("qm_paged_prefill_sm90a_full_attn_f16_hd64", {**SM90A_META, "tuned_mask": "full"})
    causal = Loaded(FAST.name, {**SM90A_META, "tuned_mask": "causal"})
    long = Loaded("qm_paged_prefill_sm90a_long_attn_f16_hd64", {**SM90A_META, "tuned_mask": "any",
                                                                "min_seqlen_k": 8192})
    ks = _kernel_set(*((long, causal, full) if order == "long first" else (causal, full, long)), SLOW)
    q, k, v = _paged(16)
    fits = ks._fits("paged", q, k, v)
    for mask in (True, False):
        assert ks.find("paged_prefill", "attn", 64, fits=fits, causal=mask, seqlen_k=8192) is long
        assert ks.find("paged_prefill", "attn", 64, fits=fits, causal=mask, seqlen_k=100_000) is long
    assert ks.find("paged_prefill", "attn", 64, fits=fits, causal=True, seqlen_k=8191) is causal
    assert ks.find("paged_prefill", "attn", 64, fits=fits, causal=False, seqlen_k=8191) is full
    assert ks.find("paged_prefill", "attn", 64, fits=fits, causal=False) is full  # no length given: not the long one
    alone = _kernel_set(long, SLOW)  # below its length the long kernel still serves a call rather than nothing
    assert alone.find("paged_prefill", "attn", 64, fits=alone._fits("paged", q, k, v), causal=True, seqlen_k=16) is long
    assert ops.tuned_for(long.meta, True) and ops.tuned_for(long.meta, False)


def test_dense_prefill_picks_the_long_kernel_by_the_calls_key_length(monkeypatch):
    """KernelSet.dense_prefill passes its key length to find: the launch itself is left out (no GPU)."""
    dense = {**SM90A_META, "family": "dense_prefill", "spec": {"head_dim": 128, "softcap": 0.0}, "tma_layout": "dense",
             "tensor_maps": {"q": 128, "k": 144, "v": 144}}
    causal = Loaded("qm_dense_prefill_sm90a_attn_f16_hd128", {**dense, "tuned_mask": "causal"})
    long = Loaded("qm_dense_prefill_sm90a_long_attn_f16_hd128", {**dense, "tuned_mask": "any", "min_seqlen_k": 256})
    ks = _kernel_set(causal, long)
    ran = []
    monkeypatch.setattr(ks, "_run", lambda kernel, *args: ran.append(kernel.name))
    for lk in (255, 256):
        q = torch.zeros(1, 2, 64, 128, dtype=torch.float16)
        k = v = torch.zeros(1, 2, lk, 128, dtype=torch.float16)
        ks.dense_prefill(q, k, v, causal=True)
    assert ran == [causal.name, long.name]


def test_pinned_kernels_run_without_fallback():
    ks = _kernel_set(FAST, SLOW)
    q16, k16, v16 = _paged(16)
    q12, k12, v12 = _paged(12)
    with ks.pinned(SLOW.name):  # validate / bench reach the portable kernel even where sm90a fits
        assert ks.find("paged_prefill", "attn", 64, fits=ks._fits("paged", q16, k16, v16)) is SLOW
    with ks.pinned(FAST.name):
        assert ks.find("paged_prefill", "attn", 64, fits=ks._fits("paged", q16, k16, v16)) is FAST
        with pytest.raises(CallDoesNotFit):
            ks.find("paged_prefill", "attn", 64, fits=ks._fits("paged", q12, k12, v12))
    assert ks._pinned is None


def test_launch_sizes_name_the_multiprocessor_count(monkeypatch):
    monkeypatch.setattr(ops, "num_sms", lambda index: 132)
    p = AttnParams()
    p.batch, p.heads_q, p.heads_kv, p.max_seqlen_q, p.max_seqlen_k = 2, 8, 2, 100, 300
    sizes = _kernel_set()._sizes(p, torch.device("cpu"))
    assert sizes == {"batch": 2, "heads_q": 8, "heads_kv": 2, "max_seq_q": 100, "max_seq_k": 300, "num_sms": 132}


def test_launch_refuses_the_wrong_parameter_form():
    with pytest.raises(RuntimeLoadError, match="takes AttnParams and TmaDescs"):
        launch(FAST, AttnParams(), {})
    with pytest.raises(RuntimeLoadError, match="takes AttnParams only"):
        launch(SLOW, AttnParams(), {}, descs=object())


def test_unaligned_tensors_are_refused_before_any_launch():
    """The portable kernels need 16-byte aligned addresses too (the ABI): no kernel may take such a
    call, so it is an error up front rather than a misaligned-address fault that poisons the context."""
    ks = _kernel_set(FAST, SLOW)
    q, k, v = _paged(16, offset=1)
    table, cu, seqlens = torch.zeros(1, 2, dtype=torch.int32), torch.tensor([0, 37], dtype=torch.int32), \
        torch.tensor([37], dtype=torch.int32)
    with pytest.raises(ops.QimengError, match="16-byte aligned tensors; q at"):
        ks._paged_params(q, k, v, table, cu, seqlens, 37, 37, True, None, 0, 0.0, torch.empty_like(q))


def test_kv_maps_are_encoded_once_and_q_every_call(monkeypatch):
    from qimeng_serve.runtime import tma_sm90

    encoded = []
    monkeypatch.setattr(tma_sm90, "encode", lambda tm, address: encoded.append(address) or bytes(128))
    q, k, v = _paged(16)
    cache: dict = {}
    for _ in range(3):
        tma_sm90.paged_descs(q, k, v, "f16", SM90A_META["tensor_maps"], cache)
    assert encoded == [q.data_ptr(), k.data_ptr(), v.data_ptr(), q.data_ptr(), q.data_ptr()]
    assert len(cache) == 2
    other_q, other_k, _ = _paged(16, tokens=5)
    tma_sm90.paged_descs(other_q, other_k, v, "f16", SM90A_META["tensor_maps"], cache)  # a new K cache: encoded
    assert encoded[-2:] == [other_q.data_ptr(), other_k.data_ptr()] and len(cache) == 3
