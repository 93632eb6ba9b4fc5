"""The planner's cost model for Hopper programs: predicted time on an H100 without a GPU.

It ranks the warp-specialised candidates (hopper_sketches.py); measurement has the last word
(`--tune`; docs/planner.md, "Hopper programs"). Terms, in SM clock cycles (1.83 GHz, 132 SMs):

  KV tile  T = max(t_gemm, R) + KV_TILE_FIXED
           t_gemm = 4 * BM * BN * D / GMMA rate: the CTA's two GEMMs on the SM's one tensor pipe
           R      = t_gemm / C + KAPPA * s: one warpgroup's round, its own GEMMs and then the part of
                    its softmax it cannot hide; s = 64 * BN / SFU rate, its exponentials
           KAPPA  per overlap, times PINGPONG_KAPPA under ping-pong
  tile     its KV tiles (the program's own loop bounds) + TILE_FIXED: the first S GEMM and softmax,
           the last O += P V, normalising and storing O, taking the next tile; a CTA per tile
           (tiles=grid) adds CTA_START (launch, Q's first load, the pipeline's fill)
  case     tiles scheduled greedily on the SMs in the kernel's order (the longest causal ones first)

With few warpgroups and a long softmax (D 64: s is as long as a warpgroup's GEMMs) the round binds:
the tensor pipe waits while every warpgroup is in its softmax. With more warpgroups or a larger D
the shared tensor pipe binds.

The constants are fitted to ten steady states measured on the H100 (bf16, 16k, no mask; docs/perf-
notes.md "Hopper path" runs). Each is given as cycles a KV tile, measured / model:
- D 128 128 x 128 pinned + ping-pong: 2727 (the session-5 trace) / 2787;
- D 256 128 x 80 softmax: 3252 / 3252;
- D 64 192 x 96 softmax: 2183 / 2182;
- D 64 128 x 176 pinned + ping-pong: about 2869 / 2869;
- D 64 128 x 128 pinned + ping-pong: about 2144 / 2274;
- D 256 128 x 64 pinned + ping-pong: about 2768 / 2740;
- D 64 192 x 128 gemms + ping-pong: about 2888 / 2988;
- D 64 192 x 80 pinned + ping-pong: about 2010 / 1965;
- D 64 192 x 144 no overlap: about 3121 / 3169;
- D 256 128 x 80 no overlap + ping-pong: about 3687 / 3688.
The "about" ones come from their ratio to the shipped kernel in the same run (sessions 7, 13 and 14;
the last three from --tune's own timing, session 14). The two softmax kernels fix KV_TILE_FIXED and
KAPPA["softmax"]; the D 64 128 x 176 one fixes pinned + ping-pong on two warpgroups, the two D 64
192-row ones ping-pong on three, D 64 192 x 144 no overlap, D 256's none + ping-pong the turns
without an overlap. KAPPA for gemms and pinned without ping-pong are not measured apart: gemms is
set at softmax's, pinned at what its ping-pong fit leaves. TILE_FIXED is the ~3 us a tile
boundary took in the D 128 traces (sessions 5-8).

Registers: a consumer thread holds O (D / 2 floats), S (BN / 2), P (BN / 4: two 16-bit values a
register) and what its loop keeps besides (REG_EXTRA per overlap). These are fitted to the ptxas
outcomes the perf notes record:
- pinned spills D 64 192 x 96 at 160 and D 256 128 x 80 at 240, and fits D 128 128 x 128 at 232;
- softmax fits D 256 128 x 80 at 240 and D 64 192 x 96 at 160;
- softmax spills D 256 at 232 and D 128 128 x 176 at 240;
- gemms fits paged D 256 128 x 80 at 224, and so does none.
A candidate whose estimate passes its regs= is pruned: ptxas would spill, and stage 2 rejects a
spill anyway.
"""

from __future__ import annotations

import heapq
import math

from qimeng_serve.generate.cost_model import CaseEstimate, Estimate
from qimeng_serve.generate.hopper_sketches import ALIGNED_SHIFT, HopperPoint, HopperSketch, stores_o_by_tma
from qimeng_serve.lower.emit_sm90 import smem_bytes
from qimeng_serve.spec import AttentionSpec

HOPPER_COST_MODEL_VERSION = "4"
DEVICE = "H100 SXM (132 SMs, 1.83 GHz)"
SMS = 132
CLOCK_GHZ = 1.83
GMMA_FLOPS_PER_CLOCK = 4096  # dense 16-bit warpgroup MMA per SM: 989 TFLOPS / (132 x 1.83 GHz)
SFU_PER_CLOCK = 16  # exp2 (MUFU.EX2) per SM
KV_TILE_FIXED = 692  # cycles a KV tile: barrier waits, descriptors, loop bookkeeping (fitted)
TILE_FIXED = 5500  # cycles a tile boundary: ~3 us in the D 128 traces
CTA_START = 3100  # tiles=grid: Q lands ~1.7 us after a CTA starts (the one-tile-per-CTA traces)
# the softmax a warpgroup's round keeps, in units of its exponentials (softmax, none and pinned with
# ping-pong fitted; gemms assumed at softmax's: it waits for both GEMMs first)
KAPPA = {"none": 3.3, "softmax": 2.88, "gemms": 2.88, "pinned": 2.46}
# ping-pong's turns, a factor on KAPPA: with two warpgroups the other's GEMMs run beside this one's
# pinned softmax (fitted: 2.46 x 0.85 = 2.09), while without any overlap the turns only serialise
# (D 256 128 x 80, session 14); softmax and gemms with ping-pong were timed only where the tensor pipe
# binds (D 256: level), so they keep their plain KAPPA. With three warpgroups: pinned 1.27 (D 64
# 192 x 80, session 14), gemms 1.08 (D 64 192 x 128 as shipped since session 15, whose KV loop ptxas
# schedules 4-6% faster than session 13's build of the same params, which fitted 1.15); the others,
# never timed, 1.21 between the two.
PINGPONG_KAPPA = {(2, "pinned"): 0.85, (2, "none"): 1.62, (2, "softmax"): 1.0, (2, "gemms"): 1.0,
                  (3, "pinned"): 1.27, (3, "gemms"): 1.08}
