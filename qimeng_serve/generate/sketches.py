"""Stage 1 sketches: the structural choices of an FA2-style kernel, and the TL text they make.

A Sketch fixes the structure of a program (which statements, in which form); a ParamPoint
(param_space.py) fills in the tile sizes. The text is composed from small fragments, one function
per part of the kernel, and is always parsed by the real TL parser: a candidate is a TL program
like any hand-written one, held to the same checker, interpreter and lowering.

Choices, in the planner's preference order (the first is what FA2 does):
- order: `reverse` visits KV tiles last to first (the masked diagonal tiles first), or `forward`;
- q_home: Q streamed from `shared` memory by each gemm k-step, or held in `registers` (rQ);
- overlap: `pingpong` (FA2's single-stage K/V overlap), `pipeline` (STAGES K/V pairs in flight),
  or `sequential` (copy, wait, compute);
- masking: `skip` (loop bounds leave out the tiles the causal mask or the window would hide
  entirely) or `mask` (visit every tile, the mask hides what must not be seen);
- packing (decode): `group` (the GROUP query heads of one KV head share a tile: K/V read once) or
  `head` (one query head per CTA: K/V read GROUP times);
- copy_path / mma: the instructions, checked for legality on the target (cp.async needs sm_80+,
  m16n8k16 needs sm_80+); the planner keeps the first legal one.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from qimeng_serve.spec import AttentionSpec

ORDERS = ("reverse", "forward")
Q_HOMES = ("shared", "registers")
OVERLAPS = ("pingpong", "pipeline", "sequential")
MASKINGS = ("skip", "mask")
PACKINGS = ("group", "head")
COPY_PATHS = ("cp.async", "ldg")  # global -> shared; TMA is legal TL on sm_90 but stage 2 has no TMA recipe yet
MMA_SHAPES = ("m16n8k16", "m16n8k8")


@dataclass(frozen=True)
class Sketch:
    op: str
    order: str = "reverse"
    q_home: str = "shared"
    overlap: str = "pingpong"
    masking: str = "skip"
    packing: str = ""  # decode only: group | head
    copy_path: str = "cp.async"
    mma: str = "m16n8k16"

    @property
    def decode(self) -> bool:
        return self.op == "paged_decode"

    @property
    def structure(self) -> tuple[str, ...]:
        """Everything but the instruction choices: sketches that differ only there are one structure."""
        return (self.op, self.order, self.q_home, self.overlap, self.masking, self.packing)

    def summary(self) -> str:
        parts = [self.order, f"Q in {self.q_home}", self.overlap, f"{self.masking} masking"]
        if self.decode:
            parts.append(f"{self.packing} packing")
        return ", ".join(parts) + f"; {self.copy_path}, {self.mma}"


def enumerate_sketches(op: str) -> list[Sketch]:
    """Every sketch of an op, structures in preference order, instruction variants innermost."""
    packings = PACKINGS if op == "paged_decode" else ("",)
    out = []
    for order, q_home, overlap, masking, packing in itertools.product(ORDERS, Q_HOMES, OVERLAPS, MASKINGS, packings):
        for copy_path, mma in itertools.product(COPY_PATHS, MMA_SHAPES):
            out.append(Sketch(op, order, q_home, overlap, masking, packing, copy_path, mma))
    return out


# ---------------------------------------------------------------- text
class _Form:
    """Sketch form drops every `with` option; program form writes them."""

    def __init__(self, program: bool) -> None:
        self.program = program

    def w(self, *options: str) -> str:
        kept = [o for o in options if o]
        return (" with " + ", ".join(kept)) if self.program and kept else ""


def program_text(sketch: Sketch, spec: AttentionSpec, arch: str, *, name: str,
                 params: list[tuple[str, str]] | None = None, header: list[str] | None = None) -> str:
    """The TL text of a sketch: program form when params (name, expression) are given, else sketch form."""
    f = _Form(params is not None)
    lines = [f"# {h}" if h else "#" for h in (header or [])]
    lines += [f"program {name}", f"op {spec.op}", f"targets {arch}", ""]
    if params is not None:
        lines += ["params {", *(f"  {k} = {v}" for k, v in params), "}", ""]
    if sketch.decode:
        lines += _split_kernel(sketch, f) + [""] + _combine_kernel(f)
    else:
        lines += _prefill_kernel(sketch, f)
    return "\n".join(lines) + "\n"


def _prefill_kernel(s: Sketch, f: _Form) -> list[str]:
    return [
        "kernel attn grid (m_block : cdiv(max_seq_q, BLOCK_M), q_head : heads_q, b : batch) {",
        "  let kv_head = q_head / GROUP",
        "  let Lq = seqlen_q[b]",
        "  let Lk = seqlen_k[b]",
        "  let q0 = m_block * BLOCK_M",
        *_prefill_bounds(s),
        *_allocations(s, f),
        "  # rows past this sequence's Lq read as zero (predicated)",
        f"  Copy sQ <- Q[b, q_head, q0 : q0 + BLOCK_M]{f.w(f'via={s.copy_path}', 'transfer=16')}",
        *_q_to_registers(s, f),
        *_kv_loop(s, f),
        "  Compute acc = acc / nonzero(l)",
        f"  Copy O[b, q_head, q0 : q0 + BLOCK_M] <- acc{f.w('via=stg')}",
        "}",
    ]


def _prefill_bounds(s: Sketch) -> list[str]:
    if s.masking == "skip":
        return [
            "  # causal: the last KV tile this query tile can see holds key q0 + BLOCK_M - 1 + Lk - Lq",
            "  let n_end = select(CAUSAL, min(cdiv(Lk, BLOCK_N), cdiv(q0 + BLOCK_M + Lk - Lq, BLOCK_N)), cdiv(Lk, BLOCK_N))",
            "  # sliding window: tiles wholly left of the first row's window are skipped",
            "  let n_start = select(WINDOW, max(0, q0 + Lk - Lq - WINDOW + 1) / BLOCK_N, 0)",
        ]
    return [
        "  # every KV tile is visited; the mask hides the keys a row must not see",
        "  let n_start = 0",
        "  let n_end = cdiv(Lk, BLOCK_N)",
    ]


def _split_kernel(s: Sketch, f: _Form) -> list[str]:
    if s.packing == "group":
        grid, head_lets = "kv_head : heads_kv", ["  let h0 = kv_head * GROUP"]
        q_view, part_rows = "Q[b, h0 : h0 + GROUP, 0 : QLEN]", "h0 : h0 + GROUP, 0 : QLEN"
        q_note = "  # GROUP heads x QLEN tokens, head-major, in the rows of one tile: K/V are read once for all"
    else:
        grid, head_lets = "q_head : heads_q", ["  let kv_head = q_head / GROUP", "  let q0 = 0"]
        q_view, part_rows = "Q[b, q_head, q0 : q0 + BLOCK_M]", "q_head, q0 : q0 + BLOCK_M"
        q_note = "  # one query head per CTA: its QLEN tokens, rows past Lq read as zero"
    return [
        f"kernel split grid (split : cdiv(max_seq_k, SPLIT_KV), {grid}, b : batch) {{",
        "  let Lq = seqlen_q[b]",
        "  let Lk = seqlen_k[b]",
        *head_lets,
        "  # this split's keys are [kv_lo, kv_hi); empty for a sequence shorter than the longest",
        "  let kv_lo = split * SPLIT_KV",
        "  let kv_hi = min(Lk, kv_lo + SPLIT_KV)",
        *_decode_bounds(s),
        "  let n_end = cdiv(kv_hi, BLOCK_N)",
        *_allocations(s, f),
        "  Allocate lse : register f32 [BLOCK_M]",
        q_note,
        f"  Copy sQ <- {q_view}{f.w(f'via={s.copy_path}', 'transfer=16')}",
        *_q_to_registers(s, f),
        *_kv_loop(s, f),
        "  # a row that saw no key in this split: acc = 0 and LSE = -inf, so combine gives it weight 0",
        "  Compute acc = acc / nonzero(l)",
        "  Compute lse = m + log2(l)",
        f"  Copy O_part[split, b, {part_rows}] <- acc{f.w('via=stg')}",
        f"  Copy LSE[split, b, {part_rows}] <- lse{f.w('via=stg')}",
        "}",
    ]


def _decode_bounds(s: Sketch) -> list[str]:
    if s.masking == "skip":
        return ["  # sliding window: start at the tile of the first key the first query token sees",
                "  let n_start = max(kv_lo, select(WINDOW, Lk - Lq - WINDOW + 1, 0)) / BLOCK_N"]
    return ["  # every tile of the split is visited; the mask hides keys left of the window",
            "  let n_start = kv_lo / BLOCK_N"]


def _allocations(s: Sketch, f: _Form) -> list[str]:
    stages = "stages=STAGES" if s.overlap == "pipeline" else ""
    lines = [
        f"  Allocate sQ : shared DTYPE [BLOCK_M, D]{f.w('layout=swizzle')}",
        f"  Allocate sK : shared DTYPE [BLOCK_N, D]{f.w('layout=swizzle', stages)}",
        f"  Allocate sV : shared DTYPE [BLOCK_N, D]{f.w('layout=swizzle', stages)}",
    ]
    if s.q_home == "registers":
        lines.append(f"  Allocate rQ : register DTYPE [BLOCK_M, D]{f.w('layout=mma_a')}")
    return lines + [
        f"  Allocate S : register f32 [BLOCK_M, BLOCK_N]{f.w('layout=mma_c')}",
        f"  Allocate P : register DTYPE [BLOCK_M, BLOCK_N]{f.w('layout=mma_a')}",
        f"  Allocate acc : register f32 [BLOCK_M, D]{f.w('layout=mma_c', 'init=0')}",
        f"  Allocate m : register f32 [BLOCK_M]{f.w('init=-inf')}",
        "  Allocate m_new : register f32 [BLOCK_M]",
        "  Allocate alpha : register f32 [BLOCK_M]",
        f"  Allocate l : register f32 [BLOCK_M]{f.w('init=0')}",
    ]


def _q_to_registers(s: Sketch, f: _Form) -> list[str]:
    if s.q_home != "registers":
        return []
    return ["  # Q is loaded into MMA fragments once and stays in registers for every KV tile",
            f"  Copy rQ <- sQ{f.w('via=ldmatrix')}"]


def _kv_loop(s: Sketch, f: _Form) -> list[str]:
    order = "order=reverse" if s.order == "reverse" else ""
    schedule = "schedule=sequential" if s.overlap == "sequential" else "schedule=pingpong"
    pipeline = "pipeline=STAGES" if s.overlap == "pipeline" else ""
    q = "rQ" if s.q_home == "registers" else "sQ"
    mma = f"mma={s.mma}"
    copy = f.w(f"via={s.copy_path}", "transfer=16")
    return [
        f"  Loop n in n_start .. n_end{f.w(order, schedule, pipeline)} {{",
        f"    Copy sK <- K[b, kv_head, n * BLOCK_N : n * BLOCK_N + BLOCK_N]{copy}",
        f"    Copy sV <- V[b, kv_head, n * BLOCK_N : n * BLOCK_N + BLOCK_N]{copy}",
        f"    Compute S = gemm({q}, sK.T){f.w(mma)}",
        "    Compute S = softcap(S * softmax_scale, SOFTCAP) * LOG2E",
        "    # the queries are the last Lq of the Lk tokens: row i's diagonal is key i + Lk - Lq",
        "    Compute S = mask(S, kv_len=Lk, causal=CAUSAL, offset=Lk - Lq, window=WINDOW)",
        "    # online softmax: new running max, rescale what was accumulated under the old one",
        "    Compute m_new = max(m, row_max(S))",
        "    Compute alpha = exp2(m - finite(m_new))",
        "    Compute S = exp2(S - finite(m_new))",
        "    Compute l = l * alpha + row_sum(S)",
        "    Compute acc = acc * alpha",
        "    Compute m = m_new",
        "    # the scores leave the accumulator layout to become the A operand of the second gemm",
        "    Reshape P <- S",
        f"    Compute acc += gemm(P, sV){f.w(mma)}",
        "  }",
    ]


def _combine_kernel(f: _Form) -> list[str]:
    """Merge the splits of each query head in the log2 domain (no choices: one building block)."""
    return [
        "kernel combine grid (q_head : heads_q, b : batch) {",
        "  let Lk = seqlen_k[b]",
        "  Allocate lse : register f32 [QLEN]",
        "  Allocate part : register f32 [QLEN, D]",
        f"  Allocate m : register f32 [QLEN]{f.w('init=-inf')}",
        "  Allocate m_new : register f32 [QLEN]",
        "  Allocate alpha : register f32 [QLEN]",
        "  Allocate w : register f32 [QLEN]",
        f"  Allocate l : register f32 [QLEN]{f.w('init=0')}",
        f"  Allocate acc : register f32 [QLEN, D]{f.w('init=0')}",
        "  Loop s in 0 .. cdiv(Lk, SPLIT_KV) {",
        f"    Copy lse <- LSE[s, b, q_head, 0 : QLEN]{f.w('via=ldg')}",
        f"    Copy part <- O_part[s, b, q_head, 0 : QLEN]{f.w('via=ldg')}",
        "    # split s weighs 2^(lse - m) = l_s * 2^(m_s - m)",
        "    Compute m_new = max(m, lse)",
        "    Compute alpha = exp2(m - finite(m_new))",
        "    Compute w = exp2(lse - finite(m_new))",
        "    Compute l = l * alpha + w",
        "    Compute acc = acc * alpha + part * w",
        "    Compute m = m_new",
        "  }",
        "  Compute acc = acc / nonzero(l)",
        f"  Copy O[b, q_head, 0 : QLEN] <- acc{f.w('via=stg')}",
        "}",
    ]
