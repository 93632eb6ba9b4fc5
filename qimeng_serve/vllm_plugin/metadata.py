"""From vLLM's CommonAttentionMetadata to the launch metadata of one step: decodes first, then prefills.

The batch is ordered decodes-first (vLLM reorders it for us: `reorder_batch_threshold = 1`), so the
two parts are plain slices of vLLM's own device tensors: no copies, no host syncs. The query rows
keep their absolute offsets (`query_start_loc[num_decodes:]` addresses the full q), so both kernels
take the whole q/out and each reads only its own rows.

CUDA graphs: UNIFORM_SINGLE_TOKEN_DECODE. A captured decode step replays with launch sizes fixed at
capture: the batch (vLLM pads it to the capture size, padded rows have 0 query tokens and 0 keys) and
the number of KV splits, which comes from max_seq_len; vLLM captures with max_seq_len =
max_model_len, so the grid covers every later context and empty splits contribute nothing. Every
pointer is a persistent buffer (vLLM's metadata tensors, the builder's workspace). Mixed or prefill
batches run eagerly (piecewise graphs around attention): their split point and grid change per step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import torch
from vllm.v1.attention.backend import (
    AttentionCGSupport,
    AttentionMetadata,
    AttentionMetadataBuilder,
    CommonAttentionMetadata,
)
from vllm.v1.attention.backends.utils import split_decodes_and_prefills

from qimeng_serve.errors import QimengError
from qimeng_serve.vllm_plugin import artifacts

log = logging.getLogger("vllm.qimeng")

DECODE_QUERY_LEN = 1  # a decode is one new token; longer queries (spec decode, chunks) go to prefill


@dataclass
class DecodePart:
    num_reqs: int
    num_tokens: int
    cu_seqlens_q: torch.Tensor  # [num_reqs + 1], absolute token offsets (starts at 0)
    seq_lens: torch.Tensor  # [num_reqs] context + new tokens
    block_table: torch.Tensor  # [num_reqs, max_blocks]
    max_seq_len: int  # upper bound; sets the number of KV splits
    workspace: tuple[torch.Tensor, torch.Tensor]  # (o_partial, lse), preallocated by the builder


@dataclass
class PrefillPart:
    num_reqs: int
    num_tokens: int
    cu_seqlens_q: torch.Tensor  # [num_reqs + 1], absolute token offsets into the whole batch
    seq_lens: torch.Tensor
    block_table: torch.Tensor
    max_query_len: int
    max_seq_len: int


@dataclass
class QimengMetadata(AttentionMetadata):
    num_actual_tokens: int  # rows past this are padding: never read, never written
    decode: DecodePart | None
    prefill: PrefillPart | None
    slot_mapping: torch.Tensor


class QimengMetadataBuilder(AttentionMetadataBuilder[QimengMetadata]):
    _cudagraph_support: ClassVar[AttentionCGSupport] = AttentionCGSupport.UNIFORM_SINGLE_TOKEN_DECODE

    def __init__(self, kv_cache_spec, layer_names: list[str], vllm_config, device: torch.device):
        super().__init__(kv_cache_spec, layer_names, vllm_config, device)
        self.head_size = kv_cache_spec.head_size
        self.num_heads_kv = kv_cache_spec.num_kv_heads
        impls = _layer_impls(vllm_config, layer_names)
        self.num_heads_q = (impls[0].num_heads if impls
                            else vllm_config.model_config.get_num_attention_heads(vllm_config.parallel_config))
        self.artifact = (impls[0].artifact if impls else
                         artifacts.serving_artifact(artifacts.device_capability(device), kv_cache_spec.dtype,
                                                    self.head_size))
        plan = self.artifact.plan
        self.gqa_group = self.num_heads_q // self.num_heads_kv
        self.use_decode_kernel = plan.decode_fits(self.gqa_group)
        # decodes first: vLLM moves requests with <= 1 query token to the front of the batch
        self._init_reorder_batch_threshold(DECODE_QUERY_LEN if self.use_decode_kernel else None)
        self.max_model_len = vllm_config.model_config.max_model_len
        self.max_decode_tokens = 0
        self.decode_kv_capacity = 0  # the longest context the workspace has splits for
        self.workspace = None
        if self.use_decode_kernel:
            sched = vllm_config.scheduler_config
            self.max_decode_tokens = min(sched.max_num_seqs, sched.max_num_batched_tokens)
            # allocated once, before any CUDA-graph capture: the graph keeps these pointers
            part_shape, lse_shape = plan.decode_workspace_shapes(self.max_decode_tokens, self.num_heads_q,
                                                                 self.max_model_len)
            self.workspace = (torch.empty(part_shape, dtype=torch.float32, device=device),
                              torch.empty(lse_shape, dtype=torch.float32, device=device))
            self.decode_kv_capacity = part_shape[0] * plan.decode_split
            mib = sum(t.numel() * t.element_size() for t in self.workspace) / 2**20
            log.info("qimeng-serve: split-KV decode workspace %.1f MiB (%d splits of %d keys x %d decodes x %d heads)",
                     mib, part_shape[0], plan.decode_split, self.max_decode_tokens, self.num_heads_q)
        if device.type == "cuda":
            self.artifact.kernels()  # load the cubins now, not inside a graph capture

    def build(self, common_prefix_len: int, common_attn_metadata: CommonAttentionMetadata,
              fast_build: bool = False) -> QimengMetadata:
        cam = common_attn_metadata
        if cam.causal is not True:
            raise QimengError("the qimeng backend runs causal decoder attention only",
                              fix="use another --attention-backend for this model")
        num_reqs = cam.num_reqs
        if self.use_decode_kernel:
            num_decodes, num_prefills, num_decode_tokens, _ = split_decodes_and_prefills(
                cam, decode_threshold=DECODE_QUERY_LEN)
            if num_decode_tokens > self.max_decode_tokens or cam.max_seq_len > self.decode_kv_capacity:
                num_decodes, num_decode_tokens = 0, 0  # more than the workspace holds: prefill serves them
                num_prefills = num_reqs
        else:
            num_decodes, num_prefills, num_decode_tokens = 0, num_reqs, 0
        qsl, seq_lens, table = cam.query_start_loc, cam.seq_lens, cam.block_table_tensor
        decode = prefill = None
        if num_decodes:
            decode = DecodePart(num_decodes, num_decode_tokens, qsl[:num_decodes + 1], seq_lens[:num_decodes],
                                table[:num_decodes], cam.max_seq_len, self.workspace)
        if num_prefills:
            total = int(cam.query_start_loc_cpu[num_reqs])
            prefill = PrefillPart(num_prefills, total - num_decode_tokens, qsl[num_decodes:num_reqs + 1],
                                  seq_lens[num_decodes:num_reqs], table[num_decodes:num_reqs], cam.max_query_len,
                                  cam.max_seq_len)
        return QimengMetadata(cam.num_actual_tokens, decode, prefill, cam.slot_mapping)


def _layer_impls(vllm_config, layer_names: list[str]) -> list:
    """Our impls of this group's layers (they resolved the artifact with the model's soft-cap)."""
    from qimeng_serve.vllm_plugin.impl import QimengAttentionImpl

    context = vllm_config.compilation_config.static_forward_context
    impls = [getattr(context.get(name), "impl", None) for name in layer_names]
    return [impl for impl in impls if isinstance(impl, QimengAttentionImpl)]
