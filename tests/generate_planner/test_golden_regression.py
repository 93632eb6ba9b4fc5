"""The hand-written golden programs (kernels_src/tl, tiles measured on an H200) as the planner's
regression baseline: for each target class (Turing sm_75; sm_80+ timed as sm_90, where the
measurements are), family and head size, the planner's program must match or beat the golden one
under the cost model, and pass the checker and the interpreter. Run with -s to see both."""

import pytest

from qimeng_serve.build.kernel_set import FAMILIES, program_for
from qimeng_serve.generate.cost_model import estimate
from qimeng_serve.generate.interpret_gate import interpret
from qimeng_serve.generate.planner import Planner
from qimeng_serve.spec import HEAD_DIMS, AttentionSpec
from qimeng_serve.targets import get_target
from qimeng_serve.tl.checker import check_tl
from qimeng_serve.tl.interpreter import resolve_params

CASES = [(arch, family, hd) for arch in ("sm_75", "sm_90") for family in FAMILIES for hd in HEAD_DIMS]


def _params(program, spec) -> str:
    p = resolve_params(program, spec)
    names = ("BLOCK_M", "BLOCK_N", "WARPS", "STAGES", "PIPE", "SPLIT_KV")
    return " ".join(f"{k}={p[k]}" for k in names if k in p and not (k in ("STAGES", "PIPE") and p[k] == 1))


@pytest.mark.parametrize("arch, family, hd", CASES)
def test_planner_matches_or_beats_the_golden_program(arch, family, hd):
    target = get_target(arch)
    spec = AttentionSpec(family, "f16", hd, 16 if family == "paged_decode" else 1)
    planned = Planner(use_cache=False).generate(spec, target)
    path, golden = program_for(family, target)
    mine, theirs = estimate(planned.program, target, spec), estimate(golden, target, spec)
    print(f"\n{arch} {family} hd{hd}\n  planner: {_params(planned.program, spec)} "
          f"({planned.record.details['chosen']['sketch']})\n           {mine.summary()}"
          f"\n  golden : {_params(golden, spec)} ({path.name})\n           {theirs.summary()}")
    assert mine.feasible and mine.score <= theirs.score * (1 + 1e-9)
    assert [d.render() for d in check_tl(planned.program, target, spec) if d.severity == "error"] == []
    params = {k: v for k, v in resolve_params(planned.program, spec).items() if isinstance(v, int)}
    assert interpret(planned.program, spec, params, seed=7) == ""  # other random inputs than the planner's gate
