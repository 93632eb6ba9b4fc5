"""Stage 2 for Hopper, second half: the producer role (TMA copies, or the cp.async gather of paged
K/V) and the consumer role (GMMAs, softmax, the plain and overlapped loops and ping-pong turns) as calls
into the sm_90a building blocks, each with its TL line. carry=pv's loop across the tiles is
sm90_carry.py, on this module's steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from qimeng_serve.lower.cexpr import Scope, scalar_name
from qimeng_serve.lower.emit import _tl
from qimeng_serve.lower.plan import SCALE_FORMS
from qimeng_serve.lower.sm90_plan import (
    RETIRE_COUNTER,
    Plan,
    Shape,
    buffer_of,
    kv_len_of,
    kv_row_of,
    loop_head,
    refuse,
    handed_tile,
    role_text,
    seqlen_q_of,
    skip_past_sequence,
    tile_coordinates,
    tile_head,
    tile_tail,
    word_decoders,
)
from qimeng_serve.spec import AttentionSpec
from qimeng_serve.tl import ast
from qimeng_serve.tl.printer import print_expr


def idles(shape: Shape) -> bool:
    """idle=skip: padding warpgroups skip their tile (pipeline.cuh `idle_kv_tiles`): a consumer warpgroup
    whose 64 rows all lie outside the sequence issues no GEMM, and the producer arrives for it on each
    K/V slot. Lowered for the dense TMA producer and the paged gather, without carry=pv (both loop shapes
    take one turn a KV tile, as idle_kv_tiles passes them)."""
    return shape.idle and not shape.carry and (not shape.paged or shape.gather)


def _idle_threads(plan: Plan, scope: Scope, pad: str, who: str) -> list[str]:
    """idle=skip, the producer at a tile's start: how many consumer threads have no row of it."""
    q0 = scope.cpp(plan.q_copy.src.indices[2].lo)
    return [f"{pad}const int idle = qm::sm90::idle_consumer_threads<KT>({q0}, {seqlen_q_of(plan, scope)});  // "
            f"consumer threads with no row of this tile: {who}"]


def _arrive_idle(ring: str, pad: str, leader: str = "") -> list[str]:
    """idle=skip, the producer after filling a slot: the idle warpgroups' arrivals on its empty barrier."""
    return [f"{pad}{leader}qm::sm90::arrive_idle(sm.{ring}_empty, ps_{ring}.stage, idle);"]


