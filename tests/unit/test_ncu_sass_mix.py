"""scripts/ncu_sass_mix.py on a small hand-made ncu source page: the consumer region is found by its
setmaxnreg instructions and its HGMMAs, opcodes are counted by execution, predicates ignored."""

from __future__ import annotations

import importlib.util

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("ncu_sass_mix", REPO / "scripts" / "ncu_sass_mix.py")
mix_script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mix_script)

HEADER = ["Address", "Source", "Warp Stall Sampling (All Samples)", "Instructions Executed", "stall_wait",
          "stall_barrier", "stall_wait (Not Issued)"]
ROWS = [  # (SASS, executions, wait samples, barrier samples)
    ("S2R R0, SR_TID.X", 10, 0, 0),
    ("USETMAXREG.TRY_ALLOC.CTAPOOL UP0, 0xe8", 8, 0, 0),
    ("HGMMA.64x80x16.F32.BF16 R152, gdesc[UR20], R152", 100, 5, 0),
    ("R2UR UR20, R16", 100, 0, 0),
    ("@!P0 R2UR UR21, R17", 100, 0, 0),
    ("WARPGROUP.DEPBAR.LE gsb0, 0x0", 100, 0, 30),
    ("USETMAXREG.DEALLOC.CTAPOOL 0x28", 4, 0, 0),
    ("LDGSTS.E.BYPASS.128 [R1], desc[UR4][R2.64]", 400, 15, 0),
]


def write(path, rows):
    lines = ['"==PROF== Connected to process 1"', ",".join(f'"{h}"' for h in HEADER)]
    for i, (sass, ex, wait, barrier) in enumerate(rows):
        cells = [f"0x{i:x}", sass, str(wait + barrier), str(ex), str(wait), str(barrier), "0"]
        lines.append(",".join(f'"{c}"' for c in cells))
    path.write_text("\n".join(lines) + "\n")


def test_the_consumer_region_and_its_opcodes(tmp_path):
    path = tmp_path / "k.csv"
    write(path, ROWS)
    counts, share, stalls = mix_script.mix(path, per=100)
    assert dict(counts) == {"USETMAXREG": 0.08, "HGMMA": 1.0, "R2UR": 2.0, "WARPGROUP": 1.0}
    assert share == (8 + 4 * 100) / (10 + 8 + 4 * 100 + 4 + 400)  # the consumer region's share of the kernel
    assert stalls == {"stall_wait": 20 / 50, "stall_barrier": 30 / 50}


def test_a_producer_first_layout_takes_the_other_side(tmp_path):
    """Some kernels put the producer's code (after DEALLOC) before the consumers': the region with the
    HGMMAs is the consumers' whichever side of the shrink it lies."""
    rows = [ROWS[0], ROWS[6], ROWS[7], ROWS[1], *ROWS[2:6]]
    sass = [r[0] for r in rows]
    region = mix_script.consumer_range(sass)
    assert [sass[i] for i in region] == [ROWS[1][0], *(r[0] for r in ROWS[2:6])]
