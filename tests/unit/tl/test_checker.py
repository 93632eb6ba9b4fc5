"""The per-target TL checker: golden programs pass on every target they declare; each rule fires on a
mutated golden program, naming the right line, the rule and the fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qimeng_serve.errors import TLCheckError
from qimeng_serve.spec import AttentionSpec
from qimeng_serve.targets import get_target
from qimeng_serve.tl.checker import Diagnostic, check_tl, check_tl_or_raise, register_estimate, render_all
from qimeng_serve.tl.parser import parse_tl

ROOT = Path(__file__).resolve().parents[3]
TL_DIR = ROOT / "kernels_src" / "tl"
GOLDEN = sorted(TL_DIR.glob("*.tl"))
RULES_FIXTURE = Path(__file__).parent / "fixtures" / "dense_prefill_rules.tl"


# ---------------------------------------------------------------- helpers
def specs(op: str, arch: str):
    """Every spec a golden program must accept on arch: head dims, dtypes, causal, GQA groups."""
    dtypes = [d for d in ("f16", "bf16") if d in get_target(arch).dtypes]
    for d in (64, 128, 256):
        for dtype in dtypes:
            for causal in (True, False):
                for group in (1, 4, 8):
                    for qlen in ((1, 2) if op == "paged_decode" else (1,)):
                        yield AttentionSpec(op, dtype=dtype, head_dim=d, gqa_group=group, causal=causal,
                                            decode_query_len=qlen)


def dense() -> str:
    """A frozen FA2 program the rule tests mutate: the golden programs' tiles move with tuning."""
    return RULES_FIXTURE.read_text()


def mutate(text: str, old: str, new: str, count: int = -1) -> str:
    assert old in text, f"mutation target not found: {old!r}"
    return text.replace(old, new, count)


def line_no(text: str, snippet: str) -> int:
    hits = [i for i, line in enumerate(text.splitlines(), 1) if snippet in line]
    assert hits, f"{snippet!r} not in text"
    return hits[0]


def check(text: str, arch: str = "sm_80", form: str = "auto", **spec_kw) -> list[Diagnostic]:
    spec = AttentionSpec(spec_kw.pop("op", "dense_prefill"), **{"head_dim": 128, "gqa_group": 4, **spec_kw})
    return check_tl(parse_tl(text, "golden.tl"), arch, spec, form=form)


def find(diags: list[Diagnostic], rule: str, text: str, on: str, *fragments: str) -> Diagnostic:
    """The diagnostic of `rule` on the line containing `on`, whose message + fix contain every fragment."""
    want = line_no(text, on)
    for d in diags:
        body = d.message + " " + d.fix
        if d.rule == rule and d.span and d.span.line == want and all(f in body for f in fragments):
            return d
    pytest.fail(f"no [{rule}] diagnostic on line {want} ({on!r}) with {fragments}; got:\n{render_all(diags)}")


def sm75_port(text: str) -> str:
    """The dense golden program adapted to sm_75: no cp.async, m16n8k8, one stage (64 KB of shared)."""
    text = mutate(text, "targets sm_80, sm_86, sm_89, sm_90", "targets sm_75")
    text = mutate(text, "via=cp.async", "via=ldg")
    return mutate(text, "mma=m16n8k16", "mma=m16n8k8")


def to_sketch(text: str) -> str:
    """Strip the params blocks and every `with ...` clause."""
    text = re.sub(r"^params[^{]*\{[^}]*\}\n", "", text, flags=re.M)
    return re.sub(r" with [A-Za-z_]+=[^\s,{]+(?:, [A-Za-z_]+=[^\s,{]+)*", "", text)


