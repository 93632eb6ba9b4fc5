"""The gates an LLM-written TL text passes: parser, checker (sketch or program form), CPU interpreter.

Each gate either returns the accepted program or raises Rejected with the tool's own message,
rendered as `tl check` / `tl run` would print it, so the model reads exactly what a user would.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from qimeng_serve.errors import QimengError, TLError
from qimeng_serve.generate.llm_prompts import sketch_form
from qimeng_serve.generate.llm_reply import Rejected
from qimeng_serve.spec import AttentionSpec
from qimeng_serve.targets import Target
from qimeng_serve.tl import ast
from qimeng_serve.tl.checker import check_tl, render_all
from qimeng_serve.tl.parser import parse_tl

SKETCH_FILE = "sketch.tl"
PROGRAM_FILE = "program.tl"


@dataclass(frozen=True)
class Case:
    label: str
    spec: AttentionSpec
    seqlen_q: list[int]
    seqlen_k: list[int]

    def describe(self, heads_kv: int) -> str:
        s = self.spec
        return (f"{self.label}: seqlen_q={self.seqlen_q}, seqlen_k={self.seqlen_k}, heads_kv={heads_kv}, "
                f"GROUP={s.gqa_group}, D={s.head_dim}, CAUSAL={int(s.causal)}, WINDOW={s.sliding_window}, "
                f"SOFTCAP={s.softcap:g}" + (f", QLEN={s.decode_query_len}" if s.op == "paged_decode" else ""))


@dataclass(frozen=True)
class InterpreterCheck:
    """The random problems a program must solve, sized around its own tiles.

    Lengths are not tile multiples, queries are fewer than keys (chunked prefill), decode spans
    several KV splits. The causal flag, the sliding window and the GQA group are run-time
    arguments of a compiled kernel, so a second problem flips the mask and adds a window and GQA.
    Inputs are float64 and the interpreter is exact there: a right program lands near 1e-15.
    """

    heads_kv: int = 2
    tolerance: float = 1e-6
    seed: int = 0

    def cases(self, spec: AttentionSpec, params: dict) -> list[Case]:
        bn = int(params["BLOCK_N"])
        other_group = 2 if spec.gqa_group == 1 else spec.gqa_group
        if spec.op == "paged_decode":
            split, q = int(params.get("SPLIT_KV", 8 * bn)), spec.decode_query_len
            return [Case("decode over several KV splits", spec, [1, q], [1, split + bn + 3]),
                    Case("decode with a window and GQA", replace(spec, gqa_group=other_group, sliding_window=bn + 5),
                         [q], [2 * bn + 9])]
        bm = int(params["BLOCK_M"])
        return [Case("ragged chunked prefill", spec, [1, 17, bm + 3], [1, 17 + bn + 9, bm + 3 + 2 * bn + 5]),
                Case("the other mask with a window and GQA",
                     replace(spec, gqa_group=other_group, causal=not spec.causal, sliding_window=bn + 7),
                     [bm + 3], [bm + bn + 4])]


def parse(text: str, source_name: str) -> ast.Program:
    try:
        return parse_tl(text, source_name=source_name)
    except TLError as exc:
        raise Rejected("parser", exc.render(text),
                       "fix the syntax (docs: the grammar in §2 of the reference) and reply with the whole file") from None


def check_sketch(text: str, spec: AttentionSpec, target: Target) -> ast.Program:
    """Parse and check in sketch form; a params block or options in the reply are dropped, not refused."""
    program = sketch_form(parse(text, SKETCH_FILE))
    _check(program, spec, target, "sketch", SKETCH_FILE,
           "change what the checker names and reply with the whole sketch (statements only)")
    return program


def check_program(text: str, spec: AttentionSpec, target: Target) -> ast.Program:
    program = parse(text, PROGRAM_FILE)
    _check(program, spec, target, "program", PROGRAM_FILE,
           "change what the checker names and reply with the whole program")
    return program


def _check(program: ast.Program, spec: AttentionSpec, target: Target, form: str, source_name: str,
           instruction: str) -> None:
    errors = [d for d in check_tl(program, target, spec, form=form) if d.severity == "error"]
    if errors:
        # line numbers refer to the text as the model wrote it
        raise Rejected("checker", render_all(errors, source_name), instruction)


def interpret(program: ast.Program, text: str, spec: AttentionSpec, check: InterpreterCheck) -> dict:
    """Run on the CPU against the float64 reference: what ran and the worst relative L2 error, or Rejected.

    `text` is the program as the model wrote it: an interpreter error points at its lines."""
    import torch

    from qimeng_serve.tl.interpreter import max_rel_error, resolve_params, run_tl
    from qimeng_serve.tl.problem import make_problem
    from qimeng_serve.tl.reference import reference_attention

    instruction = ("find the statement that computes the wrong value (masking offsets, loop bounds, the rescale, "
                   "the KV head, the final normalisation) and reply with the whole program")
    try:
        cases = check.cases(spec, resolve_params(program, spec, source_name=PROGRAM_FILE))
    except TLError as exc:
        raise Rejected("interpreter", "evaluating the params stopped:\n" + exc.render(text), instruction) from None
    worst, ran = 0.0, []
    for case in cases:
        lq, lk = case.seqlen_q, case.seqlen_k
        problem = make_problem(case.spec, batch=len(lq), heads_kv=check.heads_kv, seqlen_q=lq, seqlen_k=lk,
                               dtype=torch.float64, seed=check.seed)
        setting = case.describe(check.heads_kv)
        try:
            outs = run_tl(program, case.spec, problem, source_name=PROGRAM_FILE)
        except TLError as exc:
            raise Rejected("interpreter", f"running the program on {setting} stopped:\n" + exc.render(text),
                           instruction) from None
        except QimengError as exc:
            raise Rejected("interpreter", f"running the program on {setting} stopped: {exc}", instruction) from None
        refs = reference_attention(problem, case.spec)
        error = max_rel_error(outs, refs)
        if not error <= check.tolerance:
            per_seq = ", ".join(f"b={b} (Lq={q}, Lk={k}): {max_rel_error([o], [r]):.3e}"
                                + (" (NaN in the output)" if bool(o.isnan().any()) else "")
                                for b, (o, r, q, k) in enumerate(zip(outs, refs, lq, lk)))
            raise Rejected("interpreter",
                           f"the program ran on {setting} and its output differs from the float64 reference "
                           f"attention: relative L2 error {error:.3e} (tolerance {check.tolerance:.0e}); "
                           f"per sequence: {per_seq}", instruction)
        worst = max(worst, error)
        ran.append({"case": case.label, "spec": case.spec.key(), "seqlen_q": lq, "seqlen_k": lk,
                    "rel_l2": error})
    return {"max_rel_error": worst, "tolerance": check.tolerance, "heads_kv": check.heads_kv,
            "seed": check.seed, "cases": ran}
