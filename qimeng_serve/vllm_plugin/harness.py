"""Drive a vLLM attention backend outside a model, with vLLM's own objects.

A VllmConfig for a config-only tiny Llama, vLLM Attention layers on a chosen backend (they build the
backend's impl exactly as a model does), the backend's metadata builder, and a KV cache allocated
the way vLLM's runner allocates it (physical order from the backend's stride order, handed over as
the logical view). The plugin's CPU tests, the GPU correctness and CUDA-graph checks and the
benchmark all use it, so every backend is measured on identical terms. Works on vLLM 0.26 and 0.33.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch


def write_model_config(path: Path, *, heads: int = 8, kv_heads: int = 2, head_dim: int = 128, layers: int = 2,
                       hidden: int | None = None, max_positions: int = 32768, dtype: str = "float16") -> Path:
    """config.json of a Llama; enough for ModelConfig (no weights, no tokenizer)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden or heads * head_dim,
        "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
        "head_dim": head_dim, "intermediate_size": 512, "vocab_size": 1024, "max_position_embeddings": max_positions,
        "rms_norm_eps": 1e-5, "hidden_act": "silu", "rope_theta": 10000.0, "tie_word_embeddings": False,
        "torch_dtype": dtype}))
    return path


def new_vllm_config(model_dir: Path, *, dtype: str = "float16", max_model_len: int = 17408, max_num_seqs: int = 64,
                    block_size: int = 16, device: str | None = None):
    """A real VllmConfig; device None lets vLLM pick (CUDA on a GPU machine), "cpu" works without one."""
    from vllm.config import (
        CacheConfig,
        DeviceConfig,
        ModelConfig,
        SchedulerConfig,
        VllmConfig,
    )

    model_config = ModelConfig(model=str(model_dir), dtype=dtype, max_model_len=max_model_len, skip_tokenizer_init=True)
    extra = {"device_config": DeviceConfig(device=device)} if device else {}
    return VllmConfig(model_config=model_config, cache_config=CacheConfig(block_size=block_size),
                      scheduler_config=SchedulerConfig(max_model_len=max_model_len, is_encoder_decoder=False,
                                                       max_num_seqs=max_num_seqs, max_num_batched_tokens=8192),
                      **extra)


def build_layers(vllm_config, count: int = 2, *, backend=None, prefix: str = "model.layers", device=None,
                 **kwargs) -> list:
    """vLLM Attention layers on `backend` (default: qimeng), built as a model builds them: inside the
    config context, with the model's default dtype and on `device` (their k/v scales live there);
    each registers in the config's forward context."""
    from vllm.config import set_current_vllm_config
    from vllm.model_executor.layers.attention import Attention

    if backend is None:
        from qimeng_serve.vllm_plugin.backend import QimengAttentionBackend as backend
    mc, pc = vllm_config.model_config, vllm_config.parallel_config
    heads, kv_heads, head_dim = mc.get_num_attention_heads(pc), mc.get_num_kv_heads(pc), mc.get_head_size()
    before = torch.get_default_dtype()
    try:
        with set_current_vllm_config(vllm_config), torch.device(device or "cpu"):
            torch.set_default_dtype(mc.dtype)
            return [Attention(heads, head_dim, head_dim ** -0.5, num_kv_heads=kv_heads,
                              prefix=f"{prefix}.{i}.self_attn.attn", attn_backend=backend, **kwargs)
                    for i in range(count)]
    finally:
        torch.set_default_dtype(before)


def kv_cache_spec(vllm_config, block_size: int | None = None):
    from vllm.v1.kv_cache_interface import FullAttentionSpec

    mc, pc = vllm_config.model_config, vllm_config.parallel_config
    return FullAttentionSpec(block_size=block_size or vllm_config.cache_config.block_size,
                             num_kv_heads=mc.get_num_kv_heads(pc), head_size=mc.get_head_size(), dtype=mc.dtype)


def new_builder(backend, layers: list, vllm_config, device, block_size: int | None = None):
    """The backend's metadata builder for these layers (one KV-cache group, pages of `block_size`)."""
    from vllm.config import set_current_vllm_config

    with set_current_vllm_config(vllm_config):
        return backend.get_builder_cls()(kv_cache_spec(vllm_config, block_size),
                                         [layer.layer_name for layer in layers], vllm_config, torch.device(device))


def new_kv_cache(backend, num_blocks: int, block_size: int, num_kv_heads: int, head_size: int, dtype, device,
                 vllm_config=None) -> torch.Tensor:
    """One layer's cache as vLLM 0.26 allocates it: physical order from get_kv_cache_stride_order,
    returned as the logical get_kv_cache_shape view. The stride order may read the config (vLLM 0.26
    asks its KV connector), so it is computed inside `vllm_config`'s context when one is given."""
    from contextlib import nullcontext

    shape = backend.get_kv_cache_shape(num_blocks, block_size, num_kv_heads, head_size)
    if vllm_config is not None:
        from vllm.config import set_current_vllm_config

        context = set_current_vllm_config(vllm_config)
    else:
        context = nullcontext()
    try:
        with context:
            order = backend.get_kv_cache_stride_order()
    except (AttributeError, NotImplementedError):
        order = tuple(range(len(shape)))
    physical = torch.empty([shape[i] for i in order], dtype=dtype, device=device)
    inverse = [order.index(i) for i in range(len(order))]
    return physical.permute(*inverse)
