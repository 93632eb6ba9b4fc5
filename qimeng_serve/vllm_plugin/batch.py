"""vLLM batch metadata for a described batch, the way vLLM's model runner lays it out.

Used by the plugin's CPU tests, the GPU correctness checks and the benchmark, so all three drive the
backend with vLLM's own CommonAttentionMetadata: int32 query_start_loc / seq_lens / block table,
int64 slot mapping, shuffled block ids (block 0 is vLLM's null block and stays unused), and optional
CUDA-graph style padding (requests with 0 query tokens and 0 keys, token slots of -1).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

NULL_BLOCK = 0


@dataclass(frozen=True)
class BatchSpec:
    seq_lens: tuple[int, ...]  # per request: context + new tokens
    query_lens: tuple[int, ...]  # per request: new tokens (1 for a decode)
    name: str = ""

    def __post_init__(self):
        if len(self.seq_lens) != len(self.query_lens):
            raise ValueError("seq_lens and query_lens need one entry per request")
        if any(q > s or q < 0 for q, s in zip(self.query_lens, self.seq_lens)):
            raise ValueError("a request's query cannot be longer than its sequence")

    @property
    def num_tokens(self) -> int:
        return sum(self.query_lens)


@dataclass
class Batch:
    spec: BatchSpec
    metadata: object  # vllm CommonAttentionMetadata
    block_size: int
    num_blocks: int  # blocks the KV cache needs (ids 1 .. num_blocks - 1 are used)


def blocks_needed(spec: BatchSpec, block_size: int) -> int:
    return 1 + sum(math.ceil(s / block_size) for s in spec.seq_lens)


def make_batch(spec: BatchSpec, block_size: int, device, *, num_blocks: int | None = None,
               pad_reqs_to: int | None = None, pad_tokens_to: int | None = None, max_seq_len: int | None = None,
               table_width: int | None = None, seed: int = 0) -> Batch:
    """CommonAttentionMetadata for `spec` with a shuffled block table; pads like a CUDA-graph batch if asked.

    table_width: block-table columns (vLLM's runner uses max_model_len / block_size for every batch)."""
    from vllm.v1.attention.backend import CommonAttentionMetadata

    gen = torch.Generator().manual_seed(seed)
    num_reqs = len(spec.seq_lens)
    reqs = max(num_reqs, pad_reqs_to or 0)
    tokens = max(spec.num_tokens, pad_tokens_to or 0)
    per_req = [math.ceil(s / block_size) for s in spec.seq_lens]
    num_blocks = num_blocks or blocks_needed(spec, block_size)
    if 1 + sum(per_req) > num_blocks:
        raise ValueError(f"the batch needs {1 + sum(per_req)} blocks, the cache has {num_blocks}")
    ids = (torch.randperm(num_blocks - 1, generator=gen) + 1).to(torch.int32)  # never the null block
    table = torch.full((reqs, max(max(per_req, default=1), table_width or 1)), NULL_BLOCK, dtype=torch.int32)
    used = 0
    for b, n in enumerate(per_req):
        table[b, :n] = ids[used:used + n]
        used += n
    seq_lens = torch.zeros(reqs, dtype=torch.int32)
    seq_lens[:num_reqs] = torch.tensor(spec.seq_lens, dtype=torch.int32)
    qsl = torch.zeros(reqs + 1, dtype=torch.int32)
    qsl[1:num_reqs + 1] = torch.cumsum(torch.tensor(spec.query_lens, dtype=torch.int32), 0)
    qsl[num_reqs + 1:] = qsl[num_reqs]  # padded requests: 0 query tokens
    slots = torch.full((tokens,), -1, dtype=torch.int64)  # padded tokens: -1, the cache write skips them
    for b, (s, q) in enumerate(zip(spec.seq_lens, spec.query_lens)):
        pos = torch.arange(s - q, s)
        slots[int(qsl[b]):int(qsl[b]) + q] = table[b, pos // block_size].to(torch.int64) * block_size + pos % block_size
    fields = {
        "query_start_loc": qsl.to(device), "query_start_loc_cpu": qsl,
        "seq_lens": seq_lens.to(device), "num_reqs": reqs, "num_actual_tokens": tokens,
        "max_query_len": max(spec.query_lens, default=0),
        "max_seq_len": max_seq_len if max_seq_len is not None else max(spec.seq_lens, default=0),
        "block_table_tensor": table.to(device), "slot_mapping": slots.to(device), "causal": True,
    }
    optional = {"seq_lens_cpu_upper_bound": seq_lens, "_seq_lens_cpu": seq_lens,
                "is_prefilling": torch.tensor([q > 1 for q in spec.query_lens] + [False] * (reqs - num_reqs))}
    known = {f.name for f in dataclasses.fields(CommonAttentionMetadata)}
    fields.update({k: v for k, v in optional.items() if k in known})  # vLLM 0.26 and 0.33 differ here
    return Batch(spec, CommonAttentionMetadata(**fields), block_size, num_blocks)
