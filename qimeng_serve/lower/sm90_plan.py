"""Stage 2 for Hopper, first half: recognise a warp-specialised TL program (`Role producer` /
`Role consumer`) as the one shape the sm_90a building blocks implement, and the helpers both roles'
emitters share (the tile loop's head, K/V views, the schedule switches).
"""

from __future__ import annotations

from dataclasses import dataclass

from qimeng_serve.lower.cexpr import LoweringError, Scope, scalar_name
from qimeng_serve.lower.plan import ROLE_ORDER, _loop_role
from qimeng_serve.tl import ast
from qimeng_serve.tl.printer import print_expr
from qimeng_serve.tl.rules.hopper import carry_value, idle_value, overlap_value, rescale_value

NEEDED_ROLES = ("gemm_qk", "scale", "mask", "m_new", "alpha", "exp", "l_update", "rescale", "m_update", "reshape",
           "gemm_pv")


@dataclass
class Plan:
    kernel: ast.Kernel
    lets: list[ast.Let]
    shared: dict[str, ast.Allocate]
    producer: ast.Role
    consumer: ast.Role
    q_copy: ast.Copy
    p_loop: ast.Loop
    kv_copies: dict[str, ast.Copy]  # "K" / "V" -> the producer's copy
    c_loop: ast.Loop
    roles: dict[str, ast.Stmt]  # consumer loop statement roles (plan.ROLE_ORDER names)
    waits: dict[str, ast.Wait]
    releases: dict[str, ast.Release]
    q_wait: ast.Wait
    normalize: ast.Compute
    store: ast.Copy


def refuse(node, message: str, fix: str) -> LoweringError:
    return LoweringError(message, getattr(node, "span", None), fix=fix)


def plan_kernel(kernel: ast.Kernel) -> Plan:
    body = [s for s in kernel.body if not isinstance(s, ast.Comment)]
    lets = [s for s in body if isinstance(s, ast.Let)]
    shared = {s.name: s for s in body if isinstance(s, ast.Allocate)}
    roles = {s.role: s for s in body if isinstance(s, ast.Role)}
    if set(roles) != {"producer", "consumer"}:
        raise refuse(kernel, "the Hopper lowering needs a `Role producer` and a `Role consumer`",
                      "write the kernel as kernels_src/tl/dense_prefill_sm90.tl does")
    producer, consumer = roles["producer"], roles["consumer"]
    q_copy, p_loop, kv = _plan_producer(producer)
    c_plan = _plan_consumer(consumer, p_loop)
    return Plan(kernel, lets, shared, producer, consumer, q_copy, p_loop, kv, **c_plan)


def _plan_producer(role: ast.Role):
    body = [s for s in role.body if not isinstance(s, ast.Comment)]
    copies = [s for s in body if isinstance(s, ast.Copy)]
    loops = [s for s in body if isinstance(s, ast.Loop)]
    if len(copies) != 1 or not isinstance(copies[0].src, ast.Indexed) or copies[0].src.base != "Q" or len(loops) != 1:
        raise refuse(role, "the producer copies the Q tile once, then loops over the K/V tiles",
                      "Copy sQ <- Q[b, q_head, q0 : q0 + BLOCK_M] with via=tma, then one Loop with the K and V copies")
    kv: dict[str, ast.Copy] = {}
    for s in loops[0].body:
        if isinstance(s, ast.Comment):
            continue
        if not (isinstance(s, ast.Copy) and isinstance(s.src, ast.Indexed) and s.src.base in ("K", "V")):
            raise refuse(s, "the producer's loop holds only the K and V copies", "move other statements out")
        kv[s.src.base] = s
    if ast.option(copies[0].options, "via") != "tma":
        raise refuse(copies[0], "the producer copies Q with TMA", "write `with via=tma`")
    vias = {ast.option(s.options, "via") for s in kv.values()}
    if len(vias) != 1 or not vias <= {"tma", "cp.async"}:
        raise refuse(loops[0], "the producer copies K and V the same way: TMA boxes, or (paged) a cp.async "
                      "gather", "write both copies `with via=tma` (or both `with via=cp.async`)")
    if set(kv) != {"K", "V"}:
        raise refuse(loops[0], "the producer's loop copies one K and one V tile", "add both copies")
    return copies[0], loops[0], kv


