"""The parameters a sketch needs to become a program: tile sizes, warps, pipeline depth, split size.

The ranges are wide on purpose: the checker (tile divisibility, shared-memory and register
budgets), the lowering (tile shapes the building blocks implement) and the cost model (does a CTA
fit on an SM at all) do the pruning, so that a target with more shared memory or registers gets
bigger tiles without any rule here saying so.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from qimeng_serve.generate.sketches import Sketch

PREFILL_BLOCK_M = (32, 64, 128, 256)
BLOCK_N = (16, 32, 64, 128)
PREFILL_WARPS = (2, 4, 8)
DECODE_WARPS = (2, 4, 8)  # the building blocks' decode arrangement splits the keys over WARPS > 1 (traits.cuh)
PIPELINE_STAGES = (2, 3)  # K/V tile pairs in flight for `pipeline` sketches (stage 2 lowers 2)
SPLIT_KV = (256, 512, 1024, 2048)

# decode packs query rows into one 16-row MMA tile (padding rows see no key)
_DECODE_BLOCK_M = {"group": "cdiv(GROUP * QLEN, 16) * 16", "head": "cdiv(QLEN, 16) * 16"}


@dataclass(frozen=True)
class ParamPoint:
    block_n: int
    warps: int
    block_m: int = 0  # 0: decode, where the packing decides BLOCK_M
    stages: int = 1  # K/V tile pairs in flight; > 1 only for pipeline sketches
    split_kv: int = 0  # decode only

    def summary(self) -> str:
        parts = [f"BLOCK_M={self.block_m}" if self.block_m else "", f"BLOCK_N={self.block_n}", f"WARPS={self.warps}"]
        if self.stages > 1:
            parts.append(f"STAGES={self.stages}")
        if self.split_kv:
            parts.append(f"SPLIT_KV={self.split_kv}")
        return " ".join(p for p in parts if p)

    def params(self, sketch: Sketch) -> list[tuple[str, str]]:
        """(name, TL expression) for the params block, in a fixed order."""
        bm = _DECODE_BLOCK_M[sketch.packing] if sketch.decode else str(self.block_m)
        out = [("BLOCK_M", bm), ("BLOCK_N", str(self.block_n)), ("WARPS", str(self.warps))]
        if sketch.overlap == "pipeline":
            out.append(("STAGES", str(self.stages)))
        if sketch.decode:
            out.append(("SPLIT_KV", str(self.split_kv)))
        return out


def param_points(sketch: Sketch) -> list[ParamPoint]:
    """Every parameter point of a sketch, smallest tiles first (a deterministic order)."""
    stages = PIPELINE_STAGES if sketch.overlap == "pipeline" else (1,)
    if sketch.decode:
        return [ParamPoint(bn, w, 0, st, split)
                for split, w, bn, st in itertools.product(SPLIT_KV, DECODE_WARPS, BLOCK_N, stages)]
    return [ParamPoint(bn, w, bm, st)
            for bm, bn, w, st in itertools.product(PREFILL_BLOCK_M, BLOCK_N, PREFILL_WARPS, stages)]