# ---------------------------------------------------------------- golden programs pass
@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.name)
def test_golden_program_passes_on_every_declared_target(path: Path):
    program = parse_tl(path.read_text(), str(path))
    assert program.targets, f"{path.name} declares no targets"
    for arch in program.targets:
        for spec in specs(program.op, arch):
            diags = check_tl(program, arch, spec)
            assert diags == [], f"{path.name} on {arch} for {spec.key()}:\n{render_all(diags, path.name)}"


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.name)
def test_golden_sketch_passes_in_sketch_form(path: Path):
    sketch = parse_tl(to_sketch(path.read_text()))
    assert sketch.is_sketch
    for arch in sketch.targets:
        spec = AttentionSpec(sketch.op, head_dim=128, gqa_group=4)
        assert check_tl(sketch, arch, spec) == []
        assert check_tl(sketch, arch, spec, form="sketch") == []


def test_sm75_port_passes_on_sm75():
    text = sm75_port(dense())
    for spec in specs("dense_prefill", "sm_75"):
        diags = check(text, "sm_75", head_dim=spec.head_dim, gqa_group=spec.gqa_group, causal=spec.causal)
        assert diags == [], render_all(diags)


# ---------------------------------------------------------------- the API
def test_render_names_file_line_rule_and_fix():
    text = mutate(dense(), "let Lk = seqlen_k[b]", "let Lk = seqlen_kv[b]")
    d = find(check(text), "names", text, "let Lk", "seqlen_kv")
    lines = d.render("dense.tl").splitlines()
    assert lines[0].startswith(f"dense.tl:{line_no(text, 'let Lk')}:") and "error[names]" in lines[0]
    assert lines[1].startswith("  fix: ")


def test_check_or_raise_carries_every_diagnostic():
    text = mutate(dense(), "kv_len=Lk, causal=CAUSAL, ", "")
    with pytest.raises(TLCheckError) as e:
        check_tl_or_raise(parse_tl(text), "sm_80", AttentionSpec("dense_prefill"), source_name="x.tl")
    assert e.value.source_name == "x.tl"
    assert {d.rule for d in e.value.diagnostics} == {"mask"} and len(e.value.diagnostics) == 2
    check_tl_or_raise(parse_tl(dense()), "sm_80", AttentionSpec("dense_prefill"))  # no raise


def test_target_may_be_named_by_string_or_profile():
    spec = AttentionSpec("dense_prefill")
    assert check_tl(parse_tl(dense()), get_target("sm_90"), spec) == check_tl(parse_tl(dense()), "sm90", spec) == []


# ---------------------------------------------------------------- header
def test_unknown_declared_target():
    text = mutate(dense(), "targets sm_80,", "targets sm_61, sm_80,")
    find(check(text), "header", text, "targets sm_61", "sm_61, which has no profile")


def test_target_not_declared():
    diags = check(dense(), "sm_75")
    find(diags, "header", dense(), "targets sm_80", "sm_75 is not among the targets", "sm_80, sm_86, sm_89, sm_90")


def test_op_differs_from_spec():
    find(check(dense(), op="paged_prefill"), "header", dense(), "op dense_prefill",
         "for op dense_prefill but the spec asks for paged_prefill")


# ---------------------------------------------------------------- legality on the target
def test_cp_async_on_sm75():
    text = mutate(sm75_port(dense()), "Copy sQ <- Q[b, q_head, q0 : q0 + BLOCK_M] with via=ldg",
                  "Copy sQ <- Q[b, q_head, q0 : q0 + BLOCK_M] with via=cp.async")
    diags = check(text, "sm_75")
    d = find(diags, "copy-path", text, "Copy sQ <- Q", "sm_75 has no cp.async", "use via=ldg")
    assert [x.rule for x in diags] == ["copy-path"], render_all(diags)
    assert "with via=ldg" in d.fix


def test_bf16_on_sm75_in_the_program():
    text = sm75_port(dense()).replace("DTYPE [", "bf16 [")
    diags = check(text, "sm_75")
    find(diags, "mma", text, "Compute S = gemm(sQ, sK.T)", "sm_75 has no bf16 tensor cores: use fp16")
    find(diags, "mma", text, "Compute acc += gemm(P, sV)", "sm_75 has no bf16 tensor cores")


def test_bf16_spec_on_sm75():
    text = sm75_port(dense())
    find(check(text, "sm_75", dtype="bf16"), "mma", text, "gemm(sQ, sK.T)", "sm_75 has no bf16 tensor cores",
         "spec's dtype")
    assert check(dense(), "sm_80", dtype="bf16") == []