def _plan_consumer(role: ast.Role, p_loop: ast.Loop) -> dict:
    body = [s for s in role.body if not isinstance(s, ast.Comment)]
    loops = [s for s in body if isinstance(s, ast.Loop)]
    if len(loops) != 1:
        raise refuse(role, "the consumer has one loop over the K/V tiles", "write one Loop in the consumer role")
    c_loop = loops[0]
    if (print_expr(c_loop.start), print_expr(c_loop.stop), ast.option(c_loop.options, "order")) != \
            (print_expr(p_loop.start), print_expr(p_loop.stop), ast.option(p_loop.options, "order")):
        raise refuse(c_loop, "the consumer's loop and the producer's loop differ", "loop over the same tiles")
    q_waits = [s for s in body if isinstance(s, ast.Wait)]
    after = body[body.index(c_loop) + 1:]
    if len(q_waits) != 1 or len(after) != 2 or not isinstance(after[0], ast.Compute) or \
            not isinstance(after[1], ast.Copy):
        raise refuse(role, "the consumer waits for sQ before its loop, and after it normalises and stores O",
                      "Wait sQ; Loop ...; Compute acc = acc / nonzero(l); Copy O[...] <- acc with via=stg")
    normalize, store = after
    if not print_expr(normalize.value).startswith(f"{normalize.dst} / nonzero("):
        raise refuse(normalize, "after the loop the lowering knows `acc = acc / nonzero(l)`", "normalise by l")
    if not (isinstance(store.dst, ast.Indexed) and store.dst.base == "O"):
        raise refuse(store, "the consumer ends by writing O", "Copy O[b, q_head, q0 : q0 + BLOCK_M] <- acc")
    buffers = {s.name: s for s in body if isinstance(s, ast.Allocate)}
    roles: dict[str, ast.Stmt] = {}
    waits: dict[str, ast.Wait] = {}
    releases: dict[str, ast.Release] = {}
    for s in c_loop.body:
        if isinstance(s, ast.Comment):
            continue
        if isinstance(s, (ast.Wait, ast.Release)):
            for b in s.buffers:
                (waits if isinstance(s, ast.Wait) else releases)[b] = s
            continue
        role_name = _loop_role(s, buffers)
        if role_name is None or role_name in roles:
            raise refuse(s, "this statement has no role in the consumer loop the lowering knows",
                          f"the loop holds Wait/Release and, in order: {', '.join(ROLE_ORDER[2:])}")
        roles[role_name] = s
    missing = [r for r in NEEDED_ROLES if r not in roles]
    if missing:
        raise refuse(c_loop, f"the consumer loop lacks {', '.join(missing)}", "write it as dense_prefill_sm90.tl")
    return dict(c_loop=c_loop, roles=roles, waits=waits, releases=releases, q_wait=q_waits[0], normalize=normalize,
                store=store)


@dataclass
class Shape:
    """What every part of the kernel text needs to know about the program's schedule."""

    bm: int
    bn: int
    wgs: int
    persistent: bool
    paged: bool
    pingpong: bool
    overlap: bool
    gather: bool = False  # paged K/V copied by the producer warpgroup's cp.async (not TMA boxes)
    tiles_args: str = ""  # tiles=persistent: the TileScheduler's constructor arguments
    grid_args: str = ""  # tiles=persistent: the grid's extents (TileWord's constructor arguments)
    pinned: bool = False  # overlap=pinned: the softmax stays ahead of the previous PV GEMM's wait
    paired: bool = False  # overlap=gemms: the GEMMs issued together, the softmax after both are done
    carry: bool = False  # carry=pv: one KV loop across the tiles; a tile's last PV GEMM beside the next's first S
    store_o_tma: bool = False  # O's Copy via=tma: through a shared tile and bulk tensor stores
    split: bool = False  # split=tail: the last partial wave's tiles run in parts along the keys (split.cuh)
    split_args: str = ""  # split=tail: the producer's TileScheduler's further arguments (the split's)
    idle: bool = False  # idle=skip: a consumer warpgroup with no row of its tile's sequence skips the tile
    # split=stream: every CTA runs an equal share of the last waves' KV steps (scheduler.cuh StreamShare);
    # the condition under which a launch shares them out (StreamClaims' `on`), empty when off
    stream_on: str = ""
    lazy_rescale: bool = False  # rescale=lazy: O rescaled only when a warp's running max grows past the slack

    @property
    def stream(self) -> bool:
        return bool(self.stream_on)

    @property
    def retires_counter(self) -> bool:
        """tiles=persistent claiming from a counter of its own: the kernel leaves the counter zero
        (TileCounter::retire), so the host zeroes it once per stream. split=tail and split=stream keep
        their workspace, whose arrival counters the host zeroes per launch."""
        return self.persistent and not self.split


