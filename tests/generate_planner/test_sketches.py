"""Sketch enumeration and the TL text the fragments compose: real TL, parsed, checked, lowered, round-tripped."""

import pytest

from qimeng_serve.generate.param_space import ParamPoint, param_points
from qimeng_serve.generate.sketches import Sketch, enumerate_sketches, program_text
from qimeng_serve.lower.emit import lower
from qimeng_serve.spec import AttentionSpec
from qimeng_serve.targets import get_target
from qimeng_serve.tl.checker import check_tl
from qimeng_serve.tl.parser import parse_tl
from qimeng_serve.tl.printer import print_tl


def test_enumeration_counts():
    prefill, decode = enumerate_sketches("paged_prefill"), enumerate_sketches("paged_decode")
    # order 2 x Q home 2 x overlap 3 x masking 2 (x packing 2 for decode), x 4 instruction choices
    assert len(prefill) == 2 * 2 * 3 * 2 * 4 == 96
    assert len(decode) == 2 * 2 * 3 * 2 * 2 * 4 == 192
    assert len(set(prefill)) == len(prefill) and len({s.structure for s in decode}) == 48
    # FA2's own choices come first: the preference order breaks the cost model's ties
    assert prefill[0] == Sketch("paged_prefill", "reverse", "shared", "pingpong", "skip", "", "cp.async", "m16n8k16")
    # parameters: 4 BLOCK_M x 4 BLOCK_N x 3 WARPS; pipeline sketches also try 2 and 3 stages
    assert len(param_points(prefill[0])) == 48
    assert len(param_points(Sketch("paged_prefill", overlap="pipeline"))) == 96
    assert len(param_points(Sketch("paged_decode", packing="group"))) == 4 * 3 * 4  # SPLIT_KV x WARPS x BLOCK_N


@pytest.mark.parametrize("op", ["paged_prefill", "dense_prefill", "paged_decode"])
def test_every_structure_is_a_sketch_the_checker_accepts(op):
    spec = AttentionSpec(op, "f16", 128, 16 if op == "paged_decode" else 1)
    structures = {s.structure: s for s in enumerate_sketches(op)}.values()
    for sketch in structures:
        text = program_text(sketch, spec, "sm_80", name="t")
        assert "with " not in text and "params" not in text  # the sketch form: statements only
        program = parse_tl(text)
        assert program.is_sketch
        errors = [d.render() for d in check_tl(program, "sm_80", spec, form="sketch") if d.severity == "error"]
        assert errors == [], (sketch.summary(), errors)


def test_program_text_round_trips_and_lowers():
    spec = AttentionSpec("paged_decode", "f16", 128, 16)
    sketch = Sketch("paged_decode", "forward", "registers", "pipeline", "mask", "head")
    point = ParamPoint(block_n=64, warps=4, stages=2, split_kv=512)
    text = program_text(sketch, spec, "sm_80", name="x", params=point.params(sketch), header=["a header"])
    program = parse_tl(text)
    assert text.startswith("# a header\nprogram x\nop paged_decode\ntargets sm_80\n")
    assert parse_tl(print_tl(program)) == program
    assert "Copy rQ <- sQ with via=ldmatrix" in text and "pipeline=STAGES" in text and "stages=STAGES" in text
    assert "Q[b, q_head, q0 : q0 + BLOCK_M]" in text  # one query head per CTA
    source = lower(program, get_target("sm_80"), spec)
    assert [e.role for e in source.entries] == ["split", "combine"]
    assert source.params["STAGES"] == 2 and source.params["SPLIT_KV"] == 512