PINGPONG_KAPPA_THREE = 1.21


def pingpong_factor(consumers: int, overlap: str) -> float:
    """What ping-pong's turns do to the softmax a warpgroup's round keeps (KAPPA's factor)."""
    return PINGPONG_KAPPA.get((consumers, overlap), PINGPONG_KAPPA_THREE if consumers > 2 else 1.0)


REG_EXTRA = {"none": 40, "softmax": 48, "gemms": 32, "pinned": 64}
LENGTHS = (1024, 2048, 4096, 8192, 16384)


def consumer_registers(sketch: HopperSketch, point: HopperPoint, head_dim: int) -> int:
    """Registers a consumer thread needs: O, S, P and the loop's own (REG_EXTRA)."""
    o, s, p = head_dim // 2, point.block_n // 2, point.block_n // 4
    return o + s + (0 if sketch.overlap == "none" else p) + REG_EXTRA[sketch.overlap]


def gemm_cycles(point: HopperPoint, head_dim: int) -> float:
    """The CTA's two GEMMs of one KV tile on the SM's tensor pipe."""
    return 4 * point.block_m * point.block_n * head_dim / GMMA_FLOPS_PER_CLOCK


def kv_tile_cycles(sketch: HopperSketch, point: HopperPoint, head_dim: int) -> float:
    """max(the tensor pipe's time, one warpgroup's round) + the fixed part, for one KV tile."""
    t_gemm = gemm_cycles(point, head_dim)
    exps = 64 * point.block_n / SFU_PER_CLOCK  # one warpgroup's exponentials
    kappa = KAPPA[sketch.overlap] * (pingpong_factor(point.consumers, sketch.overlap)
                                     if sketch.schedule == "pingpong" else 1.0)
    round_ = t_gemm / point.consumers + kappa * exps
    return max(t_gemm, round_) + KV_TILE_FIXED


def _tile_kv_counts(point: HopperPoint, length: int, causal: bool, aligned: bool = False) -> list[int]:
    """KV tiles each query tile visits, in the kernel's order (the last query block first). Under a
    causal mask the padding rows of a length that is not a whole number of query tiles are at the
    front (the programs' `q0`), so the last tile ends at the last query; `aligned`: the shift is a
    multiple of gcd(BLOCK_M, BLOCK_N) (hopper_sketches.Q0_LINES)."""
    bm, bn = point.block_m, point.block_n
    blocks = math.ceil(length / bm)
    pad = blocks * bm - length
    if aligned:
        pad -= pad % math.gcd(bm, bn)
    out = []
    for m in reversed(range(blocks)):
        n_end = min(math.ceil(length / bn), math.ceil((m * bm + bm - pad) / bn)) if causal else math.ceil(length / bn)
        out.append(n_end)
    return out


def _makespan(tile_cycles: list[float], slots: int) -> float:
    """Greedy list scheduling: each tile to the slot that frees first, in order."""
    free = [0.0] * slots
    for t in tile_cycles:
        heapq.heapreplace(free, free[0] + t)
    return max(free)


def estimate_hopper(sketch: HopperSketch, point: HopperPoint, spec: AttentionSpec) -> Estimate:
    """Predicted times over the benchmark's shapes (16k tokens, H x D = 2048, L 1k-16k, the spec's
    mask); the score is their geometric mean in microseconds, inf when the registers do not fit."""
    d = spec.head_dim
    producer, consumer = point.registers(sketch)
    need = consumer_registers(sketch, point, d)
    # what the lowering launches with (O's tile too where the program stores O by TMA)
    smem = smem_bytes(d, point.block_m, point.block_n, point.stages, stores_o_by_tma(spec.op, d))
    if need > consumer:
        return Estimate(math.inf, registers=need, spill_regs=need - consumer, smem_bytes=smem, device=DEVICE,
                        reason=f"the consumer needs about {need} registers a thread, keeps {consumer}: it would spill")
    kv = kv_tile_cycles(sketch, point, d)
    start = CTA_START if sketch.tiles == "grid" else 0.0
    heads = 2048 // d
    cases = []
    for length in LENGTHS:
        batch = 16384 // length
        counts = _tile_kv_counts(point, length, spec.causal, ALIGNED_SHIFT.get(spec.op, False))
        per_head = [TILE_FIXED + start + n * kv for n in counts]
        cycles = _makespan(per_head * (batch * heads), SMS)
        us = cycles / (CLOCK_GHZ * 1e3)
        flops = 4 * batch * heads * length * length * d / (2 if spec.causal else 1)
        label = f"L={length // 1024}k {'causal' if spec.causal else 'full'}"
        cases.append(CaseEstimate(label, round(us, 3), flops / (us * 1e-6) / 1e12))
    score = math.exp(sum(math.log(c.time_us) for c in cases) / len(cases))
    bound = "tensor" if kv - KV_TILE_FIXED <= gemm_cycles(point, d) else "warpgroup round"
    return Estimate(score, tuple(cases), 1, need, 0, smem, bound, DEVICE,
                    details={"kv_tile_cycles": round(kv), "registers": f"{producer}/{consumer}"})