def overlap_on(role: ast.Role, params: dict[str, int]) -> bool:
    """overlap=softmax, pinned or gemms, or overlap=PARAM with the param 1, 2 or 3 (so `params when
    D = ...` can turn it off): the loop that issues a tile's S GEMM with the previous tile's O += P V."""
    return overlap_value(ast.option(role.options, "overlap"), params) in ("softmax", "pinned", "gemms")


def gemms_paired(role: ast.Role, params: dict[str, int]) -> bool:
    """overlap=gemms (or a param 3): the overlapped loop's two GEMMs issued together, but the softmax
    waits for both: P is dead by then, so the softmax holds 20 registers fewer at D = 256 (128 x 80
    tile) than overlap=softmax, which spills there."""
    return overlap_value(ast.option(role.options, "overlap"), params) == "gemms"


def softmax_pinned(role: ast.Role, params: dict[str, int]) -> bool:
    """overlap=pinned (or a param 2): the softmax is kept ahead of the wait for the previous tile's
    O += P V (Consumer::softmax_done), so it overlaps this warpgroup's own PV GEMM; its registers live
    through the GEMM, which fits at D = 128 only (D 64 spilled and serialised its GMMAs, D 256 spilled)."""
    return overlap_value(ast.option(role.options, "overlap"), params) == "pinned"


def idle_skipped(role: ast.Role, params: dict[str, int]) -> bool:
    """idle=skip (or a param 1): a consumer warpgroup whose 64 rows all lie outside its tile's sequence
    issues no GEMM (pipeline.cuh idle_kv_tiles) and the producer arrives for it on each K/V slot."""
    return idle_value(ast.option(role.options, "idle"), params) == "skip"


def rescale_lazy(role: ast.Role, params: dict[str, int]) -> bool:
    """rescale=lazy (or a param 1): a warp moves its rows' running max only when one of them grows past
    the slack (traits.cuh kRescaleSlack), and skips O's rescale otherwise (consumer.cuh online_softmax)."""
    return rescale_value(ast.option(role.options, "rescale"), params) == "lazy"


def carry_on(role: ast.Role, params: dict[str, int]) -> bool:
    """carry=pv (or a param 1): the consumer issues a tile's last O += P V with the next tile's first
    S GEMM and stores the tile's O after that tile's first softmax (tiles=persistent, overlapped loop)."""
    return carry_value(ast.option(role.options, "carry"), params) == "pv"