def emit_producer(plan: Plan, scope: Scope, shape: Shape) -> list[str]:
    q = plan.q_copy.src
    rows = q.indices[2] if len(q.indices) == 3 else None
    if not isinstance(rows, ast.Slice) or isinstance(q.indices[1], ast.Slice):
        raise refuse(plan.q_copy, "the Q tile is Q[b, q_head, q0 : q0 + BLOCK_M]", "copy one head's rows")
    if plan.store.dst.indices != q.indices:
        raise refuse(plan.store, "O must be written at the rows Q was read from",
                      f"Copy O[{', '.join(print_expr(i) if not isinstance(i, ast.Slice) else print_expr(i.lo) + ' : ' + print_expr(i.hi) for i in q.indices)}] <- acc")
    n = scalar_name(plan.p_loop.var)
    k_row, k_head, k_b = kv_row_of(plan.kv_copies["K"], plan.p_loop, scope, shape.bn)
    v_row, v_head, v_b = kv_row_of(plan.kv_copies["V"], plan.p_loop, scope, shape.bn)
    b = scope.cpp(q.indices[0])
    if shape.gather:
        return _emit_gathering_producer(plan, scope, shape, n, k_row, k_head, k_b, v_row, rows, q, b)
    if shape.paged:
        # key j of sequence b lives in row j % page of page block_table[b, j / page]: one box per page
        kv_len = kv_len_of(plan, scope)
        if k_row != v_row:
            raise refuse(plan.kv_copies["V"], "paged K and V tiles are read at the same keys",
                          "copy the same rows of K and V in one loop iteration")
        pages = [f"        const qm::sm90::PagedRows pages(p, {k_b}, {kv_len}, KT::kBlockN);  // K and V share the "
                 "block table"]
        # lane i holds the block of box i; the next tile's are read before this tile's copies wait
        reverse = ast.option(plan.p_loop.options, "order") == "reverse"
        step, first, more = ((f"- {shape.bn}", f"(n_hi - 1) * {shape.bn}", f"{n} > n_lo") if reverse
                             else (f"+ {shape.bn}", f"n_lo * {shape.bn}", f"{n} + 1 < n_hi"))
        pages.append(f"        int next_block = n_hi > n_lo ? pages.lane_block({first}, KT::kBlockN) : 0;")
        lookup = ["          const int block = next_block;  // lane i: the block of box i (one load per tile)",
                  f"          if ({more}) next_block = pages.lane_block({k_row} {step}, KT::kBlockN);"]
        copy_k = (f"qm::sm90::produce_kv_paged<KT>(&tma.k, sm.k_full, sm.k_empty, sm.k, ps_k, pages, block, "
                  f"{k_row}, {k_head});")
        copy_v = (f"qm::sm90::produce_kv_paged<KT>(&tma.v, sm.v_full, sm.v_empty, sm.v, ps_v, pages, block, "
                  f"{v_row}, {v_head});")
    else:
        pages, lookup = [], []
        copy_k = f"qm::sm90::produce_kv<KT>(&tma.k, sm.k_full, sm.k_empty, sm.k, ps_k, {k_row}, {k_head}, {k_b});"
        copy_v = f"qm::sm90::produce_kv<KT>(&tma.v, sm.v_full, sm.v_empty, sm.v, ps_v, {v_row}, {v_head}, {v_b});"
    idle = idles(shape)  # padding warpgroups: the producer arrives for them on every slot of the tile
    r = plan.producer
    # paged: the whole producer warp (its lanes read a tile's block-table entries together), lane 0
    # issuing; dense: one thread
    who = "qm::sm90::producer_warp()" if shape.paged else "qm::sm90::elected_producer()"
    leader = "if (qm::sm90::producer_leader()) " if shape.paged else ""
    return [
        f"  if (qm::sm90::warpgroup_index() == 0) {{  // {role_text(r)}",
        "    qm::sm90::producer_registers<KT>();  // setmaxnreg.dec",
        f"    if ({who}) {{",
        f"      {leader}qm::sm90::prefetch_tma_descs<KT::kStoreOTma>(tma);",
        "      qm::sm90::PipeState<KT::kStages> ps_k, ps_v;  // the K/V rings run on across tiles",
        *tile_head(plan, scope, "      ", shape, "producer"),
        *([f"        {leader}qm::sm90::prefetch_q<KT>(tma, qm::sm90::q_row(p, {b}, {scope.cpp(rows.lo)}), "
           f"{scope.cpp(q.indices[1])}, qm::sm90::q_batch(p, {b}));  // into L2 while sQ is still in use"]
          if shape.persistent else []),
        f"        // {_tl(plan.q_copy)} (varlen rows: from the sequence's first token; once the last tile's Q is "
        "released)",
        f"        {leader}qm::sm90::produce_q<KT>(tma, sm, qm::sm90::q_row(p, {b}, {scope.cpp(rows.lo)}), "
        f"{scope.cpp(q.indices[1])}, qm::sm90::q_batch(p, {b}), q_iter);",
        *pages,
        *(_idle_threads(plan, scope, "        ", "arrived for") if idle else []),
        # one thread issues a tile's copies and then waits: unrolled, ptxas kept the addresses of four
        # tiles' copies live and spilled 332 B at D = 256's 24 producer registers
        "        #pragma unroll 1",
        f"        {loop_head(plan.p_loop, n)} {{  // Loop {plan.p_loop.var} in {print_expr(plan.p_loop.start)} .. "
        f"{print_expr(plan.p_loop.stop)}",
        *lookup,
        f"          {copy_k}  // {_tl(plan.kv_copies['K'])}",
        *(_arrive_idle("k", "          ") if idle else []),
        "          ps_k.advance();",
        f"          {copy_v}  // {_tl(plan.kv_copies['V'])}",
        *(_arrive_idle("v", "          ") if idle else []),
        "          ps_v.advance();",
        "        }",
        "      }",
        *tile_tail(shape, "producer", "      "),
        "    }",
    ]


