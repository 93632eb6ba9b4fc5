"""The metadata builder on vLLM's own objects: real Attention layers on our backend, a real VllmConfig,
vLLM's CommonAttentionMetadata for decode-only, prefill-only, mixed and CUDA-graph-padded batches."""

from __future__ import annotations

import math

import pytest
import torch

from qimeng_serve.vllm_plugin.harness import build_layers, kv_cache_spec
from tests.vllm.conftest import SKIP_REASON
from tests.vllm.serving_registry import SPLIT_KV

vllm = pytest.importorskip("vllm", reason=SKIP_REASON)

CPU = torch.device("cpu")
INT32 = 4  # bytes


@pytest.fixture
def setup(plugin_env, make_vllm_config, monkeypatch):
    """Hq=8, Hkv=2, D=128, fp16 on an sm_90 (by QIMENG_CAPABILITY: no GPU here), max_model_len 17408."""
    monkeypatch.setenv("QIMENG_CAPABILITY", "9.0")

    def make(**kwargs):
        from qimeng_serve.vllm_plugin.metadata import QimengMetadataBuilder

        config = make_vllm_config(**kwargs)
        layers = build_layers(config)
        builder = QimengMetadataBuilder(kv_cache_spec(config), [l.layer_name for l in layers], config, CPU)
        return config, layers, builder

    return make


def _batch(seq_lens, query_lens, **kwargs):
    from qimeng_serve.vllm_plugin.batch import BatchSpec, make_batch

    return make_batch(BatchSpec(tuple(seq_lens), tuple(query_lens)), 16, CPU, **kwargs).metadata


def _offset(view: torch.Tensor, base: torch.Tensor) -> int:
    """Bytes from base's first element to view's: proves `view` is a slice of vLLM's tensor, not a copy."""
    assert view.untyped_storage().data_ptr() == base.untyped_storage().data_ptr()
    return view.data_ptr() - base.data_ptr()


def test_builder_takes_the_layers_artifact_and_sizes_the_split_kv_workspace(setup):
    from vllm.v1.attention.backend import AttentionCGSupport

    config, layers, builder = setup()
    assert builder.artifact is layers[0].impl.artifact  # resolved once, when the model's layers were built
    assert builder.artifact.bundle_path.name == "qimeng-default-sm_90-f16.safetensors"
    assert builder.reorder_batch_threshold == 1 and builder.use_decode_kernel
    assert type(builder).get_cudagraph_support(config, kv_cache_spec(config)) \
        is AttentionCGSupport.UNIFORM_SINGLE_TOKEN_DECODE
    o_part, lse = builder.workspace
    splits = math.ceil(17408 / SPLIT_KV)
    assert o_part.shape == (splits, 64, 8, 128) and lse.shape == (splits, 64, 8)  # max_num_seqs=64 decodes
    assert o_part.dtype == lse.dtype == torch.float32
    assert builder.decode_kv_capacity >= 17408


def test_mixed_batch_splits_decodes_then_prefills_as_views(setup):
    _, _, builder = setup()
    cam = _batch([1000, 4097, 33, 17, 300], [1, 1, 1, 17, 45])
    md = builder.build(0, cam)
    d, p = md.decode, md.prefill
    assert (d.num_reqs, d.num_tokens, p.num_reqs, p.num_tokens) == (3, 3, 2, 62)
    assert md.num_actual_tokens == 65
    assert d.cu_seqlens_q.tolist() == [0, 1, 2, 3] and _offset(d.cu_seqlens_q, cam.query_start_loc) == 0
    assert d.seq_lens.tolist() == [1000, 4097, 33] and _offset(d.seq_lens, cam.seq_lens) == 0
    assert torch.equal(d.block_table, cam.block_table_tensor[:3]) and _offset(d.block_table, cam.block_table_tensor) == 0
    assert d.max_seq_len == 4097 and d.workspace is builder.workspace
    # prefill rows keep their absolute offsets into q: 3 decode tokens come first
    assert p.cu_seqlens_q.tolist() == [3, 20, 65] and _offset(p.cu_seqlens_q, cam.query_start_loc) == 3 * INT32
    assert p.seq_lens.tolist() == [17, 300] and _offset(p.seq_lens, cam.seq_lens) == 3 * INT32
    width = cam.block_table_tensor.shape[1]
    assert _offset(p.block_table, cam.block_table_tensor) == 3 * width * INT32
    assert (p.max_query_len, p.max_seq_len) == (45, 4097)


def test_decode_only_batch(setup):
    _, _, builder = setup()
    md = builder.build(0, _batch([5, 9000, 1], [1, 1, 1]))
    assert md.prefill is None and (md.decode.num_reqs, md.decode.num_tokens, md.decode.max_seq_len) == (3, 3, 9000)


def test_prefill_only_batch_with_chunked_context(setup):
    _, _, builder = setup()
    md = builder.build(0, _batch([129, 700], [129, 200]))  # the second request: 500 cached + 200 new
    p = md.prefill
    assert md.decode is None and p.num_reqs == 2 and p.cu_seqlens_q.tolist() == [0, 129, 329]
    assert (p.max_query_len, p.max_seq_len) == (200, 700)


def test_a_decode_behind_a_prefill_is_served_by_prefill(setup):
    _, _, builder = setup()  # vLLM orders decodes first; if it did not, the decode still gets a correct kernel
    md = builder.build(0, _batch([40, 60], [7, 1]))
    assert md.decode is None and md.prefill.num_reqs == 2


def test_cuda_graph_capture_batch_is_all_decodes_with_the_worst_case_split_count(setup):
    _, _, builder = setup()
    cam = _batch([1, 1, 1], [1, 1, 1], pad_reqs_to=8, pad_tokens_to=8, max_seq_len=17408)  # as vLLM captures
    md = builder.build_for_cudagraph_capture(cam)
    d = md.decode
    assert md.prefill is None and (d.num_reqs, d.num_tokens) == (8, 8)
    assert cam.query_start_loc.tolist() == [0, 1, 2, 3, 3, 3, 3, 3, 3]  # padded requests: no query tokens
    assert math.ceil(d.max_seq_len / SPLIT_KV) == builder.workspace[0].shape[0]  # the grid covers any context
    assert (cam.slot_mapping[3:] == -1).all()  # padded tokens: the cache write skips them


def test_more_decodes_than_the_workspace_holds_go_to_prefill(setup):
    _, _, builder = setup(max_num_seqs=4)
    md = builder.build(0, _batch([10] * 6, [1] * 6))
    assert md.decode is None and md.prefill.num_reqs == 6


def test_gqa_groups_wider_than_the_decode_tile_use_prefill_and_no_reorder(setup):
    _, _, builder = setup(heads=32, kv_heads=1)  # group 32 > 16 rows of the decode tile
    assert not builder.use_decode_kernel and builder.reorder_batch_threshold is None and builder.workspace is None
    md = builder.build(0, _batch([100, 200], [1, 1]))
    assert md.decode is None and md.prefill.num_reqs == 2


def test_a_head_size_without_decode_kernels_decodes_through_prefill(setup, monkeypatch):
    monkeypatch.setenv("QIMENG_CAPABILITY", "7.5")  # the sm_75 bundle has no D=256 decode kernel
    _, _, builder = setup(head_dim=256)
    assert builder.artifact.bundle_path.name == "qimeng-default-sm_75-f16.safetensors"
    assert not builder.artifact.plan.has_decode and not builder.use_decode_kernel
    assert builder.build(0, _batch([50], [1])).decode is None