def test_m16n8k16_on_sm75():
    text = mutate(sm75_port(dense()), "Compute S = gemm(sQ, sK.T) with mma=m16n8k8",
                  "Compute S = gemm(sQ, sK.T) with mma=m16n8k16")
    diags = check(text, "sm_75")
    find(diags, "mma", text, "gemm(sQ, sK.T)", "mma=m16n8k16 is not a tensor-core shape for f16 on sm_75",
         "use mma=m16n8k8")
    assert [d.rule for d in diags] == ["mma"]


def test_tma_only_on_sm90():
    text = mutate(dense(), "Copy sQ <- Q[b, q_head, q0 : q0 + BLOCK_M] with via=cp.async, transfer=16",
                  "Copy sQ <- Q[b, q_head, q0 : q0 + BLOCK_M] with via=tma")
    find(check(text, "sm_80"), "copy-path", text, "Copy sQ <- Q", "sm_80 has no TMA", "use via=cp.async")
    assert check(text, "sm_90") == []


def test_gmma_only_on_sm90():
    text = mutate(dense(), "gemm(sQ, sK.T) with mma=m16n8k16", "gemm(sQ, sK.T) with mma=m64n64k16")
    find(check(text, "sm_80"), "mma", text, "gemm(sQ, sK.T)", "GMMA needs sm_90", "mma=m16n8k16")
    find(check(text, "sm_89"), "mma", text, "gemm(sQ, sK.T)", "GMMA needs sm_90")
    assert check(text, "sm_90") == []


def test_copy_path_must_fit_the_levels():
    text = mutate(dense(), "Copy sQ <- Q[b, q_head, q0 : q0 + BLOCK_M] with via=cp.async",
                  "Copy sQ <- Q[b, q_head, q0 : q0 + BLOCK_M] with via=ldmatrix")
    find(check(text), "copy-path", text, "Copy sQ <- Q", "via=ldmatrix cannot copy global -> shared", "via=cp.async")


def test_unknown_option_key():
    text = mutate(dense(), "Copy O[b, q_head, q0 : q0 + BLOCK_M] <- acc with via=stg",
                  "Copy O[b, q_head, q0 : q0 + BLOCK_M] <- acc with vai=stg")
    diags = check(text)
    find(diags, "options", text, "Copy O[", "no option `vai`", "did you mean via")
    find(diags, "form", text, "Copy O[", "no via=", "with via=stg")


# ---------------------------------------------------------------- budgets and tiles
def test_smem_over_budget_on_sm75():
    text, n = re.subn(r"BLOCK_M = \d+", "BLOCK_M = 256", sm75_port(dense()))
    assert n >= 1
    diags = check(text, "sm_75", head_dim=256)
    d = find(diags, "smem", text, "Allocate sQ", "163840 bytes", "65536 bytes", "sm_75", "sQ 131072 B")
    assert "shrink" in d.fix and "BLOCK_M" in d.fix


def test_smem_over_budget_on_sm86_names_the_largest_buffers():
    text = mutate(dense(), "BLOCK_M = 64\n  BLOCK_N = 32", "BLOCK_M = 128\n  BLOCK_N = 64")
    d = find(check(text, "sm_86", head_dim=256), "smem", text, "Allocate sQ", "131072 bytes", "101376 bytes",
             "sQ 65536 B", "sK 32768 B")
    assert "sQ, sK" in d.fix
    # 128 KB fits sm_80's 163 KB (the registers of a 128 x 256 accumulator do not, another rule)
    assert not [x for x in check(text, "sm_80", head_dim=256) if x.rule == "smem"]


def test_staged_buffer_counts_each_stage():
    text = mutate(dense(), "Allocate sK : shared DTYPE [BLOCK_N, D] with layout=swizzle",
                  "Allocate sK : shared DTYPE [BLOCK_N, D] with layout=swizzle, stages=4")
    find(check(text, "sm_86", head_dim=256), "smem", text, "Allocate sK", "sK 65536 B (4 stages x 16384 B)")


