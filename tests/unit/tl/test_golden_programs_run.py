"""Every golden TL program, executed by the interpreter, matches the float64 reference on ragged,
GQA, chunked-prefill, windowed, soft-capped and multi-split problems; seeded bugs miss it."""

import random
from dataclasses import dataclass

import pytest
import torch

from qimeng_serve.spec import AttentionSpec
from qimeng_serve.tl.interpreter import max_rel_error, run_tl
from qimeng_serve.tl.parser import parse_tl
from qimeng_serve.tl.printer import print_tl
from qimeng_serve.tl.problem import make_problem
from qimeng_serve.tl.reference import reference_attention
from tests.conftest import golden_paths

GOLDEN = {p.stem: p.read_text() for p in golden_paths()}
EXACT, EMULATED, BUG = 1e-5, 5e-3, 1e-2


def op_of(name: str) -> str:
    return parse_tl(GOLDEN[name]).op


PREFILL = [n for n in GOLDEN if op_of(n) != "paged_decode"]
DECODE = [n for n in GOLDEN if op_of(n) == "paged_decode"]


@dataclass(frozen=True)
class Case:
    lq: tuple[int, ...]
    lk: tuple[int, ...]
    group: int = 1
    heads_kv: int = 1
    d: int = 64
    causal: bool = True
    window: int = 0
    softcap: float = 0.0
    qlen: int = 1  # decode_query_len

    def spec(self, op: str) -> AttentionSpec:
        return AttentionSpec(op, "f16", self.d, self.group, self.causal, self.window, self.softcap, self.qlen)

    def problem(self, spec: AttentionSpec, dtype=torch.float32, seed=0):
        return make_problem(spec, batch=len(self.lq), heads_kv=self.heads_kv, seqlen_q=list(self.lq),
                            seqlen_k=list(self.lk), dtype=dtype, seed=seed)


PREFILL_CASES = {
    "chunked-causal-gqa4": Case((17, 65), (80, 200), group=4, heads_kv=2),
    "full-mha-ragged": Case((1, 63, 129), (1, 63, 129), heads_kv=2, d=128, causal=False),
    "window-gqa8": Case((65,), (129,), group=8, window=32),
    "softcap-causal": Case((200, 17), (200, 63), softcap=1.0),
    "full-window-softcap": Case((63,), (129,), group=4, causal=False, window=48, softcap=2.0),
    "hd256": Case((17,), (65,), d=256),
}
DECODE_CASES = {
    "q1-gqa8-splits": Case((1, 1, 1), (1, 300, 1100), group=8, d=128),
    "q2-gqa4-splits": Case((2, 1), (1100, 65), group=4, heads_kv=2, qlen=2),
    "q2-window": Case((2, 2), (700, 17), group=4, window=100, qlen=2),
    "q2-full-softcap": Case((2, 2), (2, 513), heads_kv=2, causal=False, softcap=1.0, qlen=2),
    "hd256": Case((1,), (600,), group=4, d=256),
}


def random_case(rng: random.Random, decode: bool) -> Case:
    """Batch 1-3, GQA 1/4/8, ragged lengths that are not tile multiples, Lk >= Lq."""
    batch = rng.randint(1, 3)
    common = dict(group=rng.choice((1, 4, 8)), heads_kv=rng.randint(1, 2), d=rng.choice((64, 128)),
                  causal=rng.random() < 0.7, window=rng.choice((0, 0, 40)), softcap=rng.choice((0.0, 0.0, 1.5)))
    if decode:
        qlen = rng.choice((1, 2))
        lq = tuple(rng.randint(1, qlen) for _ in range(batch))
        lk = tuple(max(q, rng.choice((1, 17, 65, 200, 700))) for q in lq)
        return Case(lq, lk, qlen=qlen, **common)
    lq = tuple(rng.choice((1, 17, 63, 65, 129, 200)) for _ in range(batch))
    lk = tuple(q + rng.choice((0, 0, 17, 63)) for q in lq)
    return Case(lq, lk, **common)


def all_cases():
    for name in GOLDEN:
        decode = name in DECODE
        for label, case in (DECODE_CASES if decode else PREFILL_CASES).items():
            yield pytest.param(name, case, id=f"{name}-{label}")
        rng = random.Random(f"{name}")
        for i in range(3):
            yield pytest.param(name, random_case(rng, decode), id=f"{name}-random{i}")


def run_case(text: str, case: Case, op: str, *, emulate=False, dtype=torch.float32) -> float:
    spec = case.spec(op)
    problem = case.problem(spec, dtype=dtype)
    outs = run_tl(parse_tl(text), spec, problem, emulate_dtypes=emulate)
    return max_rel_error(outs, reference_attention(problem, spec))


