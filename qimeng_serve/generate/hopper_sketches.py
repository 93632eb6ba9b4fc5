"""Stage 1 sketches of the Hopper (sm_90) programs: warp-specialised TMA + GMMA kernels.

A HopperSketch fixes the structure of an sm_90 prefill program in the FlashAttention-3 arrangement
(docs/tl.md section 10): a producer warpgroup fills a ring of shared K/V stages, consumer warpgroups
of 64 query rows each run both GEMMs as warpgroup MMAs with the softmax between them. A HopperPoint
fills in the tile sizes and the register split. The text is composed from small fragments and
parsed by the real TL parser, like the portable sketches (sketches.py).

Choices, in the planner's preference order (the first is what FA3 does at D = 128):
- tiles: `persistent` (one CTA per SM claims tiles from a counter) or `grid` (a CTA per tile);
- schedule: `pingpong` (the consumer warpgroups take turns issuing their GEMMs; two or more
  warpgroups) or `cooperative` (each issues when ready);
- overlap: `pinned`, `softmax`, `gemms` or `none` (how a warpgroup's softmax meets its own GEMMs;
  docs/tl.md);
- K/V copies: fixed by the op: TMA boxes for dense prefill, the producer warpgroup's cp.async
  gather for paged prefill (a TMA box cannot gather 16-row pages: paged_prefill_sm90.tl).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from qimeng_serve.spec import AttentionSpec

HOPPER_OPS = ("dense_prefill", "paged_prefill")
TILES = ("persistent", "grid")
SCHEDULES = ("pingpong", "cooperative")
OVERLAPS = ("pinned", "softmax", "gemms", "none")

# consumer warpgroups, BLOCK_M = 64 each. Not 1: a CTA of two warpgroups launches with 248 registers a
# thread, more than a consumer may keep, and setmaxnreg cannot lower the one that must gain.
CONSUMERS = (2, 3)
BLOCK_N = (64, 80, 96, 112, 128, 144, 160, 176, 192)  # GMMA N: a multiple of 16 (8 for the gather)
STAGES = (2, 3, 4)
REG_STEP = 8  # setmaxnreg moves registers in multiples of 8
REG_MAX = 240  # what a consumer may keep (FA3's 240; setmaxnreg's 256 leaves no room for the producer)
# The producer's registers: enough for its copies and tile claims and no more; what is left goes to
# the consumers. The TMA producer compiles without spills at 24 (one thread issues a tile's boxes;
# `#pragma unroll 1`, perf-notes "sixth run"); the gathering producer needs 56 (at 40 it spills 48 B
# in its per-tile page lookup, paged_prefill_sm90.tl).
PRODUCER_MIN_REGS = {"tma": 24, "cp.async": 56}
REGS_PER_SM = 65536
MAX_THREADS_REGS = 255  # per thread, what a launch may give


@dataclass(frozen=True)
class HopperSketch:
    op: str
    tiles: str = "persistent"
    schedule: str = "pingpong"
    overlap: str = "pinned"

    @property
    def kv_via(self) -> str:
        return "cp.async" if self.op == "paged_prefill" else "tma"

    @property
    def structure(self) -> tuple[str, ...]:
        return (self.op, self.tiles, self.schedule, self.overlap)

    def summary(self) -> str:
        return (f"warp-specialised, {self.tiles} tiles, {self.schedule} consumers, overlap={self.overlap}; "
                f"K/V via {self.kv_via}, gmma")


def enumerate_hopper_sketches(op: str) -> list[HopperSketch]:
    """Every Hopper sketch of an op, in preference order; none for ops without a Hopper form."""
    if op not in HOPPER_OPS:
        return []
    return [HopperSketch(op, t, s, o) for t, s, o in itertools.product(TILES, SCHEDULES, OVERLAPS)]


@dataclass(frozen=True)
class HopperPoint:
    consumers: int
    block_n: int
    stages: int

    @property
    def block_m(self) -> int:
        return 64 * self.consumers

    def registers(self, sketch: HopperSketch) -> tuple[int, int]:
        """(producer, consumer) registers per thread: the consumers keep what the launch gives the CTA
        (the register file over its threads, a multiple of 8 per thread) once the producer has its
        minimum, at most REG_MAX; the producer takes the rest."""
        threads = 128 * (self.consumers + 1)
        launched = min(MAX_THREADS_REGS, REGS_PER_SM // threads) // REG_STEP * REG_STEP * threads
        floor = PRODUCER_MIN_REGS[sketch.kv_via]
        consumer = min(REG_MAX, (launched - floor * 128) // (128 * self.consumers) // REG_STEP * REG_STEP)
        producer = min(REG_MAX, (launched - consumer * 128 * self.consumers) // 128 // REG_STEP * REG_STEP)
        return producer, consumer

    def summary(self, sketch: HopperSketch) -> str:
        producer, consumer = self.registers(sketch)
        return (f"BLOCK_M={self.block_m} BLOCK_N={self.block_n} CONSUMERS={self.consumers} STAGES={self.stages} "
                f"regs={producer}/{consumer}")

    def params(self, sketch: HopperSketch) -> list[tuple[str, str]]:
        """(name, TL expression) for the params block, in a fixed order."""
        producer, consumer = self.registers(sketch)
        return [("BLOCK_M", str(self.block_m)), ("BLOCK_N", str(self.block_n)), ("WARPS", str(4 * self.consumers)),
                ("STAGES", str(self.stages)), ("CONSUMERS", str(self.consumers)),
                ("PRODUCER_REGS", str(producer)), ("CONSUMER_REGS", str(consumer))]


def hopper_points(sketch: HopperSketch) -> list[HopperPoint]:
    """Every parameter point of a sketch, smallest tiles first. Ping-pong needs two warpgroups."""
    consumers = [c for c in CONSUMERS if c > 1 or sketch.schedule != "pingpong"]
    return [HopperPoint(c, bn, st) for c, bn, st in itertools.product(consumers, BLOCK_N, STAGES)
            if sketch.kv_via == "tma" or bn % 8 == 0]


# The shipped programs (kernels_src/tl/<op>_sm90.tl, the build's `--hopper-generator golden`) as a
# sketch and a point, per (op, head_dim): the fastest measured so far. --tune times the one of its
# spec beside the planner's picks, so a tuned plan is measured against what ships. Dense D 128 ships
# 40 / 232; its point here takes the planner's split (24 / 240, timed level in session 13's run 1), and two
# stages beside O's shared tile (stores_o_by_tma).
SHIPPED = {
    ("dense_prefill", 64): (HopperSketch("dense_prefill", "persistent", "pingpong", "gemms"), HopperPoint(3, 128, 4)),
    ("dense_prefill", 128): (HopperSketch("dense_prefill", "persistent", "pingpong", "pinned"), HopperPoint(2, 128, 2)),
    ("dense_prefill", 256): (HopperSketch("dense_prefill", "persistent", "cooperative", "softmax"), HopperPoint(2, 80, 2)),
    ("paged_prefill", 64): (HopperSketch("paged_prefill", "persistent", "cooperative", "softmax"), HopperPoint(3, 96, 3)),
    ("paged_prefill", 128): (HopperSketch("paged_prefill", "persistent", "pingpong", "softmax"), HopperPoint(2, 128, 3)),
    ("paged_prefill", 256): (HopperSketch("paged_prefill", "persistent", "pingpong", "gemms"), HopperPoint(2, 80, 2)),
}


# ---------------------------------------------------------------- text
# Where a query tile starts, as the measured programs have it: under a causal mask a length that is not
# a whole number of query tiles pads its first tile, not its last. Paged prefill shifts by a multiple of
# gcd(BLOCK_M, BLOCK_N) so that every query tile meets its diagonal alike; dense keeps the plain shift,
# with which ptxas schedules dense D 64's KV loop faster (docs/perf-notes.md "thirteenth run").
Q0_LINES = {
    "dense_prefill": [
        "  # causal: a length that is not a whole number of query tiles pads its first tile, not its last",
        "  let q0 = m_block * BLOCK_M - select(CAUSAL, cdiv(Lq, BLOCK_M) * BLOCK_M - Lq, 0)",
    ],
    "paged_prefill": [
        "  # causal: a length that is not a whole number of query tiles pads its first tile, not its last,",
        "  # shifted so that every query tile meets its diagonal at the same place in its KV tiles",
        "  let q_pad = cdiv(Lq, BLOCK_M) * BLOCK_M - Lq",
        "  let q_shift = max(0, q_pad - (q_pad - (Lk - Lq)) % gcd(BLOCK_M, BLOCK_N))",
        "  let q0 = m_block * BLOCK_M - select(CAUSAL, q_shift, 0)",
    ],
}
# which Q0_LINES shift by multiples of gcd(BLOCK_M, BLOCK_N) (the cost model counts KV tiles with it)
ALIGNED_SHIFT = {op: any("gcd(" in line for line in lines) for op, lines in Q0_LINES.items()}


def skips_idle(sketch: HopperSketch, params: dict[str, str]) -> bool:
    """idle=skip where a query tile's height is not a power of two (192 rows: the common lengths leave
    warpgroups of a sequence's last tile without a row; D 64 +6% at 1k). A 128-row tile gains nothing at
    those lengths and lost 0.3-0.9% at D 128 (perf-notes "fifteenth run")."""
    block_m = int(params.get("BLOCK_M", "0")) if params.get("BLOCK_M", "").isdigit() else 0
    return block_m > 0 and block_m & (block_m - 1) != 0


def rescales_lazily(op: str, head_dim: int) -> bool:
    """rescale=lazy where skipping O's rescale between growths of the running max paid on an H200: dense
    prefill at D >= 128 (64 / 128 FMUL a KV step skipped: +0.6-1.5% / +4.6-7.2%) and paged prefill at every
    head size (+0.3-4.6%); dense D 64's 32 FMUL did not pay for the vote (-0.7%; perf-notes "nineteenth run")."""
    return op == "paged_prefill" or head_dim >= 128


