"""The gates an LLM-written TL text passes: parser, checker (sketch or program form), CPU interpreter.

Each gate either returns the accepted program or raises Rejected with the tool's own message,
rendered as `tl check` / `tl run` would print it, so the model reads exactly what a user would.
"""

from __future__ import annotations

from dataclasses import dataclass

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
class InterpreterCheck:
    """The random problem a program must solve: ragged lengths, not tile multiples, fewer queries than keys."""

    heads_kv: int = 2
    prefill_seqlen_q: tuple[int, ...] = (1, 17, 129)
    prefill_seqlen_k: tuple[int, ...] = (1, 57, 132)
    decode_seqlen_k: tuple[int, ...] = (1, 300, 1100)  # 1100 keys: several KV splits
    tolerance: float = 1e-4  # relative L2 in exact fp32; a correct program lands near 1e-7
    seed: int = 0

    def lengths(self, spec: AttentionSpec) -> tuple[list[int], list[int]]:
        if spec.op == "paged_decode":
            lk = list(self.decode_seqlen_k)
            lq = [min(spec.decode_query_len, k) if i else 1 for i, k in enumerate(lk)]
            return lq, lk
        return list(self.prefill_seqlen_q), list(self.prefill_seqlen_k)


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


def interpret(program: ast.Program, text: str, spec: AttentionSpec, check: InterpreterCheck) -> float:
    """Run on the CPU against the float64 reference; the relative L2 error, or Rejected with the report.

    `text` is the program as the model wrote it: an interpreter error points at its lines."""
    from qimeng_serve.tl.interpreter import max_rel_error, run_tl
    from qimeng_serve.tl.problem import make_problem
    from qimeng_serve.tl.reference import reference_attention

    lq, lk = check.lengths(spec)
    problem = make_problem(spec, batch=len(lq), heads_kv=check.heads_kv, seqlen_q=lq, seqlen_k=lk, seed=check.seed)
    setting = (f"{len(lq)} sequences with seqlen_q={lq}, seqlen_k={lk}, heads_kv={check.heads_kv}, "
               f"GROUP={spec.gqa_group}, D={spec.head_dim}, CAUSAL={int(spec.causal)}, WINDOW={spec.sliding_window}, "
               f"SOFTCAP={spec.softcap:g}" + (f", QLEN={spec.decode_query_len}" if spec.op == "paged_decode" else ""))
    instruction = ("find the statement that computes the wrong value (masking offsets, loop bounds, the rescale, "
                   "the KV head, the final normalisation) and reply with the whole program")
    try:
        outs = run_tl(program, spec, problem, source_name=PROGRAM_FILE)
    except TLError as exc:
        raise Rejected("interpreter", f"running the program on {setting} stopped:\n"
                       + exc.render(text), instruction) from None
    except QimengError as exc:
        raise Rejected("interpreter", f"running the program on {setting} stopped: {exc}", instruction) from None
    refs = reference_attention(problem, spec)
    error = max_rel_error(outs, refs)
    if error <= check.tolerance:
        return error
    per_seq = ", ".join(f"b={b} (Lq={q}, Lk={k}): {max_rel_error([o], [r]):.3e}"
                        + (" (NaN in the output)" if bool(o.isnan().any()) else "")
                        for b, (o, r, q, k) in enumerate(zip(outs, refs, lq, lk)))
    raise Rejected("interpreter",
                   f"the program ran on {setting} and its output differs from the float64 reference attention: "
                   f"relative L2 error {error:.3e} (tolerance {check.tolerance:.0e}); per sequence: {per_seq}",
                   instruction)
