"""Stage 2 for Hopper: the consumer role under `carry=pv`, one KV loop across the CTA's tiles.

A step of the loop issues the S GEMM of the next KV tile with O += P V of the current one, as the
overlapped loop does. At a tile switch that next KV tile is the next query tile's first: its S GEMM
goes out with the finished tile's last O += P V, its softmax runs beside that GEMM, and the finished
tile's O is normalised and stored after (its row sums kept aside, `Consumer::carry_rows`). The
tensor cores then do not idle through the finished tile's last GEMM and the next one's first S
GEMM and softmax.

The loop has one site for each GEMM. The earlier form of carry=pv kept the tile loop and added a PV
GEMM site for each way a carried tile could end; ptxas then built the GMMA descriptors in vector
registers (48 R2UR a KV tile) and that kernel ran 5-12% slower (docs/perf-notes.md "sixth run").
This one's steady step is the overlapped loop's (perf-notes "sixteenth run"). Two things keep it so:
- A tile with no KV tile (a causal one with Lk < Lq) runs one anyway, KV tile n_lo, which
  its mask hides entirely (`qm::sm90::kv_end`, in the producer too): P = 0 and l = 0 give O = 0, as
  the empty loop does, with no branch of its own in the loop (one spilled it).
- What the loop carries from tile to tile is the tile's KV range, mask and where its O goes, set when
  the tile is taken. (Decoding the finished tile's word again for its store spilled 116 B, the
  warpgroup's descriptor offset and barrier ids, into the loop.)
Lowered for dense prefill (the TMA producer) and paged prefill's gather, with tiles=persistent and
overlap=softmax or pinned. Shipped at dense D 128 under a causal mask only: at D 256 and in the
paged gather it measured 1-2.4% slower (perf-notes "sixteenth run", run 5).
"""

from __future__ import annotations

from qimeng_serve.lower.cexpr import Scope
from qimeng_serve.lower.emit import _tl
from qimeng_serve.lower.sm90_plan import Plan, seqlen_q_of, tile_coordinates, word_decoders
from qimeng_serve.lower.sm90_roles import _ConsumerSteps, _directions, _last_pv, _overlap_comment, buffer_of
from qimeng_serve.tl.printer import print_expr


def carried_loop(plan: Plan, scope: Scope, st: _ConsumerSteps, n: str, mask_args: str) -> list[str]:
    """The consumer's tiles as one loop of KV steps (after the role's prologue, before turn.finish).
    mask_args: the MaskArgs initialiser of the tile whose lets are in scope."""
    r = plan.roles
    sv = buffer_of(plan, "V")
    reverse, _, first, _ = _directions(plan, n)
    lo, hi = scope.cpp(plan.p_loop.start), scope.cpp(plan.p_loop.stop)
    q = plan.q_copy.src
    b, h, q0, q_len = (scope.cpp(q.indices[0]), scope.cpp(q.indices[1]), scope.cpp(q.indices[2].lo),
                       seqlen_q_of(plan, scope))
    step, ends = ("- 1", "< n_lo") if reverse else ("+ 1", ">= n_hi")
    last = "nxt == n_lo" if reverse else "nxt == n_hi - 1"
    p1, p2, p3 = "      ", "        ", "          "

    def take(pad: str) -> list[str]:
        """The word tile_t decoded: the loop's KV range, mask and Q turn for it; its Q waited for."""
        inner = pad + "  "
        return [
            f"{pad}{{  // the tile's coordinates and lets, for its KV range and mask",
            *word_decoders(st.shape, inner),
            *tile_coordinates(plan, scope, inner, "word.unpack(tile_t, tiles)"),
            f"{inner}n_lo = {lo};",
            f"{inner}n_hi = qm::sm90::kv_end(n_lo, {hi});  // a tile with no KV tile runs one, masked entirely",
            f"{inner}mk = qm::sm90::MaskArgs{{{mask_args}}};",
            f"{inner}o_b = {b}, o_h = {h}, o_q0 = {q0}, o_len = {q_len};  // where its O goes",
            f"{pad}}}",
            f"{pad}q_iter = iter++;  // the tiles this CTA loads a Q for: the parity of sQ's barriers",
            f"{pad}qm::sm90::wait_q(sm, q_iter);  // {_tl(plan.q_wait)}",
        ]

    return [
        "    // carry=pv: one KV loop across the CTA's tiles; at a tile switch the next tile's first S GEMM goes out "
        "with the finished tile's last O += P V, and the finished tile's O is stored after the next one's first "
        "softmax (qimeng_serve/lower/sm90_carry.py)",
        *_overlap_comment(plan, st.shape),
        "    int iter = 0;",
        "    int tile_t = qm::sm90::take_tile(sm, iter);  // the current tile's word; < 0: none left",
        "    if (tile_t >= 0) {",
        f"{p1}int n_lo, n_hi, q_iter;  // the current tile's KV range and Q turn",
        f"{p1}int o_b, o_h, o_q0, o_len;  // and its O's sequence, head, first row and the sequence's length",
        f"{p1}qm::sm90::MaskArgs mk;  // {print_expr(r['mask'].value)}",
        *take(p1),
        f"{p1}c.reset();  // m (init=-inf), l (init=0)",
        f"{p1}auto acc = c.alloc_acc();  // init=0",
        f"{p1}int {n} = {first};  // the CTA's first KV tile: S, softmax, P",
        *st.score_tile("S", "n_hi - n_lo == 1", p1, rescale=False),
        f"{p1}for (;;) {{",
        f"{p2}int nxt = {n} {step};  // the KV tile of this step's S: the tile's next one, or the next tile's first",
        f"{p2}const bool switching = nxt {ends};",
        f"{p2}const int done_b = o_b, done_h = o_h, done_q0 = o_q0, done_len = o_len;  // at a switch, the finished tile's",
        f"{p2}if (switching) {{",
        f"{p3}tile_t = qm::sm90::take_tile(sm, iter);",
        f"{p3}if (tile_t < 0) break;",
        *take(p3),
        f"{p3}nxt = {first};",
        f"{p3}c.carry_rows();  // m (init=-inf), l (init=0) of the next tile; the finished tile's l kept for its store",
        f"{p2}}}",
        f"{p2}auto S_next = c.alloc_s();",
        *st.paired_gemms("S_next", "previous KV tile", None, last, p2),
        *st.softmax("S_next", p2, n="nxt"),
        *([f"{p2}c.softmax_done(S_next);  // overlap=pinned: the softmax stays ahead of the wait below, beside "
           "O += P V"] if st.shape.pinned else []),
        f"{p2}c.wait_gemms<0>(acc, P);  // O += P V of the previous KV tile is done",
        *st.release(sv, "v", p2),
        f"{p2}if (switching) {{  // the finished tile's O, while the other warpgroup's GEMMs run",
        f"{p3}// {_tl(plan.normalize)}; {_tl(plan.store)} (rows 0 .. seqlen_q - 1 only)",
        f"{p3}c.normalize_and_store(acc, p, done_b, done_h, done_q0, done_len, c.l_carried);",
        f"{p3}cute::clear(acc);  // init=0, the next tile's",
        f"{p2}}}",
        st.line("P = c.reshape(S_next);", r["reshape"], p2),
        f"{p2}{n} = nxt;",
        f"{p1}}}",
        f"{p1}// the CTA's last tile: its last O += P V and store",
        *_last_pv(plan, st, None, p1),
        f"{p1}c.normalize_and_store(acc, p, o_b, o_h, o_q0, o_len);  // {_tl(plan.normalize)}; {_tl(plan.store)}",
        "    }",
    ]

