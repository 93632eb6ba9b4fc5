"""QimengAttentionBackend: what the backend tells vLLM it serves.

Per class: fp16 everywhere, bf16 on sm_80+ (checked per GPU in `supports_combination`); head sizes
64/128/256 (the sizes qimeng-serve builds; whether *this* registry has the one asked for on *this*
GPU is also decided in `supports_combination`, by resolving the artifact); any page size (it is a
runtime argument of the kernels); decoder self-attention with causal masking; sliding windows (a
runtime argument too). Soft-capped logits need a kernel set compiled for that cap: the impl checks
it when the model's layers are built. No fp8 KV cache, sinks, ALiBi, MLA or encoder attention.

The same class serves vLLM 0.26 (abstract `get_kv_cache_shape`, stride order) and 0.33
(`supported_kv_cache_layouts`); the per-layer cache is `[num_blocks, Hkv, page, 2*D]` in both.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from vllm.v1.attention.backend import AttentionBackend, AttentionType, MultipleOf

from qimeng_serve.errors import QimengError
from qimeng_serve.vllm_plugin import artifacts, registration

HEAD_SIZES = (64, 128, 256)  # qimeng_serve.spec.HEAD_DIMS, the sizes `qimeng-serve build` makes


class QimengAttentionBackend(AttentionBackend):
    supported_dtypes: ClassVar[list[torch.dtype]] = [torch.float16, torch.bfloat16]
    # the kernels read K/V in the model's dtype: no fp8 cache
    supported_kv_cache_dtypes: ClassVar[list[str]] = ["auto", "float16", "bfloat16"]
    # vLLM writes the cache (do_kv_cache_update) before forward, with its own reshape_and_cache kernel
    forward_includes_kv_cache_update: bool = False

    @staticmethod
    def get_name() -> str:
        # vLLM looks the layer's backend up as AttentionBackendEnum[get_name()]
        return registration.registered_name()

    @staticmethod
    def get_impl_cls():
        from qimeng_serve.vllm_plugin.impl import QimengAttentionImpl

        return QimengAttentionImpl

    @staticmethod
    def get_builder_cls():
        from qimeng_serve.vllm_plugin.metadata import QimengMetadataBuilder

        return QimengMetadataBuilder

    @staticmethod
    def get_supported_kernel_block_sizes(kv_cache_spec=None) -> list:
        # page size is a kernel argument (any value >= 1); `kv_cache_spec` exists from vLLM 0.27 on
        return [MultipleOf(1)]

    @classmethod
    def get_supported_head_sizes(cls) -> list[int]:
        return list(HEAD_SIZES)

    @classmethod
    def supports_compute_capability(cls, capability) -> bool:
        return (capability.major, capability.minor) >= artifacts.MIN_CAPABILITY

    @classmethod
    def supports_attn_type(cls, attn_type: str) -> bool:
        return attn_type == AttentionType.DECODER

    @classmethod
    def supports_sliding_window(cls) -> bool:
        return True

    @classmethod
    def supports_non_causal(cls) -> bool:
        return False

    @classmethod
    def supports_combination(cls, head_size, dtype, kv_cache_dtype, block_size, use_mla, has_sink, use_sparse,
                             use_mm_prefix, device_capability) -> str | None:
        """The per-GPU answer: a bundle in the registry must serve this capability, dtype and head size."""
        if use_mla or use_sparse or head_size not in HEAD_SIZES:
            return None  # vLLM's own checks already give the reason
        model_dtype = artifacts.dtype_name(dtype)
        if kv_cache_dtype not in (None, "auto") and artifacts.dtype_name(kv_cache_dtype) != model_dtype:
            return (f"qimeng kernels read the KV cache in the model dtype ({dtype}), not {kv_cache_dtype}; "
                    f"drop --kv-cache-dtype or set it to auto")
        try:
            capability = artifacts.device_capability(reported=device_capability)
        except QimengError as exc:
            return f"qimeng: {exc}"
        return artifacts.unsupported_reason(capability, dtype, head_size)

    # ---------------------------------------------------------------- vLLM 0.26's cache-shape API
    @staticmethod
    def get_kv_cache_shape(num_blocks: int, block_size: int, num_kv_heads: int, head_size: int,
                           cache_dtype_str: str = "auto") -> tuple[int, ...]:
        # K and V packed in the last dim, the logical shape every standard vLLM backend uses
        return (num_blocks, num_kv_heads, block_size, 2 * head_size)

    @staticmethod
    def get_kv_cache_stride_order(include_num_layers_dimension: bool = False) -> tuple[int, ...]:
        # the kernels take any strides; follow vLLM's layout choice as TRITON_ATTN does (NHD by default)
        try:
            from vllm.v1.attention.backends.utils import get_kv_cache_layout

            layout = get_kv_cache_layout()
        except ImportError:
            layout = "NHD"
        if layout == "HND":
            return (1, 2, 0, 3, 4) if include_num_layers_dimension else (0, 1, 2, 3)
        return (1, 0, 3, 2, 4) if include_num_layers_dimension else (0, 2, 1, 3)