def _emit_gathering_producer(plan: Plan, scope: Scope, shape: Shape, n: str, k_row: str, k_head: str, k_b: str,
                             v_row: str, rows, q, b: str) -> list[str]:
    """Paged K/V `with via=cp.async`: the whole producer warpgroup gathers each tile in 8-row page
    segments (PagedGather: one block-table read per segment and tile); each thread's stage arrival is
    made by the hardware once its copies landed (cp.async.mbarrier.arrive.noinc), so the producer runs
    ahead until a stage is busy."""
    if k_row != v_row:
        raise refuse(plan.kv_copies["V"], "paged K and V tiles are read at the same keys",
                      "copy the same rows of K and V in one loop iteration")
    r = plan.producer
    kv_len = kv_len_of(plan, scope)
    idle = idles(shape)
    head = _gathering_tile_head(plan, scope, shape) if shape.persistent else tile_head(plan, scope, "    ", shape,
                                                                                        "producer")
    return [
        f"  if (qm::sm90::warpgroup_index() == 0) {{  // {role_text(r)}",
        "    qm::sm90::producer_registers<KT>();  // setmaxnreg.dec",
        "    if (qm::sm90::producer_leader()) qm::sm90::prefetch_tma_descs<KT::kStoreOTma>(tma);",
        "    qm::sm90::PipeState<KT::kStages> ps_k, ps_v;  // the K/V rings run on across tiles",
        *head,
        f"      // {_tl(plan.q_copy)} (varlen rows: from the sequence's first token)",
        f"      if (qm::sm90::producer_leader()) qm::sm90::produce_q<KT>(tma, sm, qm::sm90::q_row(p, {b}, "
        f"{scope.cpp(rows.lo)}), {scope.cpp(q.indices[1])}, qm::sm90::q_batch(p, {b}), q_iter);",
        f"      qm::sm90::PagedGather<KT> gather(p, {k_b}, {kv_len}, {k_head}, threadIdx.x);  // this thread's row",
        *(_idle_threads(plan, scope, "      ", "the leader arrives for them") if idle else []),
        f"      {loop_head(plan.p_loop, n)} {{  // Loop {plan.p_loop.var} in {print_expr(plan.p_loop.start)} .. "
        f"{print_expr(plan.p_loop.stop)}",
        f"        gather.seek({k_row});",
        f"        qm::sm90::wait_empty(sm.k_empty, ps_k);  // {_tl(plan.kv_copies['K'])}",
        "        gather.copy_k(sm.k[ps_k.stage]);",
        *(_arrive_idle("k", "        ", "if (qm::sm90::producer_leader()) ") if idle else []),
        "        qm::sm90::gathered(sm.k_full, ps_k.stage);  // arrives once this thread's copies landed",
        f"        qm::sm90::wait_empty(sm.v_empty, ps_v);  // {_tl(plan.kv_copies['V'])}",
        "        gather.copy_v(sm.v[ps_v.stage]);",
        *(_arrive_idle("v", "        ", "if (qm::sm90::producer_leader()) ") if idle else []),
        "        qm::sm90::gathered(sm.v_full, ps_v.stage);",
        "        ps_k.advance();",
        "        ps_v.advance();",
        "      }",
        *([CLAIM_AFTER_COPIES] if shape.persistent else []),
        "    }",
        *([f"    if (qm::sm90::producer_leader()) {RETIRE_COUNTER}"] if shape.retires_counter else []),
        "    qm::sm90::gathers_drained();  // no copy outlives its thread",
    ]