def test_register_estimate_over_budget():
    text = mutate(dense(), "BLOCK_M = 128", "BLOCK_M = 256")
    program, spec = parse_tl(text), AttentionSpec("dense_prefill", head_dim=128)
    est = register_estimate(program, "sm_90", spec)["attn"]
    assert est > 255
    d = find(check(text, "sm_90", head_dim=128), "registers", text, "Allocate acc",
             f"estimated {est} registers per thread > 255", "acc 256")
    assert "reduce BLOCK_M" in d.fix
    assert register_estimate(parse_tl(dense()), "sm_90", spec)["attn"] <= 255


def test_block_m_not_divisible_by_warps():
    text = mutate(dense(), "BLOCK_M = 128", "BLOCK_M = 96")
    d = find(check(text), "tiles", text, "BLOCK_M = 96", "not a multiple of 16 * WARPS = 64")
    assert "BLOCK_M = 64 or 128" in d.fix


def test_block_n_not_a_multiple_of_the_mma_k():
    text = mutate(dense(), "BLOCK_N = 64", "BLOCK_N = 40")
    find(check(text, head_dim=128), "tiles", text, "gemm(P, sV)", "inner K = BLOCK_N = 40 is not a multiple of 16",
         "make BLOCK_N a multiple of 16")


def test_pipeline_needs_staged_buffers():
    text = mutate(dense(), "with order=reverse, schedule=pingpong {", "with pipeline=2 {")
    find(check(text), "pipeline", text, "Copy sK <- K", "pipeline=2 (2 stages) but has stages=1", "stages=2")


def test_loop_order_and_schedule_values():
    text = mutate(dense(), "with order=reverse, schedule=pingpong {", "with order=backwards, schedule=pingping {")
    diags = check(text)
    find(diags, "options", text, "order=backwards", "a loop runs forward or reverse", "order=reverse")
    find(diags, "options", text, "order=backwards", "unknown loop schedule schedule=pingping", "pingpong")


# ---------------------------------------------------------------- attention semantics
def test_missing_reshape():
    text = mutate(mutate(dense(), "    Reshape P <- S\n", ""), "gemm(P, sV)", "gemm(S, sV)")
    d = find(check(text), "reshape", text, "gemm(S, sV)")
    assert d.message == ("gemm operand S is an accumulator (layout=mma_c, f32); the second GEMM needs an A operand: "
                         "add `Reshape P <- S` with `Allocate P : register DTYPE [BLOCK_M, BLOCK_N] with layout=mma_a`")


def test_missing_accumulator_rescale():
    text = mutate(dense(), "    Compute acc = acc * alpha\n", "")
    find(check(text), "softmax", text, "Compute acc += gemm(P, sV)", "acc is not rescaled",
         "Compute acc = acc * alpha")


def test_missing_row_sum_rescale():
    text = mutate(dense(), "Compute l = l * alpha + row_sum(S)", "Compute l = l + row_sum(S)")
    find(check(text), "softmax", text, "Compute l = l + row_sum(S)", "row sum l is not rescaled",
         "Compute l = l * alpha + row_sum(S)")


def test_missing_causal_mask_with_causal_spec():
    text = mutate(dense(), "causal=CAUSAL, ", "")
    find(check(text, causal=True), "mask", text, "mask(S,", "spec is causal but the mask has no causal=",
         "causal=CAUSAL")
    assert check(text, causal=False) == []
    text0 = mutate(dense(), "causal=CAUSAL", "causal=0")
    find(check(text0, causal=True), "mask", text0, "mask(S,", "spec is causal but the mask has causal=0 (= 0)")


def test_missing_kv_len_mask():
    text = mutate(dense(), "kv_len=Lk, ", "")
    find(check(text, causal=False), "mask", text, "mask(S,", "no kv_len=", "kv_len=Lk")


