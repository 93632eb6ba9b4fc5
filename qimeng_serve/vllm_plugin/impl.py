"""QimengAttentionImpl: one attention layer's forward pass on vLLM's paged KV cache.

vLLM hands each layer its cache as `[num_blocks, Hkv, page, 2*D]` (logical; physically NHD or HND).
K is `[..., :D]` and V is `[..., D:]`; transposed to `[num_blocks, page, Hkv, D]` they are views the
kernels read through their strides, never copied. The decode rows of a step run the split-KV paged
decode kernel, the prefill rows the paged prefill kernel (see metadata.py for the split).
"""

from __future__ import annotations

import logging

import torch
from vllm.v1.attention.backend import AttentionImpl, AttentionLayer, AttentionType

from qimeng_serve.errors import QimengError
from qimeng_serve.vllm_plugin import artifacts
from qimeng_serve.vllm_plugin.metadata import QimengMetadata

log = logging.getLogger("vllm.qimeng")


class QimengAttentionImpl(AttentionImpl[QimengMetadata]):
    can_return_lse_for_decode = False
    supports_dcp = False  # vLLM 0.26 assumes True unless told

    def __init__(self, num_heads: int, head_size: int, scale: float, num_kv_heads: int | None = None,
                 alibi_slopes: list[float] | None = None, sliding_window: int | None = None,
                 kv_cache_dtype: str = "auto", logits_soft_cap: float | None = None,
                 attn_type: str = AttentionType.DECODER, kv_sharing_target_layer_name: str | None = None,
                 **extra) -> None:
        unsupported = _unsupported_features(alibi_slopes, attn_type, sliding_window, kv_cache_dtype, extra)
        if unsupported:
            raise QimengError(f"the qimeng attention backend does not support {unsupported}",
                              fix="use another --attention-backend for this model")
        self.num_heads = num_heads
        self.head_size = head_size
        self.scale = float(scale)
        self.num_kv_heads = num_kv_heads or num_heads
        self.sliding_window = int(sliding_window or 0)  # keys visible to a query, the diagonal included
        self.kv_cache_dtype = kv_cache_dtype
        self.logits_soft_cap = float(logits_soft_cap or 0.0)
        self.attn_type = attn_type
        self.kv_sharing_target_layer_name = kv_sharing_target_layer_name
        self.dtype = _model_dtype()
        kernel_set = artifacts.kernel_set_for(self.logits_soft_cap)
        try:
            self.artifact = artifacts.serving_artifact(artifacts.device_capability(), self.dtype, head_size,
                                                       kernel_set)
        except QimengError as exc:
            if kernel_set == artifacts.DEFAULT_KERNEL_SET:
                raise
            # the cap is compiled into the kernels: a model with a soft-cap needs its own kernel set
            raise QimengError(f"this model caps attention logits at {self.logits_soft_cap:g}; {exc.message}",
                              fix=f"build that kernel set (qimeng-serve build --arch ... --softcap "
                                  f"{self.logits_soft_cap:g}) into the registry") from None
        if self.artifact.plan.softcap != self.logits_soft_cap:
            raise QimengError(f"{self.artifact.bundle_path.name} was compiled for logits soft-cap "
                              f"{self.artifact.plan.softcap:g}, the model uses {self.logits_soft_cap:g}",
                              fix="rebuild the kernel set with the model's --softcap")

    def forward(self, layer: AttentionLayer, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                kv_cache: torch.Tensor, attn_metadata: QimengMetadata, output: torch.Tensor,
                output_scale: torch.Tensor | None = None,
                output_block_scale: torch.Tensor | None = None) -> torch.Tensor:
        if output_scale is not None or output_block_scale is not None:
            raise NotImplementedError("fused output quantization is not supported by the qimeng backend")
        if attn_metadata is None:
            return output.fill_(0)  # vLLM's profiling run: no cache, no metadata
        n = attn_metadata.num_actual_tokens
        q, out = query[:n], output[:n]
        k_cache, v_cache = self._cache_views(kv_cache)
        ks = self.artifact.kernels()
        common = {"causal": True, "softmax_scale": self.scale, "window": self.sliding_window,
                  "softcap": self.logits_soft_cap}
        if attn_metadata.decode is not None:
            d = attn_metadata.decode
            ks.paged_decode(q, k_cache, v_cache, d.block_table, d.cu_seqlens_q, d.seq_lens, 1, d.max_seq_len,
                            workspace=d.workspace, out=out, **common)
        if attn_metadata.prefill is not None:
            p = attn_metadata.prefill
            ks.paged_prefill(q, k_cache, v_cache, p.block_table, p.cu_seqlens_q, p.seq_lens, p.max_query_len,
                             p.max_seq_len, out=out, **common)
        return output

    def do_kv_cache_update(self, layer: AttentionLayer, key: torch.Tensor, value: torch.Tensor,
                           kv_cache: torch.Tensor, slot_mapping: torch.Tensor) -> None:
        """Write this step's K/V into the cache with vLLM's own kernel (slots < 0 are padding: skipped)."""
        from vllm.v1.attention.ops.triton_reshape_and_cache_flash import (
            triton_reshape_and_cache_flash,
        )

        k_cache, v_cache = self._cache_views(kv_cache)
        triton_reshape_and_cache_flash(key, value, k_cache, v_cache, slot_mapping, self.kv_cache_dtype,
                                       layer._k_scale, layer._v_scale)

    def _cache_views(self, kv_cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[num_blocks, Hkv, page, 2D] -> K, V as [num_blocks, page, Hkv, D] views (strides, no copy)."""
        kv = kv_cache.transpose(1, 2)
        return kv[..., :self.head_size], kv[..., self.head_size:]


def _model_dtype() -> torch.dtype:
    """The dtype the model runs in; vLLM builds layers inside its config context with this default dtype."""
    from vllm.config import get_current_vllm_config_or_none

    config = get_current_vllm_config_or_none()
    model_config = config.model_config if config is not None else None
    return model_config.dtype if model_config is not None else torch.get_default_dtype()


def _unsupported_features(alibi_slopes, attn_type, sliding_window, kv_cache_dtype, extra: dict) -> str:
    found = []
    if alibi_slopes is not None:
        found.append("ALiBi")
    if attn_type != AttentionType.DECODER:
        found.append(f"{attn_type} attention (decoder self-attention only)")
    if sliding_window == 1:
        found.append("a sliding window of 1 key")
    if kv_cache_dtype not in ("auto", "float16", "bfloat16"):
        found.append(f"a {kv_cache_dtype} KV cache")
    if extra.get("sinks") is not None:
        found.append("attention sinks")
    return ", ".join(found)