# The next tile is claimed once this tile's copies are issued, a ring's depth before the consumers are
# free. Claimed as its predecessor was handed on (a whole tile ahead), a causal tile went to whichever
# CTA had started its own first, not to the first to finish: D 256 causal ran 4-8% slower on the H100
# (session 12; scripts/sm90_schedule_sim.py models both claim points, docs/perf-notes.md "tenth run").
CLAIM_AFTER_COPIES = ("      if (qm::sm90::producer_leader()) claimed = claims.next(claimed);  // the next tile, once this "
                      "one's copies are issued")


def _gathering_tile_head(plan: Plan, scope: Scope, shape: Shape) -> list[str]:
    """tiles=persistent with the gather: the leader claims tiles until one has query rows (or none is
    left) and hands it to the consumers and to its own warpgroup (hand_tile, producer_sync,
    handed_tile); every producer thread then decodes it as the consumers do."""
    pad = "      "
    return [
        f"    const int tile_count = qm::sm90::TileScheduler({shape.tiles_args}).count;",
        "    const qm::sm90::TileCounter claims{tile_counter};",
        "    int claimed = claims.first();  // the leader's next claim",
        "    for (int iter = 0;;) {",
        "      if (qm::sm90::producer_leader()) {",
        "        int handed = -1;  // no tile left",
        "        for (; claimed < tile_count; claimed = claims.next(claimed)) {",
        *word_decoders(shape, "          "),
        *tile_coordinates(plan, scope, "          ", "tiles.at(claimed)"),
        skip_past_sequence(plan, scope, "          "),
        "          handed = word.pack(claimed, tile);",
        "          break;",
        "        }",
        "        qm::sm90::hand_tile(sm, handed, iter);  // to the consumers, and below to this warpgroup",
        "      }",
        "      qm::sm90::producer_sync();",
        "      const int tile_t = qm::sm90::handed_tile(sm, iter);",
        "      if (tile_t < 0) break;",
        *handed_tile(plan, scope, pad, shape),
    ]