def tile_head(plan: Plan, scope: Scope, pad: str, shape: Shape, role: str) -> list[str]:
    """The tile loop's head and the tile's coordinates, lets and KV range. One tile per CTA: a loop of
    one. tiles=persistent: the producer (one thread) claims tiles from the counter and hands each one
    it will run to the consumers as one word, its coordinates packed (hand_tile, TileWord; in the
    order it loads their Q), ending with -1; the consumers take and unpack them (take_tile)."""
    if shape.persistent and role == "consumer":
        return [f"{pad}for (int iter = 0;;) {{",
                f"{pad}  const int tile_t = qm::sm90::take_tile(sm, iter);  // the producer's next tile (its word); "
                "< 0: none left",
                f"{pad}  if (tile_t < 0) break;",
                *handed_tile(plan, scope, pad + "  ", shape)]
    decode = "tiles.at(tile_t)"
    if not shape.persistent:
        head = [f"{pad}for (int tile_t = 0, iter = 0; tile_t < tiles.count; ++tile_t) {{"]
    elif shape.stream:
        # split=stream: this CTA's run of the walk in order (no counter), when the launch shares it out
        head = [f"{pad}const qm::sm90::StreamClaims claims(tile_counter, qm::sm90::TileScheduler({shape.tiles_args})"
                f".tiles, qm::cdiv(p.max_seqlen_k, {shape.bn}), {shape.stream_on});",
                f"{pad}int iter = 0;  // the tiles handed to the consumers",
                f"{pad}for (int tile_t = claims.first(); tile_t < claims.end; tile_t = claims.next(tile_t)) {{",
                f"{pad}  const qm::sm90::TileScheduler tiles({shape.tiles_args});",
                f"{pad}  const qm::sm90::TileWord word({shape.grid_args});"]
        decode = "claims.at(tiles, tile_t)"
    else:
        # the scheduler is rebuilt per tile from kernel parameters: fewer registers live in the producer
        # split=tail: the producer's scheduler only (split_args); the consumers take a part from the word
        head = [f"{pad}const int tile_count = qm::sm90::TileScheduler({shape.tiles_args}{shape.split_args}).count;",
                f"{pad}const qm::sm90::TileCounter claims{{tile_counter}};",
                f"{pad}int iter = 0;  // the tiles handed to the consumers",
                f"{pad}for (int tile_t = claims.first(); tile_t < tile_count; tile_t = claims.next(tile_t)) {{",
                f"{pad}  const qm::sm90::TileScheduler tiles({shape.tiles_args}{shape.split_args});",
                f"{pad}  const qm::sm90::TileWord word({shape.grid_args});"]
    out = [*head, *tile_coordinates(plan, scope, pad + "  ", decode),
           kv_range(plan, scope, pad + "  ", shape, role), skip_past_sequence(plan, scope, pad + "  "), next_q_iter(pad + "  ")]
    if shape.persistent:
        out.append(f"{pad}  qm::sm90::hand_tile(sm, word.pack(tile_t, tile), q_iter);  // to the consumers, before "
                   "its Q")
    return out


def word_decoders(shape: Shape, pad: str) -> list[str]:
    """What unpacks a handed tile word (TileWord::unpack; a tile number past the packed grid goes
    through the TileScheduler), declared where it is used."""
    return [f"{pad}const qm::sm90::TileScheduler tiles({shape.tiles_args});",
            f"{pad}const qm::sm90::TileWord word({shape.grid_args});"]


def handed_tile(plan: Plan, scope: Scope, pad: str, shape: Shape) -> list[str]:
    """tiles=persistent, in a role that is handed its tiles (`tile_t`, a TileWord): the tile unpacked (a
    tile number, decoded, when the grid is too big for the word), its KV range and its Q's turn. The
    producer skipped tiles past their sequence before handing them on."""
    # the scheduler here, not at kernel scope: held through the KV loop, its uniform registers pushed the
    # GMMA descriptors into vector ones (+32 R2UR per KV tile, 3% slower at L 16k)
    return [*word_decoders(shape, pad),
            *tile_coordinates(plan, scope, pad, "word.unpack(tile_t, tiles)"),
            kv_range(plan, scope, pad, shape), next_q_iter(pad)]


def kv_range(plan: Plan, scope: Scope, pad: str, shape: Shape, role: str = "consumer") -> str:
    lo, hi = scope.cpp(plan.p_loop.start), scope.cpp(plan.p_loop.stop)
    if shape.stream:  # split=stream: the tile's steps in this CTA's run (the producer's claims know it)
        share = f"claims.share.range({lo}, {hi}, tile.part, claims.kv)" if role == "producer" else \
            f"qm::sm90::StreamTail<KT>::range({lo}, {hi}, tile.part, p)"
        return (f"{pad}const qm::sm90::KvRange kv = {share};\n"
                f"{pad}const int n_lo = kv.lo, n_hi = kv.hi;")
    if shape.split:  # split=tail: a part's share of the tile's KV tiles
        return (f"{pad}const qm::sm90::KvRange kv = qm::sm90::part_range({lo}, {hi}, tile.part, "
                f"qm::sm90::clamp_parts(p.num_splits));\n"
                f"{pad}const int n_lo = kv.lo, n_hi = kv.hi;")
    if shape.carry:  # carry=pv: a tile with no KV tile runs one, masked entirely (sm90_carry.py)
        hi = f"qm::sm90::kv_end({lo}, {hi})"
    return f"{pad}const int n_lo = {lo}, n_hi = {hi};"