def test_missing_mask_altogether():
    text = mutate(dense(), "    Compute S = mask(S, kv_len=Lk, causal=CAUSAL, offset=Lk - Lq, window=WINDOW)\n", "")
    find(check(text), "mask", text, "Compute S = gemm(sQ, sK.T)", "no mask(...) on S",
         "Compute S = mask(S, kv_len=Lk, causal=CAUSAL, offset=Lk - Lq, window=WINDOW)")


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.name)
def test_golden_program_passes_with_window_and_softcap(path: Path):
    program = parse_tl(path.read_text(), str(path))
    spec = AttentionSpec(program.op, head_dim=128, gqa_group=4, sliding_window=256, softcap=30.0)
    for arch in program.targets:
        assert check_tl(program, arch, spec) == []


def test_non_causal_spec_with_a_causal_mask():
    text = mutate(dense(), "causal=CAUSAL", "causal=1")
    find(check(text, causal=False), "mask", text, "mask(S,", "spec is not causal", "causal=CAUSAL")
    assert check(text, causal=True) == []


def test_softcap_spec_needs_softcap():
    text = mutate(dense(), "softcap(S * softmax_scale, SOFTCAP) * LOG2E", "S * softmax_scale * LOG2E")
    find(check(text, softcap=30.0), "softcap", text, "Compute S = gemm(sQ, sK.T)", "soft-cap is 30",
         "softcap(S * softmax_scale, SOFTCAP)")
    assert check(text) == []


def test_sliding_window_spec_needs_window():
    text = mutate(dense(), ", window=WINDOW", "")
    find(check(text, sliding_window=128), "mask", text, "mask(S,", "spec has window = 128", "no window=",
         "window=WINDOW")
    assert check(text) == []


def test_missing_final_division():
    text = mutate(dense(), "  Compute acc = acc / nonzero(l)\n", "")
    find(check(text), "normalize", text, "Copy O[", "never divided by the row sum l",
         "Compute acc = acc / nonzero(l)")


@pytest.mark.parametrize("head", ["q_head % heads_kv", "q_head"])
def test_wrong_gqa_mapping(head: str):
    text = mutate(dense(), "K[b, kv_head,", f"K[b, {head},")
    diags = check(text, gqa_group=4)
    d = find(diags, "kv-head", text, "Copy sK <- K", "K/V must be indexed by the KV head q_head / GROUP")
    assert "let kv_head = q_head / GROUP" in d.fix
    assert not [x for x in diags if x.span and x.span.line == line_no(text, "Copy sV <- V")]


# ---------------------------------------------------------------- names, allocations, shapes
def test_undefined_name():
    text = mutate(dense(), "let Lk = seqlen_k[b]", "let Lk = seqlen_kv[b]")
    find(check(text), "names", text, "let Lk", "unknown name `seqlen_kv`", "did you mean seqlen_k")


def test_name_used_before_definition():
    text = mutate(dense(), "  let Lq = seqlen_q[b]\n", "")
    text = mutate(text, "  Allocate sQ", "  let Lq = seqlen_q[b]\n  Allocate sQ")
    d = find(check(text), "names", text, "let n_end", "`Lq` is used before it is defined")
    assert f"above line {line_no(text, 'let n_end')}" in d.fix


def test_unknown_function():
    text = mutate(dense(), "row_max(S)", "rowmax(S)")
    find(check(text), "names", text, "rowmax(S)", "unknown function `rowmax`", "did you mean row_max")


def test_missing_allocate():
    text = mutate(dense(), "  Allocate P : register DTYPE [BLOCK_M, BLOCK_N] with layout=mma_a\n", "")
    diags = check(text)
    find(diags, "allocate", text, "Reshape P <- S", "Reshape writes P, which is not Allocated",
         "Allocate P : register DTYPE [BLOCK_M, BLOCK_N] with layout=mma_a")
    assert [d.rule for d in diags] == ["allocate"], render_all(diags)


def test_allocating_a_global_tensor():
    text = mutate(dense(), "Allocate sQ : shared", "Allocate Q : shared")
    find(check(text), "names", text, "Allocate Q", "global tensor", "never Allocate")


