"""Random attention problems for the TL interpreter, the reference and (later) GPU kernels.

A Problem holds the logical per-sequence tensors (q[b]: [Hq, Lq, D]; k[b], v[b]: [Hkv, Lk, D]) and,
for the paged ops, the physical layout of docs/tl.md §4 as vLLM has it: Q in a varlen
[tokens, Hq, D] tensor cut by cu_seqlens_q, K/V in a paged cache [num_blocks, Hkv, page, D] (a
strided view, as vLLM's cache is) reached through a shuffled block table. A kernel that ignores the
block table, or reads a slot past a sequence's end, reads garbage and misses the reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from qimeng_serve.errors import QimengError
from qimeng_serve.spec import AttentionSpec

PAGED_OPS = ("paged_prefill", "paged_decode")
# Unused cache slots hold large finite garbage: visible in the error if read, yet finite so that a
# kernel that loads a whole page and masks the scores (0 * garbage = 0) stays correct.
_POISON_SCALE = 100.0


@dataclass
class Problem:
    op: str
    batch: int
    heads_kv: int
    heads_q: int
    head_dim: int
    seqlen_q: list[int]
    seqlen_k: list[int]
    dtype: torch.dtype
    softmax_scale: float
    q: list[torch.Tensor]  # per sequence [Hq, Lq, D]
    k: list[torch.Tensor]  # per sequence [Hkv, Lk, D]
    v: list[torch.Tensor]
    page_size: int = 0  # paged ops only, as the fields below
    q_varlen: torch.Tensor | None = None  # [tokens, Hq, D]; sequence b starts at cu_seqlens_q[b]
    cu_seqlens_q: torch.Tensor | None = None  # [batch + 1] int64
    k_cache: torch.Tensor | None = None  # [num_blocks, Hkv, page_size, D], not contiguous
    v_cache: torch.Tensor | None = None
    block_table: torch.Tensor | None = None  # [batch, max blocks per sequence] int64, -1 where unused

    @property
    def paged(self) -> bool:
        return self.op in PAGED_OPS

    @property
    def max_seq_q(self) -> int:
        return max(self.seqlen_q)

    @property
    def max_seq_k(self) -> int:
        return max(self.seqlen_k)

    def runtime_values(self) -> dict[str, int | float]:
        """TL runtime scalars (docs/tl.md §3); the per-sequence arrays are `seqlen_q` / `seqlen_k`."""
        return {"batch": self.batch, "heads_q": self.heads_q, "heads_kv": self.heads_kv,
                "max_seq_q": self.max_seq_q, "max_seq_k": self.max_seq_k,
                "softmax_scale": self.softmax_scale, "LOG2E": math.log2(math.e)}


def make_problem(spec: AttentionSpec, *, batch: int, heads_kv: int, seqlen_q: list[int], seqlen_k: list[int],
                 dtype: torch.dtype = torch.float32, page_size: int = 16, seed: int = 0,
                 softmax_scale: float | None = None) -> Problem:
    """Fresh random Q/K/V for spec (seeded); the causal diagonal of sequence b sits at offset Lk - Lq."""
    seqlen_q, seqlen_k = list(seqlen_q), list(seqlen_k)
    _validate(spec, batch, heads_kv, seqlen_q, seqlen_k, dtype, page_size)
    gen = torch.Generator().manual_seed(seed)
    d, hq = spec.head_dim, heads_kv * spec.gqa_group

    def rand(*shape):
        return torch.randn(*shape, generator=gen).to(dtype)

    p = Problem(
        op=spec.op, batch=batch, heads_kv=heads_kv, heads_q=hq, head_dim=d, seqlen_q=seqlen_q, seqlen_k=seqlen_k,
        dtype=dtype, softmax_scale=softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(d),
        q=[rand(hq, lq, d) for lq in seqlen_q], k=[rand(heads_kv, lk, d) for lk in seqlen_k],
        v=[rand(heads_kv, lk, d) for lk in seqlen_k],
    )
    if p.paged:
        _add_paged_layout(p, page_size, gen)
    return p


def _validate(spec, batch, heads_kv, seqlen_q, seqlen_k, dtype, page_size) -> None:
    if batch < 1 or heads_kv < 1:
        raise QimengError(f"batch {batch} and heads_kv {heads_kv} must be at least 1", fix="use positive sizes")
    if len(seqlen_q) != batch or len(seqlen_k) != batch:
        raise QimengError(f"{len(seqlen_q)} seqlen_q and {len(seqlen_k)} seqlen_k values for batch {batch}",
                          fix="give one query length and one KV length per sequence")
    if not dtype.is_floating_point:
        raise QimengError(f"dtype {dtype} is not a floating-point dtype", fix="use torch.float32, float16 or bfloat16")
    if page_size < 1:
        raise QimengError(f"page_size {page_size} must be at least 1", fix="use vLLM's block size, e.g. 16")
    for b, (lq, lk) in enumerate(zip(seqlen_q, seqlen_k)):
        if lq < 1:
            raise QimengError(f"seqlen_q[{b}] = {lq}: every sequence needs a query token", fix="use seqlen_q >= 1")
        if lk < lq:
            raise QimengError(
                f"seqlen_k[{b}] = {lk} < seqlen_q[{b}] = {lq}: the queries are the last Lq of the Lk tokens",
                fix="use seqlen_k >= seqlen_q (chunked prefill: seqlen_k = tokens cached before + seqlen_q)")
        if spec.op == "paged_decode" and lq > spec.decode_query_len:
            raise QimengError(f"seqlen_q[{b}] = {lq} > decode_query_len {spec.decode_query_len}",
                              fix="raise the spec's decode_query_len or use at most that many query tokens")


def _add_paged_layout(p: Problem, page_size: int, gen: torch.Generator) -> None:
    """Varlen Q; a paged K/V cache in shuffled blocks with spare blocks, the unused slots poisoned."""
    p.page_size = page_size
    p.cu_seqlens_q = torch.tensor([0] + p.seqlen_q, dtype=torch.int64).cumsum(0)
    p.q_varlen = torch.cat([q.transpose(0, 1) for q in p.q]).contiguous()
    n_blocks = [math.ceil(lk / page_size) for lk in p.seqlen_k]
    used = sum(n_blocks)
    total = used + max(2, used // 4)  # spare blocks that belong to no sequence
    order = torch.randperm(total, generator=gen)
    p.block_table = torch.full((p.batch, max(n_blocks)), -1, dtype=torch.int64)
    start = 0
    for b, n in enumerate(n_blocks):
        p.block_table[b, :n] = order[start:start + n]
        start += n
    p.k_cache = _paged_cache(p.k, p, total, gen)
    p.v_cache = _paged_cache(p.v, p, total, gen)


def _paged_cache(seqs: list[torch.Tensor], p: Problem, total: int, gen: torch.Generator) -> torch.Tensor:
    page = p.page_size
    # stored [blocks, page, Hkv, D] (vLLM's flash layout) and seen as [blocks, Hkv, page, D]: any strides
    store = (torch.randn(total, page, p.heads_kv, p.head_dim, generator=gen) * _POISON_SCALE).to(p.dtype)
    cache = store.permute(0, 2, 1, 3)
    for b, x in enumerate(seqs):
        for i in range(math.ceil(x.shape[1] / page)):
            rows = x[:, i * page:(i + 1) * page]
            cache[p.block_table[b, i], :, :rows.shape[1]] = rows
    return cache
