"""The Python API fills AttnParams from tensor strides (no GPU: CPU tensors have data pointers too)."""

import math
from pathlib import Path

import pytest
import torch

from qimeng_serve.errors import QimengError
from qimeng_serve.runtime.ops import LOG2E, KernelSet, _base_params, _sizes


def _kernel_set(dtype="f16") -> KernelSet:
    ks = KernelSet.__new__(KernelSet)  # skip loading cubins: only the packing is under test
    ks.dtype, ks.path = dtype, Path("qimeng-default-sm_90-" + dtype + ".safetensors")
    return ks


def test_paged_params_follow_vllm_cache_strides():
    ks = _kernel_set()
    # vLLM's cache: [num_blocks, 2, page, Hkv, D]; K and V are strided views into it
    cache = torch.zeros(10, 2, 16, 4, 64, dtype=torch.float16)
    k, v = cache[:, 0], cache[:, 1]
    q = torch.zeros(7, 8, 64, dtype=torch.float16)
    out = torch.empty_like(q)
    table = torch.zeros(2, 5, dtype=torch.int32)
    cu = torch.tensor([0, 3, 7], dtype=torch.int32)
    seqlens = torch.tensor([40, 70], dtype=torch.int32)
    p = ks._paged_params(q, k, v, table, cu, seqlens, 4, 70, True, None, 0, 0.0, out)
    assert (p.k_batch_stride, p.k_token_stride, p.k_head_stride) == (2 * 16 * 4 * 64, 4 * 64, 64)
    assert p.v - p.k == 16 * 4 * 64 * 2  # V is the second half of each block, in bytes
    assert (p.q_token_stride, p.q_head_stride) == (8 * 64, 64)
    assert (p.batch, p.heads_q, p.heads_kv, p.page_size, p.max_seqlen_q, p.max_seqlen_k) == (2, 8, 4, 16, 4, 70)
    assert p.block_table == table.data_ptr() and p.block_table_stride == 5
    assert p.causal == 1 and math.isclose(p.softmax_scale_log2, LOG2E / 8, rel_tol=1e-6)
    assert _sizes(p) == {"batch": 2, "heads_q": 8, "heads_kv": 4, "max_seq_q": 4, "max_seq_k": 70}


def test_window_is_passed_as_keys_before_the_diagonal():
    assert _base_params(None, 64, None, True, 128, 0.0).window_left == 127
    assert _base_params(None, 64, None, True, 0, 0.0).window_left == 0
    with pytest.raises(QimengError, match="window of 1"):
        _base_params(None, 64, None, True, 1, 0.0)


def test_dtype_and_head_checks():
    ks = _kernel_set("bf16")
    q = torch.zeros(2, 8, 64, dtype=torch.float16)
    with pytest.raises(QimengError, match="holds bf16 kernels"):
        ks._check(q, 64, 8, 4)
    with pytest.raises(QimengError, match="not a multiple"):
        _kernel_set()._check(q, 64, 6, 4)
    with pytest.raises(QimengError, match="contiguous"):
        _kernel_set()._check(torch.zeros(2, 64, 8, dtype=torch.float16).transpose(1, 2), 64, 8, 4)


def test_a_soft_cap_the_kernel_was_not_built_for_is_refused():
    ks = _kernel_set()

    class Loaded:
        name = "qm_paged_prefill_sm80_attn_f16_hd64"
        meta = {"spec": {"softcap": 0.0}}

    ks._by_key = {("paged_prefill", "attn", 64): Loaded()}
    assert ks.find("paged_prefill", "attn", 64) is ks._by_key[("paged_prefill", "attn", 64)]
    with pytest.raises(QimengError, match="built for logits soft-cap 0, the call asks for 30"):
        ks.find("paged_prefill", "attn", 64, softcap=30.0)