def test_gemm_shape_mismatch():
    text = mutate(dense(), "gemm(sQ, sK.T)", "gemm(sQ, sK)")
    find(check(text), "shape", text, "gemm(sQ, sK)", "inner dimensions differ", "gemm(sQ, sK.T)")


def test_view_rows_exceed_buffer():
    text = mutate(dense(), "Q[b, q_head, q0 : q0 + BLOCK_M]", "Q[b, q_head, q0 : q0 + 2 * BLOCK_M]")
    find(check(text), "shape", text, "Copy sQ <- Q", "256 rows but the buffer holds 128")


def test_vector_vs_tile():
    text = mutate(dense(), "Allocate alpha : register f32 [BLOCK_M]", "Allocate alpha : register f32 [BLOCK_N]")
    find(check(text), "shape", text, "Compute acc = acc * alpha",
         "vector [64] does not match the rows of tile [128, 128]")


def test_gemm_accumulates_in_registers():
    text = mutate(dense(), "Allocate S : register f32", "Allocate S : shared f32")
    find(check(text), "level", text, "Compute S = gemm", "f32 registers", "layout=mma_c")


# ---------------------------------------------------------------- sketch vs program form
def test_sketch_passes_as_sketch_and_fails_as_program():
    text = to_sketch(dense())
    assert "with" not in text and "params" not in text
    assert check(text) == [] and check(text, form="sketch") == []
    diags = check(text, form="program")
    assert {d.rule for d in diags} == {"form"}
    find(diags, "form", text, "program dense_prefill_sm80", "needs a params block")
    find(diags, "form", text, "Copy sQ <- Q", "Copy has no via= option", "with via=cp.async")
    find(diags, "form", text, "Compute S = gemm", "no mma= option", "with mma=m16n8k16")
    find(diags, "form", text, "Allocate sK", "no layout= option", "layout=swizzle")
    find(diags, "form", text, "Allocate acc", "no layout= option", "layout=mma_c")
    sm75 = check(text, "sm_75", form="program")
    find(sm75, "form", text, "Copy sK <- K", "with via=ldg")
    find(sm75, "form", text, "gemm(P, sV)", "with mma=m16n8k8")


def test_program_form_requires_block_params():
    text = mutate(dense(), "  WARPS = 4\n", "")
    find(check(text), "form", text, "params {", "WARPS are not defined", "WARPS = ...")


def test_sketch_still_checks_semantics():
    text = to_sketch(mutate(dense(), "    Compute acc = acc * alpha\n", ""))
    find(check(text), "softmax", text, "Compute acc += gemm(P, sV)", "not rescaled")


# ---------------------------------------------------------------- split-KV decode (once its golden exists)
DECODE = TL_DIR / "paged_decode_sm80.tl"
needs_decode = pytest.mark.skipif(not DECODE.exists(), reason="paged_decode_sm80.tl not written yet")


def check_decode(text: str, **kw) -> list[Diagnostic]:
    return check(text, op="paged_decode", **kw)


@needs_decode
def test_decode_partial_output_must_be_normalised():
    text = mutate(DECODE.read_text(), "Compute acc = acc / nonzero(l)", "Compute acc = acc", count=1)
    find(check_decode(text), "normalize", text, "Copy O_part[", "O_part is written from acc", "nonzero(l)")


@needs_decode
def test_decode_block_m_must_be_a_multiple_of_16():
    text = re.sub(r"BLOCK_M = [^\n]+", "BLOCK_M = 24", DECODE.read_text())
    find(check_decode(text), "tiles", text, "BLOCK_M = 24", "not a multiple of 16", "round BLOCK_M up")


@needs_decode
def test_decode_warps_split_the_kv_columns():
    text = re.sub(r"BLOCK_N = \d+", "BLOCK_N = 16", DECODE.read_text())
    find(check_decode(text, gqa_group=8), "tiles", text, "BLOCK_M = ", "split neither", "multiple of 32")
    # BLOCK_M = 16 with 4 warps is fine once the warps split BLOCK_N = 64 columns
    assert check_decode(DECODE.read_text(), gqa_group=8) == []