def stores_o_by_tma(op: str, head_dim: int) -> bool:
    """O through a shared tile and bulk tensor stores (`via=tma`) where it paid on an H200: dense prefill at
    D 128, +1.5-2.0% without a mask and +1.0-1.4% causal at 2k-4k (perf-notes "twentieth run"). Its 32 KB
    tile leaves room for two 128-key K/V stages (the lowering refuses a point whose shared memory does not fit)."""
    return op == "dense_prefill" and head_dim == 128


def hopper_program_text(sketch: HopperSketch, spec: AttentionSpec, arch: str, *, name: str,
                        params: list[tuple[str, str]] | None = None, header: list[str] | None = None) -> str:
    """The TL text of a Hopper sketch: program form when params are given, else sketch form (no
    params block, no `with` options)."""
    program = params is not None
    w = (lambda *o: (" with " + ", ".join(x for x in o if x)) if program and any(o) else "")
    lines = [f"# {h}" if h else "#" for h in (header or [])]
    lines += [f"program {name}", f"op {spec.op}", f"targets {arch}", ""]
    if program:
        lines += ["params {", *(f"  {k} = {v}" for k, v in params), "}", ""]
    kv = "via=tma" if sketch.kv_via == "tma" else "via=cp.async"
    consumer = [f"warpgroups=CONSUMERS", "regs=CONSUMER_REGS",
                *([f"overlap={sketch.overlap}"] if sketch.overlap != "none" else []),
                *(["schedule=pingpong"] if sketch.schedule == "pingpong" else []),
                *(["idle=skip"] if program and skips_idle(sketch, dict(params)) else []),
                *(["rescale=lazy"] if program and rescales_lazily(sketch.op, spec.head_dim) else [])]
    lines += [
        "kernel attn grid (m_block : cdiv(max_seq_q, BLOCK_M), q_head : heads_q, b : batch)"
        + w(f"tiles={sketch.tiles}") + " {",
        "  let kv_head = q_head / GROUP",
        "  let Lq = seqlen_q[b]",
        "  let Lk = seqlen_k[b]",
        *Q0_LINES[sketch.op],
        "  # causal: the last KV tile this query tile can see holds key q0 + BLOCK_M - 1 + Lk - Lq",
        "  let n_end = select(CAUSAL, min(cdiv(Lk, BLOCK_N), cdiv(q0 + BLOCK_M + Lk - Lq, BLOCK_N)), cdiv(Lk, BLOCK_N))",
        "  let n_start = select(WINDOW, max(0, q0 + Lk - Lq - WINDOW + 1) / BLOCK_N, 0)",
        "  Allocate sQ : shared DTYPE [BLOCK_M, D]" + w("layout=swizzle"),
        "  Allocate sK : shared DTYPE [BLOCK_N, D]" + w("layout=swizzle", "stages=STAGES"),
        "  Allocate sV : shared DTYPE [BLOCK_N, D]" + w("layout=swizzle", "stages=STAGES"),
        "  # the producer warpgroup copies; its registers go to the consumers (setmaxnreg)",
        "  Role producer" + w("warpgroups=1", "regs=PRODUCER_REGS") + " {",
        "    Copy sQ <- Q[b, q_head, q0 : q0 + BLOCK_M]" + w("via=tma"),
        "    Loop n in n_start .. n_end" + w("order=reverse") + " {",
        "      Copy sK <- K[b, kv_head, n * BLOCK_N : n * BLOCK_N + BLOCK_N]" + w(kv),
        "      Copy sV <- V[b, kv_head, n * BLOCK_N : n * BLOCK_N + BLOCK_N]" + w(kv),
        "    }",
        "  }",
        "  # 64 query rows per consumer warpgroup; both GEMMs are warpgroup MMAs",
        "  Role consumer" + w(*consumer) + " {",
        "    Allocate S : register f32 [BLOCK_M, BLOCK_N]" + w("layout=mma_c"),
        "    Allocate P : register DTYPE [BLOCK_M, BLOCK_N]" + w("layout=mma_a"),
        "    Allocate acc : register f32 [BLOCK_M, D]" + w("layout=mma_c", "init=0"),
        "    Allocate m : register f32 [BLOCK_M]" + w("init=-inf"),
        "    Allocate m_new : register f32 [BLOCK_M]",
        "    Allocate alpha : register f32 [BLOCK_M]",
        "    Allocate l : register f32 [BLOCK_M]" + w("init=0"),
        "    Wait sQ",
        "    Loop n in n_start .. n_end" + w("order=reverse") + " {",
        "      Wait sK",
        "      Compute S = gemm(sQ, sK.T)" + w("mma=gmma"),
        "      Release sK",
        "      Compute S = softcap(S * softmax_scale, SOFTCAP) * LOG2E",
        "      Compute S = mask(S, kv_len=Lk, causal=CAUSAL, offset=Lk - Lq, window=WINDOW)",
        "      Compute m_new = max(m, row_max(S))",
        "      Compute alpha = exp2(m - finite(m_new))",
        "      Compute S = exp2(S - finite(m_new))",
        "      Compute l = l * alpha + row_sum(S)",
        "      Compute acc = acc * alpha",
        "      Compute m = m_new",
        "      Reshape P <- S",
        "      Wait sV",
        "      Compute acc += gemm(P, sV)" + w("mma=gmma"),
        "      Release sV",
        "    }",
        "    Compute acc = acc / nonzero(l)",
        "    Copy O[b, q_head, q0 : q0 + BLOCK_M] <- acc"
        + w("via=tma" if stores_o_by_tma(sketch.op, spec.head_dim) else "via=stg"),
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"