def next_q_iter(pad: str) -> str:
    return f"{pad}const int q_iter = iter++;  // the tiles this CTA loads a Q for: the parity of sQ's barriers"


def skip_past_sequence(plan: Plan, scope: Scope, pad: str) -> str:
    """Inside a tile loop: go on to the next tile when this query block starts past its sequence."""
    q0 = plan.q_copy.src.indices[2].lo
    return (f"{pad}if ({scope.cpp(q0)} >= {seqlen_q_of(plan, scope)}) continue;  // a query block past this "
            "sequence (varlen batches)")


def tile_coordinates(plan: Plan, scope: Scope, pad: str, decode: str) -> list[str]:
    """The grid variables and lets of the tile `decode` gives (a qm::sm90::Tile expression)."""
    out = [f"{pad}const qm::sm90::Tile tile = {decode};"]
    for g, field_ in zip(plan.kernel.grid, ("m_block", "head", "batch")):
        out.append(f"{pad}const int {scalar_name(g.name)} = tile.{field_};")
    for let in plan.lets:
        out += [f"{pad}// let {let.name} = {print_expr(let.value)}",
                f"{pad}const int {scalar_name(let.name)} = {scope.cpp(let.value)};"]
    return out


def tile_tail(shape: Shape, role: str, pad: str) -> list[str]:
    """After the tile loop: the producer of a persistent kernel tells the consumers no tile is left
    (and, claiming from its own counter, leaves the counter zero for the next launch)."""
    if shape.persistent and role == "producer":
        return [f"{pad}qm::sm90::hand_tile(sm, -1, iter);  // no tile left",
                *([f"{pad}{RETIRE_COUNTER}"] if shape.retires_counter else [])]
    return []


RETIRE_COUNTER = "claims.retire();  // the last CTA here zeroes the counter for the next launch"


def loop_head(loop: ast.Loop, var: str) -> str:
    if ast.option(loop.options, "order") == "reverse":
        return f"for (int {var} = n_hi - 1; {var} >= n_lo; --{var})"
    return f"for (int {var} = n_lo; {var} < n_hi; ++{var})"


def kv_row_of(copy: ast.Copy, loop: ast.Loop, scope: Scope, bn: int) -> tuple[str, str, str]:
    """(row0, head, batch) of a K/V view `X[b, kv_head, n * BLOCK_N : n * BLOCK_N + BLOCK_N]`."""
    view = copy.src
    want = f"{loop.var} * BLOCK_N : {loop.var} * BLOCK_N + BLOCK_N"
    rows = view.indices[2] if len(view.indices) == 3 else None
    if not isinstance(rows, ast.Slice) or f"{print_expr(rows.lo)} : {print_expr(rows.hi)}" != want:
        raise refuse(copy, f"{view.base} tiles are read as [{want}]", f"index {view.base}[b, kv_head, {want}]")
    if isinstance(view.indices[1], ast.Slice):
        raise refuse(copy, "a TMA box reads one head", "index one KV head")
    return scope.cpp(rows.lo), scope.cpp(view.indices[1]), scope.cpp(view.indices[0])


def buffer_of(plan: Plan, tensor: str) -> str:
    return plan.kv_copies[tensor].dst.id


def kv_len_of(plan: Plan, scope: Scope) -> str:
    kw = {k: v for k, v in plan.roles["mask"].value.kwargs}
    if "kv_len" not in kw:
        raise refuse(plan.roles["mask"], "mask needs kv_len=", "mask(S, kv_len=Lk, ...)")
    return scope.cpp(kw["kv_len"])


def seqlen_q_of(plan: Plan, scope: Scope) -> str:
    b = scope.cpp(plan.q_copy.src.indices[0])
    return f"qm::seqlen_q_of(p, {b})"


def role_text(role: ast.Role) -> str:
    opts = ", ".join(f"{o.key}={o.value}" for o in role.options)
    return f"L{role.span.line}: Role {role.role}" + (f" with {opts}" if opts else "")
