"""Hopper TL: Role / Wait / Release parse and print, the sm_90 checker rules fire on mutations of the
FA3-style golden program with the fix, and the interpreter runs the roles over their stage barriers:
the golden program matches the reference, and a broken barrier protocol is an error, not a result."""

import pytest
import torch

from qimeng_serve.errors import TLRuntimeError, TLSyntaxError
from qimeng_serve.spec import AttentionSpec
from qimeng_serve.tl import ast
from qimeng_serve.tl.checker import check_tl, render_all
from qimeng_serve.tl.interpreter import max_rel_error, run_tl
from qimeng_serve.tl.parser import parse_tl
from qimeng_serve.tl.printer import print_tl
from qimeng_serve.tl.problem import make_problem
from qimeng_serve.tl.reference import reference_attention
from tests.conftest import GOLDEN_DIR

SM90 = (GOLDEN_DIR / "dense_prefill_sm90.tl").read_text()


def mutate(text: str, old: str, new: str) -> str:
    assert old in text, f"mutation target not found: {old!r}"
    return text.replace(old, new)


def diags(text: str, arch: str = "sm_90", **spec_kw):
    spec = AttentionSpec("dense_prefill", **{"dtype": "bf16", "head_dim": 128, "gqa_group": 4, **spec_kw})
    return check_tl(parse_tl(text), arch, spec)


def has(ds, rule: str, *fragments: str, severity: str = "error") -> None:
    for d in ds:
        if d.rule == rule and d.severity == severity and all(f in d.message + " " + d.fix for f in fragments):
            return
    pytest.fail(f"no [{rule}] {severity} with {fragments}; got:\n{render_all(ds)}")


def run(text: str, *, d=128, group=4, causal=True, lq=(17, 129), lk=(200, 129), dtype=torch.float64, emulate=False,
        spec_dtype="f16") -> float:
    spec = AttentionSpec("dense_prefill", spec_dtype, d, group, causal)
    problem = make_problem(spec, batch=len(lq), heads_kv=2, seqlen_q=list(lq), seqlen_k=list(lk), dtype=dtype)
    return max_rel_error(run_tl(parse_tl(text), spec, problem, emulate_dtypes=emulate),
                         reference_attention(problem, spec))


# ---------------------------------------------------------------- syntax
def test_roles_parse_and_print_round_trip():
    program = parse_tl(SM90)
    kernel = program.kernels[0]
    roles = [s for s in kernel.body if isinstance(s, ast.Role)]
    assert [r.role for r in roles] == ["producer", "consumer"]
    assert ast.option(roles[1].options, "regs") == "CONSUMER_REGS"
    waits = [s for s in ast.walk(kernel.body) if isinstance(s, ast.Wait)]
    assert [w.buffers for w in waits] == [("sQ",), ("sK",), ("sV",)]
    assert parse_tl(print_tl(program)) == program
    two = "kernel k grid (i : 1) {\n  Role consumer {\n    Wait sK, sV\n    Release sK, sV\n  }\n}\n"
    assert print_tl(parse_tl(two)) == two


def test_unknown_role_is_a_syntax_error():
    with pytest.raises(TLSyntaxError, match="unknown role 'loader'"):
        parse_tl("kernel k grid (i : 1) {\n  Role loader {\n  }\n}\n")


# ---------------------------------------------------------------- checker
@pytest.mark.parametrize("d", [64, 128, 256])
@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_golden_passes_on_sm90(d, dtype):
    assert diags(SM90, head_dim=d, dtype=dtype, causal=False, gqa_group=8) == []


def test_roles_refused_off_hopper_with_the_fix():
    ds = diags(mutate(SM90, "targets sm_90", "targets sm_80, sm_90"), "sm_80")
    has(ds, "hopper", "needs sm_90", "dense_prefill_sm80.tl")
    has(ds, "copy-path", "sm_80 has no TMA")
    has(ds, "mma", "GMMA needs sm_90")


