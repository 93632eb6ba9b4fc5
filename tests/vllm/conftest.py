"""Fixtures for the vLLM plugin's CPU tests: a real vLLM 0.33 (installed by scripts/setup.sh without its
CUDA dependencies), a small registry, a tiny Llama config, and vLLM's own config objects."""

from __future__ import annotations

import json
import os

import pytest

from tests.vllm.serving_registry import make_serving_registry

SKIP_REASON = "vLLM is not installed: scripts/setup.sh installs vllm 0.33 for these tests (unless QIMENG_SKIP_VLLM=1)"
QIMENG_VARS = ("QIMENG_REGISTRY", "QIMENG_REPO", "QIMENG_REVISION", "QIMENG_LOCK", "QIMENG_CAPABILITY")


@pytest.fixture(scope="session")
def serving_registry(tmp_path_factory):
    return make_serving_registry(tmp_path_factory.mktemp("serving") / "registry")


@pytest.fixture
def plugin_env(monkeypatch, serving_registry):
    """QIMENG_REGISTRY = the test registry, no other QIMENG_* from the caller, no artifact cached."""
    from qimeng_serve.vllm_plugin import artifacts

    for var in QIMENG_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("QIMENG_REGISTRY", str(serving_registry))
    artifacts.clear_cache()
    yield serving_registry
    artifacts.clear_cache()


@pytest.fixture(scope="session")
def registered():
    """The plugin registered the way vLLM does it: load_general_plugins() runs our entry point."""
    pytest.importorskip("vllm", reason=SKIP_REASON)
    from vllm.plugins import load_general_plugins

    load_general_plugins()
    from vllm.v1.attention.backends.registry import AttentionBackendEnum

    return AttentionBackendEnum


def write_model_config(path, *, heads: int = 8, kv_heads: int = 2, head_dim: int = 128, layers: int = 2):
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": heads * head_dim,
        "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
        "head_dim": head_dim, "intermediate_size": 512, "vocab_size": 1024, "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-5, "hidden_act": "silu", "rope_theta": 10000.0, "tie_word_embeddings": False,
        "torch_dtype": "float16"}))
    return path


def new_vllm_config(model_dir, *, dtype="float16", max_model_len=17408, max_num_seqs=64, block_size=16):
    """A real VllmConfig (ModelConfig from a local config.json, CPU device); works on vLLM 0.26 and 0.33."""
    from vllm.config import (
        CacheConfig,
        DeviceConfig,
        ModelConfig,
        SchedulerConfig,
        VllmConfig,
    )

    model_config = ModelConfig(model=str(model_dir), dtype=dtype, max_model_len=max_model_len, skip_tokenizer_init=True)
    return VllmConfig(model_config=model_config, cache_config=CacheConfig(block_size=block_size),
                      device_config=DeviceConfig(device="cpu"),
                      scheduler_config=SchedulerConfig(max_model_len=max_model_len, is_encoder_decoder=False,
                                                       max_num_seqs=max_num_seqs, max_num_batched_tokens=8192))


@pytest.fixture
def make_vllm_config(tmp_path, registered):
    """new_vllm_config for a tiny Llama with the given head counts."""

    def make(*, heads=8, kv_heads=2, head_dim=128, **kwargs):
        model = write_model_config(tmp_path / f"model-{heads}-{kv_heads}-{head_dim}", heads=heads, kv_heads=kv_heads,
                                   head_dim=head_dim)
        return new_vllm_config(model, **kwargs)

    return make


def build_layers(vllm_config, count: int = 2, **kwargs) -> list:
    """vLLM's own Attention layers on our backend, built as a model builds them (config context,
    default dtype = the model's); each registers itself in the config's forward context."""
    import torch
    from vllm.config import set_current_vllm_config
    from vllm.model_executor.layers.attention import Attention

    from qimeng_serve.vllm_plugin.backend import QimengAttentionBackend

    mc = vllm_config.model_config
    heads, kv_heads, head_dim = mc.get_num_attention_heads(vllm_config.parallel_config), \
        mc.get_num_kv_heads(vllm_config.parallel_config), mc.get_head_size()
    before = torch.get_default_dtype()
    try:
        with set_current_vllm_config(vllm_config):
            torch.set_default_dtype(mc.dtype)
            return [Attention(heads, head_dim, head_dim ** -0.5, num_kv_heads=kv_heads,
                              prefix=f"model.layers.{i}.self_attn.attn", attn_backend=QimengAttentionBackend, **kwargs)
                    for i in range(count)]
    finally:
        torch.set_default_dtype(before)


def kv_cache_spec(vllm_config):
    import torch
    from vllm.v1.kv_cache_interface import FullAttentionSpec

    mc = vllm_config.model_config
    return FullAttentionSpec(block_size=vllm_config.cache_config.block_size,
                             num_kv_heads=mc.get_num_kv_heads(vllm_config.parallel_config),
                             head_size=mc.get_head_size(), dtype=mc.dtype if mc.dtype != "auto" else torch.float16)


def subprocess_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in QIMENG_VARS and k != "VLLM_PLUGINS"}
    env.update(extra)
    return env
