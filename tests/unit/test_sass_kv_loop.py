"""scripts/sass_kv_loop.py on hand-made cuobjdump text: the smallest backward loop with enough HGMMAs
is the KV loop, predicated opcodes count as their opcode, other loops are left out."""

from __future__ import annotations

import importlib.util

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("sass_kv_loop", REPO / "scripts" / "sass_kv_loop.py")
kv = importlib.util.module_from_spec(spec)
spec.loader.exec_module(kv)


def sass(lines: list[str]) -> str:
    return "\n".join(f"        /*{16 * i:04x}*/                   {t} ;  /* 0x000 */" for i, t in enumerate(lines))


PROGRAM = [
    "S2R R0, SR_TID.X",                            # 0x00
    "HGMMA.64x80x16.F32.BF16 R152, gdesc[UR8], RZ",  # 0x10: the outer loop's target
    "R2UR UR20, R16",                              # 0x20: the KV loop's target
    "HGMMA.64x80x16.F32.BF16 R152, gdesc[UR20], R152",
    "HGMMA.64x80x16.F32.BF16 R152, gdesc[UR20], R152",
    "@!P0 R2UR UR21, R17",
    "HGMMA.64x256x16.F32.BF16 R24, R160, gdesc[UR16].tnspB, R24",
    "@P1 BRA 0x20",                                # the KV loop's back edge
    "IADD3 R1, R1, 0x1, RZ",
    "@P2 BRA 0x10",                                # an outer loop, larger
    "@P3 BRA 0x40",                                # a backward branch to a loop without enough HGMMAs
    "EXIT",
]


def test_the_smallest_loop_with_the_hgmmas_is_counted():
    body = kv.kv_loop(kv.parse(sass(PROGRAM)), min_hgmma=3)
    assert body is not None and body[0] == "R2UR UR20, R16" and body[-1] == "@P1 BRA 0x20"
    counts = kv.summary(body)
    assert counts["instructions"] == 6 and counts["HGMMA"] == 3 and counts["R2UR"] == 2


def test_no_loop_when_none_holds_enough_hgmmas():
    assert kv.kv_loop(kv.parse(sass(PROGRAM)), min_hgmma=5) is None


def test_the_schedule_is_the_order_of_opcodes_and_a_reordering_is_a_difference():
    body = kv.kv_loop(kv.parse(sass(PROGRAM)), min_hgmma=3)
    assert kv.schedule(body) == ["R2UR", "HGMMA.64x80x16.F32.BF16", "HGMMA.64x80x16.F32.BF16", "@ R2UR",
                                 "HGMMA.64x256x16.F32.BF16", "@ BRA"]
    # other registers and predicates: the same schedule
    renamed = [t.replace("UR20", "UR24").replace("@!P0", "@P3").replace("R152", "R120") for t in PROGRAM]
    assert kv.schedule_diff(kv.schedule(body), kv.kv_loop(kv.parse(sass(renamed)), min_hgmma=3)) == []
    # the same instructions in another order: a difference
    swapped = PROGRAM[:3] + [PROGRAM[5], PROGRAM[3], PROGRAM[4]] + PROGRAM[6:]
    diff = kv.schedule_diff(kv.schedule(body), kv.kv_loop(kv.parse(sass(swapped)), min_hgmma=3))
    assert any(line.startswith("-") for line in diff) and any(line.startswith("+@ R2UR") for line in diff)