# ---------------------------------------------------------------- golden programs are right
def test_every_op_has_golden_programs_for_sm80_and_sm75():
    assert {(op_of(n), n.rsplit("_", 1)[1]) for n in GOLDEN} >= {
        (op, arch) for op in ("dense_prefill", "paged_prefill", "paged_decode") for arch in ("sm80", "sm75")}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_program_is_canonically_formatted(name):
    assert print_tl(parse_tl(GOLDEN[name])) == GOLDEN[name]


@pytest.mark.parametrize("name, case", list(all_cases()))
def test_golden_program_matches_reference(name, case):
    assert run_case(GOLDEN[name], case, op_of(name)) < EXACT


EMULATION_CASES = {"prefill": Case((63, 17), (129, 17), group=4, heads_kv=2),
                   "decode": Case((2, 1), (700, 33), group=4, qlen=2)}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_program_with_emulated_f16(name):
    case = EMULATION_CASES["decode" if name in DECODE else "prefill"]
    assert run_case(GOLDEN[name], case, op_of(name), emulate=True, dtype=torch.float16) < EMULATED


# ---------------------------------------------------------------- seeded bugs are caught
@dataclass(frozen=True)
class Bug:
    find: str
    replace: str
    programs: tuple[str, ...]  # where the golden text must contain `find`
    case: Case
    decode_case: Case | None = None


BUGS = {
    # the online softmax forgets to rescale what it accumulated under the old running max
    "missing-rescale": Bug("    Compute acc = acc * alpha\n", "", tuple(GOLDEN),
                           Case((65,), (300,), causal=False), Case((1,), (1100,), group=4)),
    # chunked prefill: the diagonal is at i + Lk - Lq, not i
    "causal-offset-0": Bug("offset=Lk - Lq", "offset=0", tuple(GOLDEN),
                           Case((17,), (200,)), Case((2,), (300,), qlen=2)),
    # Lk / BLOCK_N drops the last partial KV tile (127 is not a multiple of 32 or 64)
    "tile-bound-floor": Bug(", cdiv(Lk, BLOCK_N))\n", ", Lk / BLOCK_N)\n", tuple(PREFILL),
                            Case((17,), (127,), causal=False)),
    # query head h must read KV head h / GROUP
    "gqa-head-modulo": Bug("let kv_head = q_head / GROUP", "let kv_head = q_head % heads_kv", tuple(PREFILL),
                           Case((17,), (40,), group=4, heads_kv=2)),
}


def seeded(name: str, bug: Bug) -> str:
    text = GOLDEN[name]
    assert bug.find in text, f"{name} no longer contains {bug.find!r}: update the seeded bug"
    return text.replace(bug.find, bug.replace)


@pytest.mark.parametrize("bug_name, name", [(b, n) for b, bug in BUGS.items() for n in bug.programs])
def test_interpreter_catches_seeded_bug(bug_name, name):
    bug = BUGS[bug_name]
    case = bug.decode_case if name in DECODE else bug.case
    op = op_of(name)
    assert run_case(GOLDEN[name], case, op) < EXACT  # the same problem passes without the bug
    assert run_case(seeded(name, bug), case, op) > BUG


def test_missing_reshape_runs_and_is_left_to_the_checker():
    """`acc += gemm(S, sV)` without Reshape is a layout error (checker); its values are right, so the
    interpreter runs it and matches. Deleting only the Reshape leaves P unwritten: NaN, caught."""
    name, case = "dense_prefill_sm80", Case((65,), (130,), group=4)
    no_reshape = seeded(name, Bug("    Reshape P <- S\n", "", (), case))
    gemm_s = no_reshape.replace("gemm(P, sV)", "gemm(S, sV)")
    assert gemm_s != no_reshape
    assert run_case(gemm_s, case, "dense_prefill") < EXACT
    assert run_case(no_reshape, case, "dense_prefill") == float("inf")


def test_cases_cover_the_required_shapes():
    cases = [c for n in GOLDEN for c in (DECODE_CASES if n in DECODE else PREFILL_CASES).values()]
    assert {c.group for c in cases} >= {1, 4, 8} and {c.d for c in cases} == {64, 128, 256}
    assert any(k > q for c in cases for q, k in zip(c.lq, c.lk)) and any(c.window for c in cases)
    assert {c.qlen for c in DECODE_CASES.values()} == {1, 2} and max(max(c.lk) for c in DECODE_CASES.values()) > 1024