def emit_consumer(plan: Plan, scope: Scope, spec: AttentionSpec, shape: Shape) -> list[str]:
    r = plan.roles
    sk, sv = buffer_of(plan, "K"), buffer_of(plan, "V")
    for buf in (sk, sv):
        if buf not in plan.waits or buf not in plan.releases:
            raise refuse(plan.c_loop, f"the consumer loop waits for and releases {buf}", f"add Wait / Release {buf}")
    gemm_qk, gemm_pv = r["gemm_qk"].value, r["gemm_pv"].value
    if print_expr(gemm_qk) != f"gemm({plan.q_copy.dst.id}, {sk}.T)" or \
            not print_expr(gemm_pv).endswith(f", {sv})"):
        raise refuse(r["gemm_qk"], "the GEMMs are S = gemm(sQ, sK.T) and acc += gemm(P, sV)",
                      "read both operands of S from shared memory and V from its shared tile")
    for role in ("gemm_qk", "gemm_pv"):
        if ast.option(r[role].options, "mma") not in ("gmma", "wgmma"):
            raise refuse(r[role], "the sm90 blocks run both GEMMs as warpgroup MMAs", "write `with mma=gmma`")
    scale = r["scale"]
    softcap = SCALE_FORMS.get(print_expr(scale.value).replace(scale.dst, "S", 1), False) and spec.softcap > 0
    mask = r["mask"].value
    kw = {k: v for k, v in mask.kwargs}
    zero = ast.Num(0)
    kv_len = kv_len_of(plan, scope)
    q0 = plan.q_copy.src.indices[2].lo
    n = scalar_name(plan.c_loop.var)
    q_len = seqlen_q_of(plan, scope)
    turns = shape.pingpong
    head = [
        f"  }} else {{  // {role_text(plan.consumer)}",
        "    qm::sm90::consumer_registers<KT>();  // setmaxnreg.inc",
        "    qm::sm90::Consumer<KT> c(threadIdx.x - qm::sm90::kWarpgroupThreads);",
        "    qm::sm90::PipeState<KT::kStages> ps_k, ps_v;",
    ]
    if turns:
        head += [f"    const qm::sm90::PingPong<{shape.wgs}> turn(c.tid);  // schedule=pingpong: the warpgroups take "
                 "turns issuing their GEMMs",
                 "    turn.start();"]
    mask_args = (f"{scope.cpp(q0)}, {kv_len}, {scope.cpp(kw.get('causal', zero))}, "
                 f"{scope.cpp(kw.get('offset', zero))}, {scope.cpp(kw.get('window', zero))}")
    steps = _ConsumerSteps(plan, n, "true" if softcap else "false", shape, kv_len)
    finish = ["    turn.finish();"] if turns else []
    if shape.carry:  # one KV loop across the tiles (sm90_carry imports this module's steps)
        from qimeng_serve.lower.sm90_carry import carried_loop

        return head + carried_loop(plan, scope, steps, n, mask_args) + finish + ["  }"]
    head += [
        *tile_head(plan, scope, "    ", shape, "consumer"),
        "      c.reset();  // m (init=-inf), l (init=0)",
        "      auto acc = c.alloc_acc();  // init=0",
        f"      // {print_expr(mask)}",
        f"      const qm::sm90::MaskArgs mk{{{mask_args}}};",
        f"      qm::sm90::wait_q(sm, q_iter);  // {_tl(plan.q_wait)}",
    ]
    if idles(shape):
        turns_of = "turn" if turns else "qm::sm90::NoTurns{}"
        head += [
            "      // a warpgroup with none of its 64 rows in the sequence issues no GEMM (the producer arrives for "
            "it); a vote: known warp-uniform",
            f"      const bool idle = __any_sync(0xffffffffu, qm::sm90::rows_outside({scope.cpp(q0)} + "
            f"qm::sm90::kWarpgroupRows * (c.tid / qm::sm90::kWarpgroupThreads), {q_len}));",
            f"      if (idle) {{  // its tile ends here: nothing of it lives through the KV loop below",
            f"        qm::sm90::idle_kv_tiles<KT>(ps_k, ps_v, n_hi - n_lo, {turns_of});",
            "        qm::sm90::release_q(sm);",
            "        continue;",
            "      }",
        ]
    loop = _overlapped_loop(plan, steps, n) if shape.overlap else _plain_loop(plan, steps, n)
    tail = [
        "      if (n_hi <= n_lo) qm::sm90::release_q(sm);  // no KV tile: sQ was never read",
        *_store(plan, scope, shape, q0, q_len),
        "    }",
        *(["    c.drain_stores();  // the last tile's bulk stores have read sO"] if shape.store_o_tma else []),
    ]
    return head + loop + tail + finish + ["  }"]