# the mutations hit the plain params block, which D = 128 (the spec of diags) reads: producer 40,
# consumers 232
def test_register_counts_must_be_legal_for_setmaxnreg():
    has(diags(mutate(SM90, "CONSUMER_REGS = 232", "CONSUMER_REGS = 244")), "setmaxnreg", "multiple of 8", "regs=240")
    has(diags(mutate(SM90, "PRODUCER_REGS = 40", "PRODUCER_REGS = 16")), "setmaxnreg", "from 24 to 256", "regs=24")
    # 40 x 128 + 256 x 256 > 65536: the register file is over-subscribed
    has(diags(mutate(SM90, "CONSUMER_REGS = 232", "CONSUMER_REGS = 256")), "setmaxnreg", "launches with 168 a thread")
    # 32 x 128 + 240 x 256 = 65536 fits the register file but not the 168 x 384 = 64512 the CTA is
    # launched with: setmaxnreg.inc waited forever (a hang on the H100, session 7 run 7)
    hang = mutate(mutate(SM90, "PRODUCER_REGS = 40", "PRODUCER_REGS = 32"), "CONSUMER_REGS = 232", "CONSUMER_REGS = 240")
    has(diags(hang), "setmaxnreg", "64512 in all")
    # the shipped 40 + 2 x 232 and FA3's 24 + 2 x 240 are exactly 64512
    ok = mutate(mutate(SM90, "PRODUCER_REGS = 40", "PRODUCER_REGS = 24"), "CONSUMER_REGS = 232", "CONSUMER_REGS = 240")
    assert not [d for d in diags(ok) if "launches with" in d.message]


def test_consumer_registers_below_the_estimate_would_spill():
    has(diags(mutate(SM90, "CONSUMER_REGS = 232", "CONSUMER_REGS = 160")), "setmaxnreg", "would spill", "raise regs=")


def test_warps_must_count_the_consumer_warps():
    has(diags(mutate(SM90, "CONSUMERS = 2", "CONSUMERS = 1")), "setmaxnreg", "WARPS = 8", "set WARPS = 4")


def test_gmma_shape_rules():
    # N = BLOCK_N of S = Q K^T: a multiple of 8 up to 256
    has(diags(mutate(SM90, "BLOCK_N = 128\n  WARPS", "BLOCK_N = 260\n  WARPS")), "gmma", "N = 260", "multiple of 8")
    # M: 64-row slices per consumer warpgroup
    has(diags(mutate(SM90, "BLOCK_M = 128", "BLOCK_M = 96")), "gmma", "64-row slices over 2 warpgroup")
    # B comes from shared memory
    text = mutate(SM90, "Compute acc += gemm(P, sV) with mma=gmma", "Compute acc += gemm(P, P.T) with mma=gmma")
    has(diags(text), "gmma", "B operand from shared memory")


def test_tma_box_rules():
    text = mutate(SM90, "BLOCK_N = 128\n  WARPS", "BLOCK_N = 264\n  WARPS")
    has(diags(text), "tma", "at most 256 rows")
    text = mutate(SM90, "Allocate sK : shared DTYPE [BLOCK_N, D] with layout=swizzle,",
                  "Allocate sK : shared DTYPE [BLOCK_N, D] with layout=row,")
    has(diags(text), "tma", "layout=swizzle")


def test_smem_budget_counts_every_stage():
    has(diags(mutate(SM90, "STAGES = 2  # Q 64 KB", "STAGES = 3  # Q 64 KB"), head_dim=256), "smem",
        "opt-in maximum of sm_90")
    # the D = 128 block: two stages beside O's store tile (via=tma)
    d128 = "  STAGES = 2\n  STORE_TMA = 1\n"
    has(diags(mutate(SM90, d128, "  STAGES = 1\n  STORE_TMA = 1\n")), "smem", "one stage", severity="warning")
    # O's store via=tma holds a shared tile too: three stages and it do not fit at D = 128, two do
    has(diags(mutate(SM90, d128, "  STAGES = 3\n  STORE_TMA = 1\n")), "smem", "opt-in maximum of sm_90",
        "O[b, q_head, q0 : q0 + BLOCK_M]'s store tile 32768 B (via=tma)")
    assert not [d for d in diags(SM90) if d.severity == "error"]
    assert not [d for d in diags(mutate(SM90, d128, "  STAGES = 3\n  STORE_TMA = 0\n")) if d.severity == "error"]


def test_o_store_path_is_a_param_that_is_tma_or_stg():
    """`via=STORE_TMA` on O's store: 1 is a TMA store through a shared tile, 0 register stores; another
    value, a missing param, or TMA off Hopper are errors."""
    assert not [d for d in diags(SM90) if d.severity == "error"]
    has(diags(mutate(SM90, "  STORE_TMA = 1", "  STORE_TMA = 2")), "options", "via=STORE_TMA is 2", "1 (tma) or 0")
    has(diags(mutate(SM90, "<- acc with via=STORE_TMA", "<- acc with via=STORE")), "options",
        "unknown copy path via=STORE")
    # the same program's O store named tma on sm_80: no TMA there
    sm80 = (GOLDEN_DIR / "dense_prefill_sm80.tl").read_text()
    assert "<- acc with via=stg" in sm80
    has(diags(mutate(sm80, "<- acc with via=stg", "<- acc with via=tma"), "sm_80"), "copy-path", "no TMA")


