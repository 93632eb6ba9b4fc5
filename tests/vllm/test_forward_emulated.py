"""The whole forward path on the CPU: vLLM layers, builder and metadata, the impl's views and routing,
with the kernels replaced by an emulator of their ABI (abi_emulator.py). Each request's rows are
checked against the fp32 SDPA reference the GPU scripts use, computed from the original K/V (so a
wrong block-table row, offset or length shows up), on a NaN-poisoned cache and output."""

from __future__ import annotations

import pytest
import torch

from tests.vllm.abi_emulator import emulated_forward
from tests.vllm.conftest import SKIP_REASON

vllm = pytest.importorskip("vllm", reason=SKIP_REASON)

BATCHES = {
    "decode": ((1, 17, 127, 129, 1000), (1, 1, 1, 1, 1)),
    "prefill": ((1, 17, 129), (1, 17, 129)),
    "chunked": ((300, 1000), (45, 200)),
    "mixed": ((1000, 33, 17, 300, 600), (1, 1, 17, 45, 513)),
}


@pytest.fixture
def config(plugin_env, make_vllm_config, monkeypatch):
    monkeypatch.setenv("QIMENG_CAPABILITY", "9.0")
    return make_vllm_config


@pytest.mark.parametrize("heads, kv_heads", [(8, 2), (8, 8), (32, 1)])
@pytest.mark.parametrize("name", list(BATCHES))
def test_forward_matches_sdpa(config, heads, kv_heads, name):
    seqs, queries = BATCHES[name]
    stats, calls, _ = emulated_forward(config(heads=heads, kv_heads=kv_heads, max_model_len=4096), seqs, queries)
    assert stats["ok"], stats
    decodes = sum(1 for q in queries if q == 1) if heads // kv_heads <= 16 else 0
    expected = ([("paged_decode", decodes)] if decodes and queries[0] == 1 else []) + \
        ([("paged_prefill", len(seqs) - decodes)] if len(seqs) > decodes else [])
    assert [(c["op"], c["batch"]) for c in calls] == expected


def test_window_softcap_and_page_32(config):
    seqs, queries = BATCHES["mixed"]
    stats, calls, _ = emulated_forward(config(max_model_len=4096, block_size=32), seqs, queries, block_size=32,
                               window=64, softcap=50.0)
    assert stats["ok"], stats
    assert [c["op"] for c in calls] == ["paged_decode", "paged_prefill"]


def test_graph_padded_decode_computes_only_real_rows(config):
    stats, calls, padded_rows = emulated_forward(config(max_model_len=4096), (5, 77, 1025), (1, 1, 1), pad=8)
    assert stats["ok"], stats
    (call,) = calls
    assert call["op"] == "paged_decode" and call["batch"] == 8 and call["max_seqlen_k"] == 4096
    assert len(call["rows"]) == 3  # padded requests have no query rows
    assert torch.isnan(padded_rows).all()  # rows past the real tokens are never written