def _store(plan: Plan, scope: Scope, shape: Shape, q0, q_len: str) -> list[str]:
    """The tile's epilogue: normalise O and store it, from registers or through sO and TMA."""
    b, h = scope.cpp(plan.q_copy.src.indices[0]), scope.cpp(plan.q_copy.src.indices[1])
    if shape.store_o_tma:
        return [f"      // {_tl(plan.normalize)}; {_tl(plan.store)}: through sO, a warpgroup's 64 rows per bulk store",
                f"      c.normalize_and_store_tma(acc, sm, tma, p, {b}, {h}, {scope.cpp(q0)}, {q_len});"]
    if shape.stream:
        # split=stream: a part's O, normalised, leaves through the tile's one store into its block of the
        # workspace; the tile's last part to arrive merges the blocks into O (split.cuh StreamTail::merge)
        return [f"      // {_tl(plan.normalize)}; {_tl(plan.store)} (rows 0 .. seqlen_q - 1 only); split=stream: a part's "
                "rows to its block, the tile's last part merging them into O",
                "      {",
                "        const qm::sm90::StreamTail<KT> stream(tile_counter);",
                f"        const auto dest = stream.dest(p, tile, {b}, {h}, {scope.cpp(q0)});",
                f"        c.store_rows(acc, dest.out, dest.stride, {scope.cpp(q0)}, {q_len}, c.l);",
                f"        if (tile.part >= 0) stream.merge(c, p, tile, {b}, {h}, {scope.cpp(q0)}, {q_len});",
                "      }"]
    store = f"c.normalize_and_store(acc, p, {b}, {h}, {scope.cpp(q0)}, {q_len});"
    if shape.split:
        # split=tail: a part's warp stores O only when it is the tile's last part to arrive (split.cuh)
        tail = "StreamTail" if shape.stream else "SplitTail"
        store = f"if (tile.part < 0 || qm::sm90::{tail}<KT>(tile_counter).finish(c, acc, p, tile)) {store}"
    return [f"      // {_tl(plan.normalize)}; {_tl(plan.store)} (rows 0 .. seqlen_q - 1 only)"
            + (f"; split={'stream' if shape.stream else 'tail'}: by the last part of a split tile, the parts "
               "combined" if shape.split else ""),
            f"      {store}"]


