"""The whole forward path on the CPU: vLLM layers, builder and metadata, the impl's views and routing,
with the kernels replaced by an emulator of their ABI (abi_emulator.py). Each request's rows are
checked against the fp32 SDPA reference the GPU scripts use, computed from the original K/V (so a
wrong block-table row, offset or length shows up), on a NaN-poisoned cache and output."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from qimeng_serve.vllm_plugin.harness import build_layers, new_builder, new_kv_cache
from tests.conftest import REPO
from tests.vllm.abi_emulator import EmulatedKernelSet
from tests.vllm.conftest import SKIP_REASON

vllm = pytest.importorskip("vllm", reason=SKIP_REASON)

_spec = importlib.util.spec_from_file_location("qimeng_vllm_gpu_common", REPO / "scripts" / "vllm_gpu" / "common.py")
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)

BATCHES = {
    "decode": ((1, 17, 127, 129, 1000), (1, 1, 1, 1, 1)),
    "prefill": ((1, 17, 129), (1, 17, 129)),
    "chunked": ((300, 1000), (45, 200)),
    "mixed": ((1000, 33, 17, 300, 600), (1, 1, 17, 45, 513)),
}


def _forward(config, monkeypatch, seqs, queries, *, block_size=16, window=0, softcap=0.0, pad=0, seed=0):
    from qimeng_serve.vllm_plugin.backend import QimengAttentionBackend
    from qimeng_serve.vllm_plugin.batch import BatchSpec, make_batch

    mc = config.model_config
    heads, kv_heads, d = mc.get_num_attention_heads(config.parallel_config), \
        mc.get_num_kv_heads(config.parallel_config), mc.get_head_size()
    kwargs = ({"per_layer_sliding_window": window} if window else {}) | ({"logits_soft_cap": softcap} if softcap else {})
    (layer,) = build_layers(config, 1, **kwargs)
    builder = new_builder(QimengAttentionBackend, [layer], config, "cpu", block_size)
    emulator = EmulatedKernelSet(layer.impl.artifact.plan)
    monkeypatch.setattr(layer.impl.artifact, "kernels", lambda: emulator)
    gen = torch.Generator().manual_seed(seed)
    pad_kwargs = {"pad_reqs_to": pad, "pad_tokens_to": pad, "max_seq_len": mc.max_model_len} if pad else {}
    batch = make_batch(BatchSpec(tuple(seqs), tuple(queries)), block_size, "cpu", seed=seed, **pad_kwargs)
    cam = batch.metadata
    kv_cache = new_kv_cache(QimengAttentionBackend, batch.num_blocks, block_size, kv_heads, d, torch.float16, "cpu")
    kv_cache.fill_(float("nan"))
    k_cache, v_cache = common.split_kv(kv_cache, d)
    k_all = [torch.randn(s, kv_heads, d, generator=gen).half() for s in seqs]
    v_all = [torch.randn(s, kv_heads, d, generator=gen).half() for s in seqs]
    qsl = cam.query_start_loc_cpu
    key = torch.zeros(cam.num_actual_tokens, kv_heads, d, dtype=torch.float16)
    value = torch.zeros_like(key)
    for i, (s, q) in enumerate(zip(seqs, queries)):
        common.write_context(k_cache, v_cache, cam.block_table_tensor[i], k_all[i], v_all[i], block_size, s - q)
        key[qsl[i]:qsl[i] + q], value[qsl[i]:qsl[i] + q] = k_all[i][s - q:], v_all[i][s - q:]
    # the new tokens' K/V reach the cache through vLLM's slot mapping, as its cache-write kernel does
    real = cam.slot_mapping >= 0
    k_cache.flatten(0, 1)[cam.slot_mapping[real]] = key[real]
    v_cache.flatten(0, 1)[cam.slot_mapping[real]] = value[real]
    query = torch.randn(cam.num_actual_tokens, heads, d, generator=gen).half()
    output = torch.full_like(query, float("nan"))
    metadata = builder.build_for_cudagraph_capture(cam) if pad else builder.build(0, cam)
    layer.impl.forward(layer, query, key, value, kv_cache, metadata, output)
    outs, refs = [], []
    for i, (s, q) in enumerate(zip(seqs, queries)):
        outs.append(output[qsl[i]:qsl[i] + q])
        refs.append(common.reference_attention(query[qsl[i]:qsl[i] + q], k_all[i], v_all[i], scale=d ** -0.5,
                                               window=window, softcap=softcap))
    stats = common.compare(torch.cat(outs), torch.cat(refs), torch.float16)
    return stats, emulator.calls, output[int(qsl[len(seqs)]):]


@pytest.fixture
def config(plugin_env, make_vllm_config, monkeypatch):
    monkeypatch.setenv("QIMENG_CAPABILITY", "9.0")
    return make_vllm_config


@pytest.mark.parametrize("heads, kv_heads", [(8, 2), (8, 8), (32, 1)])
@pytest.mark.parametrize("name", list(BATCHES))
def test_forward_matches_sdpa(config, monkeypatch, heads, kv_heads, name):
    seqs, queries = BATCHES[name]
    stats, calls, _ = _forward(config(heads=heads, kv_heads=kv_heads, max_model_len=4096), monkeypatch, seqs, queries)
    assert stats["ok"], stats
    decodes = sum(1 for q in queries if q == 1) if heads // kv_heads <= 16 else 0
    expected = ([("paged_decode", decodes)] if decodes and queries[0] == 1 else []) + \
        ([("paged_prefill", len(seqs) - decodes)] if len(seqs) > decodes else [])
    assert [(c["op"], c["batch"]) for c in calls] == expected


def test_window_softcap_and_page_32(config, monkeypatch):
    seqs, queries = BATCHES["mixed"]
    stats, calls, _ = _forward(config(max_model_len=4096, block_size=32), monkeypatch, seqs, queries, block_size=32,
                               window=64, softcap=50.0)
    assert stats["ok"], stats
    assert [c["op"] for c in calls] == ["paged_decode", "paged_prefill"]


def test_graph_padded_decode_computes_only_real_rows(config, monkeypatch):
    stats, calls, padded_rows = _forward(config(max_model_len=4096), monkeypatch, (5, 77, 1025), (1, 1, 1), pad=8)
    assert stats["ok"], stats
    (call,) = calls
    assert call["op"] == "paged_decode" and call["batch"] == 8 and call["max_seqlen_k"] == 4096
    assert len(call["rows"]) == 3  # padded requests have no query rows
    assert torch.isnan(padded_rows).all()  # rows past the real tokens are never written