def test_barrier_protocol_rules():
    no_release = mutate(SM90, "      Release sV\n", "")
    has(diags(no_release), "roles", "never released", "Release sV")
    early = mutate(mutate(SM90, "      Release sK\n", ""), "      Wait sK\n", "      Wait sK\n      Release sK\n")
    has(diags(early), "roles", "released before its last read")
    no_wait = mutate(SM90, "      Wait sV\n", "")
    has(diags(no_wait), "roles", "sV is read before `Wait sV`")
    other_bounds = mutate(SM90, "    Loop n in n_start .. n_end with order=reverse {\n      Wait sK",
                          "    Loop n in 0 .. n_end with order=reverse {\n      Wait sK")
    has(diags(other_bounds), "roles", "differ in bounds or order")
    compute_in_producer = mutate(SM90, "    Copy sQ <- Q[", "    Compute m = m\n    Copy sQ <- Q[")
    has(diags(compute_in_producer), "roles", "the producer only issues copies")


def test_wait_outside_a_consumer_role():
    text = mutate(SM90, "    Copy sQ <- Q[b, q_head, q0 : q0 + BLOCK_M] with via=tma",
                  "    Wait sK\n    Copy sQ <- Q[b, q_head, q0 : q0 + BLOCK_M] with via=tma")
    has(diags(text), "roles", "Wait outside the consumer role")


def test_sketch_form_passes():
    program = parse_tl(SM90)
    sketch = ast.Program(tuple(i for i in program.items if not isinstance(i, ast.ParamsBlock)))
    assert check_tl(sketch, "sm_90", AttentionSpec("dense_prefill", "f16", 128, 4), form="sketch") == []


# ---------------------------------------------------------------- interpreter
@pytest.mark.parametrize("d", [64, 128, 256])
@pytest.mark.parametrize("causal", [True, False])
def test_golden_matches_reference(d, causal):
    assert run(SM90, d=d, causal=causal, lq=(1, 129, 200), lk=(17, 129, 333)) < 1e-12


@pytest.mark.parametrize("spec_dtype, dtype, tol", [("f16", torch.float16, 5e-3), ("bf16", torch.bfloat16, 3e-2)])
def test_golden_with_emulated_16_bit(spec_dtype, dtype, tol):
    assert run(SM90, lq=(127,), lk=(1000,), dtype=dtype, emulate=True, spec_dtype=spec_dtype) < tol


def test_one_two_and_three_stages_mean_the_same():
    for stages in ("1", "2"):
        assert run(mutate(SM90, "  STAGES = 3\n", f"  STAGES = {stages}\n"), d=64, lq=(65,), lk=(300,)) < 1e-12


def test_missing_release_is_an_error():
    with pytest.raises(TLRuntimeError, match="`Wait sV` again before `Release sV`"):
        run(mutate(SM90, "      Release sV\n", ""), lq=(17,), lk=(300,))


def test_waiting_for_a_tile_never_filled_deadlocks():
    text = mutate(SM90, "    Loop n in n_start .. n_end with order=reverse {\n      Wait sK",
                  "    Loop n in n_start .. n_end + 1 with order=reverse {\n      Wait sK")
    with pytest.raises(TLRuntimeError, match="wait for each other forever.*consumer: `Wait sK` waits for stage"):
        run(text, causal=False, lq=(17,), lk=(300,))


def test_read_before_wait_is_an_error():
    with pytest.raises(TLRuntimeError, match="sV is read outside `Wait sV`"):
        run(mutate(SM90, "      Wait sV\n", ""), lq=(17,), lk=(300,))


def test_read_after_release_is_an_error():
    text = mutate(mutate(SM90, "      Release sK\n", ""), "      Wait sK\n", "      Wait sK\n      Release sK\n")
    with pytest.raises(TLRuntimeError, match="sK is read outside"):
        run(text, lq=(17,), lk=(300,))


def test_loops_out_of_step_are_caught():
    # the consumer takes one tile fewer than the producer fills
    text = mutate(SM90, "    Loop n in n_start .. n_end with order=reverse {\n      Wait sK",
                  "    Loop n in n_start .. n_end - 1 with order=reverse {\n      Wait sK")
    with pytest.raises(TLRuntimeError, match="filled 3 tiles of sK but the consumer waited for 2"):
        run(text, causal=False, lq=(17,), lk=(300,))
