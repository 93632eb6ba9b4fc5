"""The planner's interpreter gate: a candidate computes attention on the CPU before it may win.

The checker proves a program legal, not right: a loop bound that drops the last partial tile, or
a causal offset of 0 in chunked prefill, passes every rule. So the best-ranked candidates run in
the TL interpreter (exact float32/64 arithmetic) against the float64 reference, on small ragged
problems built around their own tile sizes: lengths that are not tile multiples, a chunked-prefill
offset, several KV splits, a GQA group, a sliding window, the spec's causal flag and soft-cap.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from qimeng_serve.errors import QimengError
from qimeng_serve.spec import AttentionSpec
from qimeng_serve.tl import ast
from qimeng_serve.tl.interpreter import max_rel_error, run_tl
from qimeng_serve.tl.problem import make_problem
from qimeng_serve.tl.reference import reference_attention

TOLERANCE = 1e-6  # float64 inputs, exact arithmetic: a right program is at rounding level (1e-15)


def gate_problems(spec: AttentionSpec, params: dict[str, int]) -> list[tuple[str, AttentionSpec, list[int], list[int]]]:
    """(label, spec, seqlen_q, seqlen_k) of each problem a candidate must solve."""
    bn = params["BLOCK_N"]
    if spec.op == "paged_decode":
        split, q = params["SPLIT_KV"], spec.decode_query_len
        return [
            ("decode, several splits", spec, [1, q], [1, split + bn + 3]),
            ("decode, GQA 2, window", replace(spec, gqa_group=2, sliding_window=bn + 5), [q], [2 * bn + 9]),
        ]
    bm = params["BLOCK_M"]
    return [
        ("ragged, chunked prefill", spec, [1, 17, bm + 3], [1, 17 + bn + 9, bm + 3 + 2 * bn + 5]),
        ("GQA 2, other mask, window", replace(spec, gqa_group=2, causal=not spec.causal, sliding_window=bn + 7),
         [bm + 3], [bm + bn + 4]),
    ]


def interpret(program: ast.Program, spec: AttentionSpec, params: dict[str, int], seed: int = 0) -> str:
    """'' when the program matches the reference on every gate problem, else what went wrong."""
    for label, case, lq, lk in gate_problems(spec, params):
        problem = make_problem(case, batch=len(lq), heads_kv=1, seqlen_q=lq, seqlen_k=lk, dtype=torch.float64,
                               seed=seed)
        try:
            error = max_rel_error(run_tl(program, case, problem), reference_attention(problem, case))
        except QimengError as exc:  # the interpreter names the statement that could not run
            return f"{label}: {exc.message}"
        if not error <= TOLERANCE:
            return (f"{label} (seqlen_q {lq}, seqlen_k {lk}): relative error {error:.2e} against the float64 "
                    f"reference (tolerance {TOLERANCE:.0e})")
    return ""
