"""Reference attention in float64, straight from the definition: what every TL program must compute.

Conventions (shared with docs/tl.md §3, §6): logits are soft-capped after scaling
(cap * tanh(s * scale / cap)); query i of a sequence with Lq queries and Lk keys sits at key
position i + Lk - Lq (bottom-right diagonal, as in chunked prefill); key j is visible iff
j <= i + Lk - Lq when causal, and j > i + Lk - Lq - WINDOW when WINDOW > 0; query head h reads
KV head h // GROUP. A query row that sees no key outputs 0.
"""

from __future__ import annotations

import torch

from qimeng_serve.errors import QimengError
from qimeng_serve.spec import AttentionSpec
from qimeng_serve.tl.problem import Problem


def reference_attention(problem: Problem, spec: AttentionSpec) -> list[torch.Tensor]:
    """Per sequence, the attention output [Hq, Lq, D] in float64."""
    if problem.heads_q != problem.heads_kv * spec.gqa_group or problem.head_dim != spec.head_dim:
        raise QimengError(
            f"problem (Hq={problem.heads_q}, Hkv={problem.heads_kv}, D={problem.head_dim}) does not fit the spec "
            f"(GROUP={spec.gqa_group}, D={spec.head_dim})", fix="build the problem with make_problem(spec, ...)")
    return [_one(problem.q[b], problem.k[b], problem.v[b], spec, problem.softmax_scale) for b in range(problem.batch)]


def visible(lq: int, lk: int, spec: AttentionSpec) -> torch.Tensor:
    """[Lq, Lk] bool: which keys each query sees."""
    i = torch.arange(lq).unsqueeze(1) + (lk - lq)  # the query's position among the keys
    j = torch.arange(lk).unsqueeze(0)
    seen = torch.ones(lq, lk, dtype=torch.bool)
    if spec.causal:
        seen &= j <= i
    if spec.sliding_window > 0:
        seen &= j > i - spec.sliding_window
    return seen


def _one(q, k, v, spec: AttentionSpec, scale: float) -> torch.Tensor:
    group = spec.gqa_group
    q, k, v = q.double(), k.double().repeat_interleave(group, 0), v.double().repeat_interleave(group, 0)
    s = q @ k.transpose(1, 2) * scale
    if spec.softcap > 0:
        s = spec.softcap * torch.tanh(s / spec.softcap)
    seen = visible(q.shape[1], k.shape[1], spec)
    s = s.masked_fill(~seen, float("-inf"))
    # a row that sees no key would be softmax(all -inf) = NaN; define it as 0
    p = torch.softmax(s, dim=-1).masked_fill(~seen.any(dim=-1, keepdim=True), 0.0)
    return p @ v