@dataclass
class _ConsumerSteps:
    """The consumer loop's statements as building-block calls (shared by every loop shape)."""

    plan: Plan
    n: str
    softcap: str
    shape: Shape
    kv_len: str

    def line(self, call: str, stmt, pad: str) -> str:
        return f"{pad}{call}  // {_tl(stmt)}"

    def softmax(self, s: str, pad: str, n: str | None = None) -> list[str]:
        r = self.plan.roles
        return [
            self.line(f"const float scale = c.scores<{self.softcap}>({s}, p);", r["scale"], pad),
            self.line(f"c.mask({s}, mk, {n or self.n});", r["mask"], pad),
            f"{pad}c.online_softmax({s}, scale);  // {_tl(r['m_new'])}; {_tl(r['alpha'])}; {_tl(r['exp'])}; "
            f"{_tl(r['l_update'])}; {_tl(r['m_update'])}",
        ]

    def wait(self, buf: str, ring: str, pad: str) -> str:
        # gathered stages were written through the generic proxy: the consumer fences them for the GMMAs
        waiter = "wait_gathered" if self.shape.gather else "wait_full"
        return self.line(f"qm::sm90::{waiter}(sm.{ring}_full, ps_{ring}.stage, ps_{ring}.phase);",
                         self.plan.waits[buf], pad)

    def release(self, buf: str, ring: str, pad: str) -> list[str]:
        return [self.line(f"qm::sm90::release(sm.{ring}_empty, ps_{ring}.stage);", self.plan.releases[buf], pad),
                f"{pad}ps_{ring}.advance();"]

    def v_tail(self, tile: str, pad: str) -> list[str]:
        """Paged K/V: zero the V rows of a tile past kv_len before O += P V reads them."""
        if not self.shape.paged or self.shape.gather:  # the gather zero-fills rows past kv_len itself
            return []
        return [f"{pad}c.zero_rows_past(sm, ps_v.stage, {self.kv_len} - ({tile}) * KT::kBlockN);  // whole pages "
                "were copied: rows past kv_len hold other tokens"]

    def turn(self, what: str, pad: str) -> list[str]:
        return [f"{pad}turn.{what}();"] if self.shape.pingpong else []

    def paired_gemms(self, s: str, which: str, v_tile: str | None, last: str, pad: str,
                     wait_all: bool = False) -> list[str]:
        """S = Q K^T of a KV tile issued with O += P V of `which` tile before it (the overlapped loop's
        steps, and a carried tile's last): K and that V waited for, both GEMMs in one turn, S waited
        for while O += P V may run on (wait_all, overlap=gemms: both waited for), sK (and after the
        tile's last S GEMM sQ) handed back."""
        r, sk, sv = self.plan.roles, buffer_of(self.plan, "K"), buffer_of(self.plan, "V")
        wait = (f"{pad}c.wait_gemms<0>({s}, acc, P);  // overlap=gemms: S and O += P V both done" if wait_all
                else f"{pad}c.wait_gemms<1>({s});  // S of this tile is done; O += P V may still run")
        return [
            self.wait(sk, "k", pad),
            self.wait(sv, "v", pad) + f" ({which})",
            *(self.v_tail(v_tile, pad) if v_tile else []),
            *self.turn("wait_turn", pad),
            self.line(f"c.issue_qk({s}, sm, ps_k.stage);", r["gemm_qk"], pad),
            self.line("c.rescale(acc);", r["rescale"], pad) + f" (alpha of the {which}, while S runs)",
            self.line("c.issue_pv(acc, P, sm, ps_v.stage);", r["gemm_pv"], pad) + f" ({which})",
            *self.turn("pass_turn", pad),
            wait,
            f"{pad}if ({last}) qm::sm90::release_q(sm);  // the tile's last S GEMM is done with sQ",
            *self.release(sk, "k", pad),
        ]

    def score_tile(self, s: str, last: str, pad: str, rescale: bool = True) -> list[str]:
        """S = Q K^T of one KV tile (its turn under ping-pong), sQ handed back after the tile's last
        one, the softmax, acc rescaled (unless the caller does it later), P: what every loop shape
        does for its first tile."""
        r, sk = self.plan.roles, buffer_of(self.plan, "K")
        return [
            f"{pad}auto {s} = c.alloc_s();",
            self.wait(sk, "k", pad),
            *self.turn("wait_turn", pad),
            self.line(f"c.issue_qk({s}, sm, ps_k.stage);", r["gemm_qk"], pad),
            *self.turn("pass_turn", pad),
            f"{pad}c.wait_gemms<0>({s});",
            f"{pad}if ({last}) qm::sm90::release_q(sm);  // the tile's last S GEMM is done with sQ",
            *self.release(sk, "k", pad),
            *self.softmax(s, pad),
            *([self.line("c.rescale(acc);", r["rescale"], pad)] if rescale else []),
            self.line(f"auto P = c.reshape({s});", r["reshape"], pad),
        ]


def _plain_loop(plan: Plan, st: _ConsumerSteps, n: str) -> list[str]:
    r = plan.roles
    sv = buffer_of(plan, "V")
    last = f"{n} == n_lo" if ast.option(plan.c_loop.options, "order") == "reverse" else f"{n} == n_hi - 1"
    pad = "        "
    return [
        f"      {loop_head(plan.c_loop, n)} {{  // Loop {plan.c_loop.var}",
        *st.score_tile("S", last, pad),
        st.wait(sv, "v", pad),
        *st.v_tail(n, pad),
        st.line("c.gemm_pv(acc, P, sm, ps_v.stage);", r["gemm_pv"], pad),
        *st.release(sv, "v", pad),
        "      }",
    ]


