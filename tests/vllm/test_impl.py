"""The impl on the CPU: what it refuses at model build time, the profiling run, and its view of vLLM's
KV cache (K and V halves as strided views of the one cache tensor, never copies)."""

from __future__ import annotations

import pytest
import torch

from qimeng_serve.errors import QimengError
from qimeng_serve.vllm_plugin.harness import build_layers
from tests.vllm.conftest import SKIP_REASON

vllm = pytest.importorskip("vllm", reason=SKIP_REASON)


@pytest.fixture
def config(plugin_env, make_vllm_config, monkeypatch):
    monkeypatch.setenv("QIMENG_CAPABILITY", "9.0")
    return make_vllm_config()


def test_the_kernel_set_name_matches_the_builds(registered):
    from qimeng_serve.build.kernel_set import kernel_set_name
    from qimeng_serve.vllm_plugin.artifacts import kernel_set_for

    for cap in (0.0, 50.0, 30, 2.5, None):
        assert kernel_set_for(cap) == kernel_set_name(cap or 0.0)


def test_a_soft_capped_model_gets_the_kernel_set_compiled_for_its_cap(config):
    (layer,) = build_layers(config, 1, logits_soft_cap=50.0)
    assert layer.impl.artifact.bundle_path.name == "qimeng-softcap50-sm_90-f16.safetensors"
    assert layer.impl.artifact.plan.softcap == 50.0


def test_a_soft_cap_without_its_kernel_set_is_refused_with_the_build_command(config):
    with pytest.raises(QimengError) as exc:
        build_layers(config, 1, logits_soft_cap=30.0)
    assert "caps attention logits at 30" in exc.value.message and "kernel set softcap30" in exc.value.message
    assert "--softcap 30" in exc.value.fix


def test_alibi_and_a_one_key_window_are_refused(config):
    with pytest.raises(QimengError, match="ALiBi"):
        build_layers(config, 1, alibi_slopes=[0.5] * 8)
    with pytest.raises(QimengError, match="sliding window of 1 key"):
        build_layers(config, 1, per_layer_sliding_window=1)


def test_sliding_window_reaches_the_kernels_as_keys_including_the_diagonal(config):
    (layer,) = build_layers(config, 1, per_layer_sliding_window=4096)
    assert layer.impl.sliding_window == 4096  # ops: window_left = window - 1, FlashAttention's convention


def test_profiling_run_zero_fills_the_output(config):
    (layer,) = build_layers(config, 1)
    out = torch.full((7, 8, 128), float("nan"), dtype=torch.float16)
    q = torch.randn(7, 8, 128, dtype=torch.float16)
    layer.impl.forward(layer, q, q[:, :2], q[:, :2], torch.empty(0), None, out)
    assert torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize("physical", ["NHD", "HND"])
def test_cache_views_are_strided_halves_of_vllms_cache(config, physical):
    (layer,) = build_layers(config, 1)
    blocks, page, hkv, d = 5, 16, 2, 128
    if physical == "NHD":  # memory [blocks, page, Hkv, 2D], handed over as the logical [blocks, Hkv, page, 2D]
        kv_cache = torch.randn(blocks, page, hkv, 2 * d).half().permute(0, 2, 1, 3)
    else:
        kv_cache = torch.randn(blocks, hkv, page, 2 * d).half()
    k, v = layer.impl._cache_views(kv_cache)
    assert k.shape == v.shape == (blocks, page, hkv, d)
    assert k.data_ptr() == kv_cache.data_ptr() and v.data_ptr() == kv_cache.data_ptr() + d * 2
    assert k.stride() == v.stride() == kv_cache.transpose(1, 2).stride() and k.stride(-1) == 1
    assert torch.equal(k[3, 7, 1], kv_cache[3, 1, 7, :d]) and torch.equal(v[3, 7, 1], kv_cache[3, 1, 7, d:])