def _overlapped_loop(plan: Plan, st: _ConsumerSteps, n: str) -> list[str]:
    """overlap=softmax: a software pipeline over the KV tiles. Tile n's S GEMM and the previous tile's
    O += P V are issued together; the softmax of tile n runs while O += P V is still on the tensor
    cores. acc takes the previous tile's alpha just before its O += P V is issued, while the S GEMM
    already runs (as FA3 orders it), so the rescale is off the path from one GEMM to the next.
    Same arithmetic, in the same order per tile. Under schedule=pingpong the warpgroup holds the
    turn while it issues the two GEMMs."""
    _, _, first, _ = _directions(plan, n)
    p1 = "        "
    return [
        *_overlap_comment(plan, st.shape),
        "      if (n_hi > n_lo) {",
        f"{p1}int {n} = {first};  // the first tile: S, softmax, P",
        *st.score_tile("S", "n_hi - n_lo == 1", p1, rescale=False),
        *_overlap_rest(plan, st, n),
        f"{p1}// the last tile's O += P V",
        *_last_pv(plan, st, "n_lo" if ast.option(plan.c_loop.options, "order") == "reverse" else "n_hi - 1", p1),
        "      }",
    ]


def _directions(plan: Plan, n: str) -> tuple[bool, str, str, str]:
    """(reverse, the tile before n in the loop, the first tile, n is the last tile)."""
    reverse = ast.option(plan.c_loop.options, "order") == "reverse"
    prev = f"{n} + 1" if reverse else f"{n} - 1"
    return reverse, prev, "n_hi - 1" if reverse else "n_lo", f"{n} == n_lo" if reverse else f"{n} == n_hi - 1"


def _overlap_comment(plan: Plan, shape: Shape | None = None) -> list[str]:
    what = ("overlap=gemms: a tile's S GEMM and the previous tile's O += P V issued together, the softmax "
            "after both" if shape is not None and shape.paired else
            "overlap=softmax: the softmax of a tile runs while the previous tile's O += P V does")
    return [f"      // Loop {plan.c_loop.var} in {print_expr(plan.c_loop.start)} .. {print_expr(plan.c_loop.stop)}, "
            + what]


def _overlap_rest(plan: Plan, st: _ConsumerSteps, n: str) -> list[str]:
    """The overlapped loop past its first KV tile: S of tile n issued with O += P V of the one before."""
    r = plan.roles
    sv = buffer_of(plan, "V")
    reverse, prev, _, last = _directions(plan, n)
    rest = (f"for (int {n} = n_hi - 2; {n} >= n_lo; --{n})" if reverse
            else f"for (int {n} = n_lo + 1; {n} < n_hi; ++{n})")
    p1, p2 = "        ", "          "
    if st.shape.paired:
        return [
            f"{p1}{rest} {{",
            f"{p2}auto S_next = c.alloc_s();",
            *st.paired_gemms("S_next", "previous tile", prev, last, p2, wait_all=True),
            *st.release(sv, "v", p2),
            *st.softmax("S_next", p2),
            st.line("P = c.reshape(S_next);", r["reshape"], p2),
            f"{p1}}}",
        ]
    return [
        f"{p1}{rest} {{",
        f"{p2}auto S_next = c.alloc_s();",
        *st.paired_gemms("S_next", "previous tile", prev, last, p2),
        *st.softmax("S_next", p2),
        *([f"{p2}c.softmax_done(S_next);  // overlap=pinned: the softmax stays ahead of the wait below, beside "
           "O += P V"] if st.shape.pinned else []),
        f"{p2}c.wait_gemms<0>(acc, P);  // O += P V of the previous tile is done",
        *st.release(sv, "v", p2),
        st.line("P = c.reshape(S_next);", r["reshape"], p2),
        f"{p1}}}",
    ]


def _last_pv(plan: Plan, st: _ConsumerSteps, v_tile: str | None, pad: str) -> list[str]:
    """O += P V of a tile's last KV tile (v_tile: its index, for paged K/V's tail), waited for."""
    r, sv = plan.roles, buffer_of(plan, "V")
    return [
        st.wait(sv, "v", pad),
        *(st.v_tail(v_tile, pad) if v_tile else []),
        st.line("c.rescale(acc);", r["rescale"], pad),
        st.line("c.gemm_pv(acc, P, sm, ps_v.stage);", r["gemm_pv"], pad),
        *st.release(sv, "v", pad),
    ]

