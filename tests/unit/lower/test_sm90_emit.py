"""Stage 2 for Hopper: the warp-specialised golden program lowers to the sm90 building blocks,
deterministically, with launch metadata that matches the blocks; programs or targets the lowering
does not implement are refused with the line and the fix."""

import re

import pytest

from qimeng_serve.errors import TLCheckError
from qimeng_serve.lower.cexpr import LoweringError
from qimeng_serve.lower.emit import Entry
from qimeng_serve.lower.emit_sm90 import (
    KERNEL_ABI,
    RETIRING_ABI,
    SPLIT_ABI,
    lower_sm90,
    smem_bytes,
)
from qimeng_serve.spec import AttentionSpec
from qimeng_serve.targets import get_target
from qimeng_serve.tl.parser import parse_tl
from tests.conftest import GOLDEN_DIR

SHIPPED = (GOLDEN_DIR / "dense_prefill_sm90.tl").read_text()
# the shipped program with every schedule switch off, at every head size: one CTA per tile, 2 stages,
# no ping-pong, overlap, carry or lazy rescale
SM90 = SHIPPED
for _name, _value in (("STAGES", 2), ("PINGPONG", 0), ("OVERLAP", 0), ("PERSISTENT", 0), ("CARRY", 0), ("RESCALE", 0),
                      ("STORE_TMA", 0)):
    SM90 = re.sub(rf"^  {_name} = \d+", f"  {_name} = {_value}", SM90, flags=re.MULTILINE)
SM90_TARGET = get_target("sm_90")


def lowered(text=SM90, dtype="bf16", d=128, **kw):
    return lower_sm90(parse_tl(text), SM90_TARGET, AttentionSpec("dense_prefill", dtype, d, **kw))


# per head size: BLOCK_M, BLOCK_N, consumer warpgroups, the producer's and the consumers' registers
# (the shipped program's params)
@pytest.mark.parametrize("d, block_m, block_n, wgs, p_regs, regs", [(64, 192, 128, 3, 32, 160), (128, 128, 128, 2, 40, 232),
                                                                  (256, 128, 80, 2, 24, 240)])
@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_golden_lowers_for_each_head_size(d, dtype, block_m, block_n, wgs, p_regs, regs):
    src = lowered(dtype=dtype, d=d)
    (entry,) = src.entries
    assert isinstance(entry, Entry) and entry.abi == KERNEL_ABI
    assert entry.name == f"qm_dense_prefill_sm90_attn_{dtype}_hd{d}"
    assert entry.threads == 128 * (wgs + 1) and entry.grid == [f"cdiv(max_seq_q, {block_m})", "heads_q", "batch"]
    assert entry.tensor_maps == {"q": block_m, "k": block_n, "v": block_n}
    assert entry.smem_bytes == smem_bytes(d, block_m, block_n, 2) <= SM90_TARGET.smem_optin_max
    cpp = {"f16": "fp16", "bf16": "bf16"}[dtype]
    assert f"qm::sm90::Traits<qm::sm90::{cpp}, {d}, {block_m}, {block_n}, 2, {wgs}, {p_regs}, {regs}>" in src.text
    assert "c.normalize_and_store(acc, p," in src.text and "normalize_and_store_tma" not in src.text
    assert f"static_assert(qm::sm90::smem_bytes<KT>() == {entry.smem_bytes}" in src.text


@pytest.mark.parametrize("d, block_m", [(64, 192), (128, 128)])
def test_o_store_via_tma(d, block_m):
    """STORE_TMA = 1: O's tile in shared memory (Traits' last argument, counted in smem_bytes), the
    epilogue through it, the last stores drained before the consumers leave, and an O tensor map of
    64-row boxes in the manifest. D = 256 has no room for the tile (the checker says so)."""
    src = lowered(SM90.replace("  STORE_TMA = 0", "  STORE_TMA = 1"), d=d)
    (entry,) = src.entries
    assert entry.tensor_maps["o"] == 64
    assert entry.smem_bytes == smem_bytes(d, block_m, entry.tensor_maps["k"], 2, True) > smem_bytes(
        d, block_m, entry.tensor_maps["k"], 2)
    assert ", 1>;" in src.text.split("using KT = ")[1].split("\n")[0]
    tail = src.text[src.text.index("c.normalize_and_store_tma(acc, sm, tma, p,"):]
    assert "c.drain_stores();" in tail and "c.normalize_and_store(acc" not in src.text
    assert "prefetch_tma_descs<KT::kStoreOTma>(tma)" in src.text
    with pytest.raises(TLCheckError, match="store tile 65536 B"):
        lowered(SM90.replace("  STORE_TMA = 0", "  STORE_TMA = 1"), d=256)


def test_o_store_via_tma_is_refused_with_carry():
    text = SHIPPED.replace("  STORE_TMA = 0", "  STORE_TMA = 1").replace("  STAGES = 3\n", "  STAGES = 2\n")
    with pytest.raises(LoweringError, match="without carry=pv"):
        lowered(text.replace("  CARRY = 0", "  CARRY = 1"))


@pytest.mark.parametrize("d, persistent, pingpong, overlap, traits", [
    (64, True, True, True, "64, 192, 128, 4, 3, 32, 160"),
    (128, True, True, True, "128, 128, 128, 2, 2, 40, 232, 1, 1"),  # O's bulk store (two stages), rescale=lazy
    (256, True, False, True, "256, 128, 80, 2, 2, 24, 240, 0, 1"),
])
def test_shipped_program_picks_its_schedule_per_head_size(d, persistent, pingpong, overlap, traits):
    src = lowered(SHIPPED, d=d)
    text = src.text
    assert f"qm::sm90::Traits<qm::sm90::bf16, {traits}>" in text
    assert ("TileScheduler tiles(" in text) == persistent
    assert src.entries[0].grid[0].startswith("min(num_sms") == persistent
    assert src.entries[0].abi == (RETIRING_ABI if persistent else KERNEL_ABI)
    assert ("int* const tile_counter) {" in text) == persistent
    assert ("turn.wait_turn();" in text) == pingpong
    assert ("c.issue_pv(acc, P" in text) == overlap
    # the softmax is pinned ahead of the previous O += P V's wait at D = 128 only (OVERLAP = 2)
    assert text.count("c.softmax_done(S_next);") == (1 if d == 128 else 0)
    assert src.entries[0].smem_bytes <= SM90_TARGET.smem_optin_max


def test_schedule_switches_are_checked():
    with pytest.raises(TLCheckError, match="ping-pong passes the turn"):
        lowered(SHIPPED.replace("CONSUMERS = 2", "CONSUMERS = 1").replace("WARPS = 8", "WARPS = 4")
                .replace("BLOCK_M = 128", "BLOCK_M = 64"))
    with pytest.raises(TLCheckError, match="unknown loop schedule"):  # a param is for a Role only
        lowered(SHIPPED.replace("Loop n in n_start .. n_end with order=reverse {",
                                "Loop n in n_start .. n_end with order=reverse, schedule=PINGPONG {", 1))


def test_every_statement_is_traced_to_its_tl_line():
    text = lowered().text
    for tl in ("Copy sQ <- Q[b, q_head, q0 : q0 + BLOCK_M] with via=tma", "Wait sQ", "Wait sK", "Release sK",
               "Compute S = gemm(sQ, sK.T) with mma=gmma", "Reshape P <- S", "Compute acc += gemm(P, sV) with mma=gmma",
               "Release sV", "Copy O[b, q_head, q0 : q0 + BLOCK_M] <- acc with via=STORE_TMA"):
        assert tl in text, tl
    assert "__launch_bounds__(384, 1)" in text and "const __grid_constant__ qm::sm90::TmaDescs tma" in text
    assert "for (int t_n = n_hi - 1; t_n >= n_lo; --t_n)" in text  # order=reverse in both roles


def test_lowering_is_deterministic_and_follows_the_spec():
    assert lowered().text == lowered().text
    assert "c.scores<false>" in lowered().text
    assert "c.scores<true>" in lowered(softcap=30.0).text  # the soft-cap is compiled in


def test_params_flow_into_the_traits():
    text = SM90.replace("STAGES = 2", "STAGES = 3").replace("CONSUMER_REGS = 232", "CONSUMER_REGS = 224")
    assert "qm::sm90::Traits<qm::sm90::bf16, 128, 128, 128, 3, 2, 40, 224>" in lowered(text, d=128).text


def test_refused_off_hopper():
    with pytest.raises(LoweringError, match="needs sm_90"):
        lower_sm90(parse_tl(SM90), get_target("sm_80"), AttentionSpec("dense_prefill", "bf16", 128))


def test_fa2_program_is_refused_with_the_fix():
    fa2 = (GOLDEN_DIR / "dense_prefill_sm80.tl").read_text()
    with pytest.raises(LoweringError, match="Role producer") as e:
        lower_sm90(parse_tl(fa2), SM90_TARGET, AttentionSpec("dense_prefill", "bf16", 128))
    assert "dense_prefill_sm90.tl" in e.value.fix


def test_checker_runs_first():
    with pytest.raises(TLCheckError, match="setmaxnreg"):
        lowered(SM90.replace("CONSUMER_REGS = 232", "CONSUMER_REGS = 244"))


def test_warp_mma_in_the_consumer_is_refused():
    text = SM90.replace("Compute acc += gemm(P, sV) with mma=gmma", "Compute acc += gemm(P, sV) with mma=m16n8k16")
    with pytest.raises(LoweringError, match="warpgroup MMAs"):
        lowered(text)


PINGPONG = (GOLDEN_DIR / "dense_prefill_sm90_pingpong.tl").read_text()


def test_pingpong_takes_turns_around_the_score_gemm():
    text = lowered(PINGPONG).text
    assert "qm_dense_prefill_sm90_pingpong_attn_bf16_hd128" in text
    text = text[text.index("qm::sm90::consumer_registers"):]
    order = [text.index(s) for s in ("turn.start();", "for (int tile_t", "turn.wait_turn();", "c.issue_qk(S, sm",
                                     "turn.pass_turn();", "c.wait_gemms<0>(S);", "c.online_softmax(S", "turn.finish();")]
    # the turn spans issuing S = Q K^T only: the softmax overlaps the other warpgroup's GEMM; the
    # first turn is handed out once before the tiles and the one left over is taken after them
    assert order == sorted(order)
    assert text.count("turn.wait_turn();") == text.count("turn.pass_turn();") == 1
    assert "turn" not in lowered().text  # the plain schedule has none


def test_pingpong_needs_two_consumer_warpgroups():
    with pytest.raises(TLCheckError, match="ping-pong passes the turn"):
        lowered(PINGPONG.replace("CONSUMERS = 2", "CONSUMERS = 1").replace("WARPS = 8", "WARPS = 4")
                .replace("BLOCK_M = 128", "BLOCK_M = 64"))


OVERLAP = (GOLDEN_DIR / "dense_prefill_sm90_overlap.tl").read_text()


def test_overlap_issues_the_next_score_gemm_with_the_previous_pv():
    text = lowered(OVERLAP).text
    loop = text[text.index("for (int t_n = n_hi - 2; t_n >= n_lo; --t_n)"):]
    order = [loop.index(s) for s in ("c.issue_qk(S_next", "c.rescale(acc)", "c.issue_pv(acc, P",
                                     "c.wait_gemms<1>(S_next)", "c.online_softmax(S_next",
                                     "c.wait_gemms<0>(acc, P)", "P = c.reshape(S_next)")]
    # acc takes the previous tile's alpha while S runs, after the P V GEMM that wrote it was waited
    # for (the previous iteration's wait_gemms<0>), before the next one reads it
    assert order == sorted(order)
    assert loop.count("c.rescale(acc)") == 2  # once per iteration, once before the last tile's O += P V
    tail = loop[loop.index("// the last tile's O += P V"):]
    assert tail.index("c.rescale(acc)") < tail.index("c.gemm_pv(acc, P")
    head = text[text.index("if (n_hi > n_lo) {"):text.index("for (int t_n = n_hi - 2; t_n >= n_lo; --t_n)")]
    assert "c.rescale(acc)" not in head  # acc is zero at the first tile: its rescale moves into the loop


def test_overlap_with_pingpong_holds_the_turn_over_both_gemms():
    text = lowered(OVERLAP.replace("overlap=softmax", "overlap=softmax, schedule=pingpong")).text
    loop = text[text.index("for (int t_n = n_hi - 2; t_n >= n_lo; --t_n)"):]
    order = [loop.index(s) for s in ("turn.wait_turn();", "c.issue_qk(S_next", "c.issue_pv(acc, P",
                                     "turn.pass_turn();", "c.wait_gemms<1>(S_next)")]
    assert order == sorted(order)
    # one turn per KV tile: the first tile's S GEMM, then one per loop iteration
    assert text.count("turn.wait_turn();") == text.count("turn.pass_turn();") == 2


def test_overlap_can_come_from_a_param():
    on = OVERLAP.replace("overlap=softmax", "overlap=OVERLAP").replace("STAGES = 2", "STAGES = 2\n  OVERLAP = 1")
    off = on.replace("OVERLAP = 1", "OVERLAP = 0")
    assert "c.issue_pv(acc, P" in lowered(on).text
    assert "c.issue_pv(acc, P" not in lowered(off).text and "c.gemm_pv(acc, P" in lowered(off).text


def test_pinned_overlap_ends_the_softmax_before_the_previous_pv_wait():
    """overlap=pinned (or OVERLAP = 2): the overlapped loop's softmax, then softmax_done (the branch
    ptxas does not hoist the wait above), then the wait for the previous tile's O += P V."""
    pinned = lowered(OVERLAP.replace("overlap=softmax", "overlap=pinned")).text
    loop = pinned[pinned.index("for (int t_n = n_hi - 2; t_n >= n_lo; --t_n)"):]
    order = [loop.index(s) for s in ("c.wait_gemms<1>(S_next)", "c.online_softmax(S_next", "c.softmax_done(S_next);",
                                     "c.wait_gemms<0>(acc, P)", "P = c.reshape(S_next)")]
    assert order == sorted(order) and pinned.count("c.softmax_done(") == 1
    by_param = OVERLAP.replace("overlap=softmax", "overlap=OVERLAP").replace("STAGES = 2", "STAGES = 2\n  OVERLAP = 2")
    assert lowered(by_param).text.count("c.softmax_done(S_next);") == 1
    assert "c.softmax_done(" not in lowered(OVERLAP).text  # overlap=softmax leaves the order to the compiler
    with pytest.raises(TLCheckError, match="overlap=4"):
        lowered(by_param.replace("OVERLAP = 2", "OVERLAP = 4"))


def test_gemms_overlap_waits_for_both_gemms_before_the_softmax():
    """overlap=gemms (or OVERLAP = 3): S of a KV tile and O += P V of the one before issued together
    (acc rescaled between them, as overlap=softmax does), then one wait for both, sV handed back, and
    the softmax with P already dead; the same first and last tile as the overlapped loop."""
    text = lowered(OVERLAP.replace("overlap=softmax", "overlap=gemms")).text
    loop = text[text.index("for (int t_n = n_hi - 2; t_n >= n_lo; --t_n)"):text.index("// the last tile's O += P V")]
    order = [loop.index(s) for s in ("c.issue_qk(S_next", "c.rescale(acc)", "c.issue_pv(acc, P",
                                     "c.wait_gemms<0>(S_next, acc, P)", "qm::sm90::release(sm.v_empty",
                                     "c.online_softmax(S_next", "P = c.reshape(S_next)")]
    assert order == sorted(order)
    assert "c.wait_gemms<1>" not in loop and loop.count("c.wait_gemms<0>") == 1
    assert "overlap=gemms: a tile's S GEMM and the previous tile's O += P V issued together" in text
    by_param = OVERLAP.replace("overlap=softmax", "overlap=OVERLAP").replace("STAGES = 2", "STAGES = 2\n  OVERLAP = 3")
    from_param = lowered(by_param).text
    assert "c.wait_gemms<0>(S_next, acc, P)" in from_param and "c.wait_gemms<1>" not in from_param


def carried(d=128, **params):
    """The shipped program with carry=pv switched on (CARRY = 1; O stored from registers, which carry=pv
    needs) and other params overridden."""
    text = SHIPPED.replace("  CARRY = 0", "  CARRY = 1").replace("  STORE_TMA = 1", "  STORE_TMA = 0")
    for key, value in params.items():
        text = text.replace(f"  {key} = ", f"  {key} = {value}  # was ", 1)
    return lowered(text, d=d).text


def test_carry_runs_one_kv_loop_across_the_tiles():
    """carry=pv: one loop of KV steps across the CTA's tiles. At a switch the next tile is taken and its
    first S GEMM goes out with the finished tile's last O += P V (one turn), its softmax runs beside
    that GEMM, then the finished tile's O is stored with its own row sums. Each GEMM has one site in
    the loop (the earlier form's extra PV GEMM sites pushed the descriptors out of uniform registers)."""
    text = carried()
    consumer = text[text.index("consumer_registers"):]
    loop = consumer[consumer.index("for (;;) {"):consumer.index("// the CTA's last tile")]
    order = [loop.index(s) for s in (
        "const bool switching = nxt < n_lo;", "tile_t = qm::sm90::take_tile(sm, iter);", "if (tile_t < 0) break;",
        "n_hi = qm::sm90::kv_end(n_lo, t_n_end);", "qm::sm90::wait_q(sm, q_iter);", "nxt = n_hi - 1;",
        "c.carry_rows();", "turn.wait_turn();", "c.issue_qk(S_next, sm", "c.rescale(acc);", "c.issue_pv(acc, P",
        "turn.pass_turn();", "c.wait_gemms<1>(S_next);", "if (nxt == n_lo) qm::sm90::release_q(sm);",
        "c.mask(S_next, mk, nxt);", "c.online_softmax(S_next, scale);", "c.softmax_done(S_next);",
        "c.wait_gemms<0>(acc, P);", "qm::sm90::release(sm.v_empty",
        "c.normalize_and_store(acc, p, done_b, done_h, done_q0, done_len, c.l_carried);", "cute::clear(acc);",
        "P = c.reshape(S_next);", "t_n = nxt;")]
    assert order == sorted(order)
    assert consumer.count("c.issue_qk(") == 2 and consumer.count("c.issue_pv(") == 1  # the first S; the loop's pair
    assert consumer.count("c.gemm_pv(") == 1  # the CTA's last tile's last O += P V, after the loop
    assert consumer.count("turn.wait_turn();") == consumer.count("turn.pass_turn();") == 2
    # the store's coordinates are set where a tile is taken, not decoded again from its word
    assert consumer.count("o_b = t_b, o_h = t_q_head, o_q0 = t_q0, o_len = qm::seqlen_q_of(p, t_b);") == 2
    assert "carried_word" not in text and "n_hi <= n_lo" not in consumer


def test_carry_gives_a_tile_with_no_kv_tile_one_masked_kv_tile_in_both_roles():
    """A tile with no KV tile runs KV tile n_lo, which its mask hides entirely (O = 0 as for the empty
    range): the producer loads it too, so the loop has no branch for such a tile."""
    text = carried()
    producer = text[:text.index("consumer_registers")]
    assert "const int n_lo = t_n_start, n_hi = qm::sm90::kv_end(t_n_start, t_n_end);" in producer
    assert "qm::sm90::kv_end" not in lowered(SHIPPED, d=128, causal=False).text  # CARRY = 0: the empty range
    tail = text[text.index("// the CTA's last tile"):]
    order = [tail.index(s) for s in ("c.rescale(acc);", "c.gemm_pv(acc, P", "qm::sm90::release(sm.v_empty",
                                     "c.normalize_and_store(acc, p, o_b, o_h, o_q0, o_len);", "turn.finish();")]
    assert order == sorted(order)


def test_carry_is_off_in_the_shipped_program_and_checked():
    """The shipped program no longer carries: at D = 128 O's bulk store beat carry=pv under a causal mask
    (perf-notes "twentieth run"), and the two do not combine. A program may still turn it on."""
    for d in (64, 128, 256):
        for causal in (True, False):
            assert "const bool switching" not in lowered(SHIPPED, d=d, causal=causal).text
    assert "const bool switching" in carried(d=128)
    with pytest.raises(TLCheckError, match="tiles=persistent"):
        carried(d=128, PERSISTENT=0)
    with pytest.raises(TLCheckError, match="overlapped loop"):
        carried(d=128, OVERLAP=0)
    with pytest.raises(TLCheckError, match="carry=fast"):
        lowered(SHIPPED.replace("carry=CARRY", "carry=fast"))
    with pytest.raises(TLCheckError, match="on the producer role"):
        lowered(SHIPPED.replace("regs=PRODUCER_REGS {", "regs=PRODUCER_REGS, carry=pv {"))


FA3 = (GOLDEN_DIR / "dense_prefill_sm90_fa3.tl").read_text()
PAGED = (GOLDEN_DIR / "paged_prefill_sm90_pagetma.tl").read_text()
PAGED_SHIPPED = (GOLDEN_DIR / "paged_prefill_sm90.tl").read_text()


def test_persistent_tiles_walk_the_grid_from_one_cta_per_sm():
    src = lowered(FA3)
    (entry,) = src.entries
    assert entry.grid == ["min(num_sms, (cdiv(max_seq_q, 128)) * (heads_q) * (batch))"]
    text = src.text
    producer, consumer = text[:text.index("consumer_registers")], text[text.index("consumer_registers"):]
    # each role builds the tile order; the consumers inside their tile loop (not held through the KV loop)
    tiles = "qm::sm90::TileScheduler tiles(qm::cdiv(p.max_seqlen_q, 128), p.heads_q, p.batch, p.max_seqlen_k, 128 * 2, p.causal);"
    assert producer.count(tiles) == 1 and consumer.count(tiles) == 1
    assert consumer.index("for (int iter = 0;;) {") < consumer.index(tiles)
    # the producer claims tiles from the counter and hands each one it runs to the consumers before its
    # Q, then -1; the consumers take them until -1
    loop = "for (int tile_t = claims.first(); tile_t < tile_count; tile_t = claims.next(tile_t)) {"
    assert "const int tile_count = qm::sm90::TileScheduler(" in producer and producer.index(loop) < producer.index(tiles)
    skip, count = producer.index("continue;"), producer.index("const int q_iter = iter++;")
    hand, q = producer.index("qm::sm90::hand_tile(sm, word.pack(tile_t, tile), q_iter);"), producer.index("qm::sm90::produce_q<KT>(")
    assert skip < count < hand < q  # sQ's barriers flip once per tile that loads a Q: a skipped tile must not count
    assert producer.index("qm::sm90::prefetch_q<KT>(") < q
    assert producer.index("qm::sm90::hand_tile(sm, -1, iter);  // no tile left") > q
    assert "const int tile_t = qm::sm90::take_tile(sm, iter);" in consumer and "if (tile_t < 0) break;" in consumer
    # the producer hands over the tile's coordinates packed into one word when the grid fits; the
    # consumers unpack it, decoding (TileScheduler::at) only a tile number
    word = "const qm::sm90::TileWord word(qm::cdiv(p.max_seqlen_q, 128), p.heads_q, p.batch);"
    assert producer.count(word) == 1 and consumer.count(word) == 1
    assert "const qm::sm90::Tile tile = tiles.at(tile_t);" in producer
    assert "const qm::sm90::Tile tile = word.unpack(tile_t, tiles);" in consumer and "tiles.at(" not in consumer
    assert "continue;" not in consumer  # the producer hands over no tile past its sequence
    assert "qm::sm90::wait_q(sm, q_iter);" in text and "q_batch(p, t_b), q_iter);" in text
    # the consumers hand sQ back after the tile's last S GEMM, or at once when the tile has no KV tile
    assert "if (t_n == n_lo) qm::sm90::release_q(sm);" in text
    assert "if (n_hi <= n_lo) qm::sm90::release_q(sm);" in text
    grid = lowered().text
    assert "const qm::sm90::GridTile tiles;" in grid and "TileScheduler" not in grid


def test_persistent_producers_leave_the_counter_zero_for_the_next_launch():
    """A persistent kernel claiming from a counter of its own retires it once its claims are over (the
    last CTA zeroes it: TileCounter::retire), so the host zeroes a stream's counter once (RETIRING_ABI);
    split=tail's counter heads a workspace the host zeroes per launch, and a plain grid has none."""
    retire = "claims.retire();"
    for d, causal in ((64, True), (128, True), (128, False), (256, False)):
        src = lowered(SHIPPED, d=d, causal=causal)
        text = src.text
        producer = text[:text.index("consumer_registers")]
        assert src.entries[0].abi == RETIRING_ABI and text.count(retire) == 1
        # by the claiming thread, after its last claim: where it tells the consumers no tile is left
        assert producer.index("qm::sm90::hand_tile(sm, -1, iter);  // no tile left") < producer.index(retire)
        assert producer.index("if (qm::sm90::elected_producer()) {") < producer.index(retire)
    gathered = paged(GATHER).text  # the whole producer warpgroup runs the tile loop; its leader claims
    producer = gathered[:gathered.index("consumer_registers")]
    assert gathered.count(retire) == 1 and "if (qm::sm90::producer_leader()) claims.retire();" in producer
    assert producer.rindex("claims.next(claimed)") < producer.index(retire) < producer.index("gathers_drained()")
    assert paged(GATHER).entries[0].abi == RETIRING_ABI
    assert retire not in split(d=128).text and split(d=128).entries[0].abi == SPLIT_ABI
    assert retire not in lowered().text and lowered().entries[0].abi == KERNEL_ABI


def test_fa3_program_turns_overlap_off_at_head_size_256():
    assert "c.issue_pv(acc, P" in lowered(FA3, d=128).text
    text = lowered(FA3, d=256).text
    assert "c.issue_pv(acc, P" not in text and "turn.wait_turn();" in text
    assert "qm::sm90::Traits<qm::sm90::bf16, 256, 128, 64, 2, 2, 24, 240>" in text


def test_kernel_options_are_checked():
    with pytest.raises(TLCheckError, match="unknown kernel option"):
        lowered(FA3.replace("with tiles=persistent", "with tiles=persistent, order=fast"))
    with pytest.raises(TLCheckError, match="tiles=forever"):
        lowered(FA3.replace("tiles=persistent", "tiles=forever"))


def paged(text=PAGED, dtype="f16", d=128):
    return lower_sm90(parse_tl(text), SM90_TARGET, AttentionSpec("paged_prefill", dtype, d))


def test_paged_prefill_copies_one_box_per_page_and_clears_the_v_tail():
    src = paged()
    text = src.text
    assert src.entries[0].name == "qm_paged_prefill_sm90_pagetma_attn_f16_hd128"
    assert "const qm::sm90::PagedRows pages(p, t_b, t_Lk, KT::kBlockN);" in text
    assert text.count("qm::sm90::produce_kv_paged<KT>(") == 2 and "produce_kv<KT>(" not in text
    # the producer warp reads a tile's block-table entries together, the next tile's ahead of its copies
    assert "if (qm::sm90::producer_warp()) {" in text
    order = [text.index(x) for x in ("int next_block = n_hi > n_lo ? pages.lane_block((n_hi - 1) * 128",
                                     "const int block = next_block;",
                                     "if (t_n > n_lo) next_block = pages.lane_block((t_n * 128) - 128",
                                     "qm::sm90::produce_kv_paged<KT>(&tma.k")]
    assert order == sorted(order)
    # the V rows past Lk are zeroed before the O += P V that reads them
    tail, gemm = text.index("c.zero_rows_past(sm, ps_v.stage, t_Lk - (t_n) * KT::kBlockN)"), text.index("c.gemm_pv(")
    assert tail < gemm and text.count("zero_rows_past") == 1
    assert "zero_rows_past" not in lowered(FA3).text  # dense: TMA fills rows past the end with zeros
    assert "qm::sm90::q_row(p, t_b, t_q0)" in text  # varlen rows from cu_seqlens_q


def test_paged_overlapped_loop_clears_the_v_tail_of_the_previous_and_the_last_tile():
    text = paged(PAGED.replace("regs=CONSUMER_REGS {", "regs=CONSUMER_REGS, overlap=softmax {")).text
    assert "c.zero_rows_past(sm, ps_v.stage, t_Lk - (t_n + 1) * KT::kBlockN)" in text
    assert "c.zero_rows_past(sm, ps_v.stage, t_Lk - (n_lo) * KT::kBlockN)" in text


def test_paged_decode_is_refused():
    with pytest.raises(LoweringError, match="paged_decode"):
        lower_sm90(parse_tl(PAGED.replace("op paged_prefill", "op paged_decode")), SM90_TARGET,
                   AttentionSpec("paged_decode", "f16", 128, 16))


def test_overlap_values_are_checked():
    with pytest.raises(TLCheckError, match="overlap=fast"):
        lowered(OVERLAP.replace("overlap=softmax", "overlap=fast"))


GATHER = (GOLDEN_DIR / "paged_prefill_sm90.tl").read_text()


def test_paged_prefill_gathers_pages_with_the_producer_warpgroup():
    src = paged(GATHER)
    text = src.text
    assert src.entries[0].name == "qm_paged_prefill_sm90_attn_f16_hd128"
    # every K/V stage completes on the 128 producer threads' arrivals, not on TMA bytes
    assert "qm::sm90::init_barriers<KT, qm::sm90::kWarpgroupThreads>(sm);" in text
    assert "qm::sm90::PagedGather<KT> gather(p, t_b, t_Lk, t_kv_head, threadIdx.x);" in text
    loop = text[text.index("gather.seek("):text.index("} else {")]
    order = [loop.index(x) for x in ("gather.seek((t_n * 128));", "qm::sm90::wait_empty(sm.k_empty, ps_k);",
                                     "gather.copy_k(sm.k[ps_k.stage]);", "qm::sm90::gathered(sm.k_full, ps_k.stage);",
                                     "qm::sm90::wait_empty(sm.v_empty, ps_v);", "gather.copy_v(sm.v[ps_v.stage]);",
                                     "qm::sm90::gathered(sm.v_full, ps_v.stage);", "ps_k.advance();")]
    # each stage is signalled by the hardware once the thread's copies into it landed: no wait in the loop
    assert order == sorted(order)
    assert "cp_async_wait" not in loop and "pend_k" not in loop
    assert "qm::sm90::gathers_drained();" in loop  # before the producer's threads exit
    # the consumers fence gathered stages (generic-proxy writes) before their GMMAs read them
    consumer = text[text.index("} else {"):]
    assert "qm::sm90::wait_gathered(sm.k_full, ps_k.stage, ps_k.phase);" in consumer
    assert "qm::sm90::wait_full(" not in consumer
    assert "produce_kv" not in text and "zero_rows_past" not in text  # rows past Lk are zero-filled
    assert "if (qm::sm90::producer_leader()) qm::sm90::produce_q<KT>(" in text  # Q stays a TMA copy
    assert src.entries[0].tensor_maps == {"q": 128}  # no K/V maps: the gather takes any page size that is a multiple of 8


def test_a_grid_gather_runs_one_tile_per_cta():
    """PERSISTENT = 0 (the program's one-tile-per-CTA form, a diagnostic variant now): no counter in the
    ABI, the grid's tile, and the gathering threads take it without a hand-off."""
    src = paged(GATHER.replace("  PERSISTENT = 1\n", "  PERSISTENT = 0\n"))
    text = src.text
    assert src.entries[0].abi == "attn_params+tma_descs"
    assert "const qm::sm90::GridTile tiles;" in text and "tile_counter" not in text
    assert "producer_sync" not in text and "hand_tile" not in text
    assert "gather.seek(" in text and "qm::sm90::gathers_drained();" in text


def test_gathering_is_for_paged_prefill_only():
    dense = SM90.replace("with via=tma\n", "with via=cp.async\n").replace(
        "Copy sQ <- Q[b, q_head, q0 : q0 + BLOCK_M] with via=cp.async", "Copy sQ <- Q[b, q_head, q0 : q0 + BLOCK_M] with via=tma")
    with pytest.raises(LoweringError, match="paged prefill only"):
        lowered(dense)
    mixed = GATHER.replace("Copy sV <- V[b, kv_head, n * BLOCK_N : n * BLOCK_N + BLOCK_N] with via=cp.async",
                           "Copy sV <- V[b, kv_head, n * BLOCK_N : n * BLOCK_N + BLOCK_N] with via=tma")
    with pytest.raises(LoweringError, match="the same way"):
        paged(mixed)


def test_the_page_per_box_producer_refuses_persistent_tiles():
    """Tiles are claimed by one producer thread; the page-per-box producer runs a whole warp (its lanes
    read a tile's block-table entries), so tiles=persistent is refused with the fix, not miscompiled."""
    text = PAGED.replace("b : batch) {", "b : batch) with tiles=persistent {", 1)
    assert "tiles=persistent {" in text
    with pytest.raises(LoweringError, match="tiles=persistent claims tiles from one producer thread") as e:
        paged(text)
    assert "tiles=grid" in e.value.fix


def test_a_persistent_gather_hands_each_tile_to_its_whole_warpgroup():
    """tiles=persistent with the gather: the leader claims tiles (skipping query blocks past their
    sequence) and hands each one to the consumers and, through the slot and a named barrier, to the
    other 127 gathering threads; -1 ends every role's loop. The next tile is claimed only once this
    tile's copies are issued: claimed when this one was handed on, a CTA that had just started a long
    causal tile took the next one too (a whole tile ahead of finishing)."""
    text = paged(GATHER).text  # the shipped program: tiles=persistent at every head size
    producer = text[:text.index("} else {")]
    order = [producer.index(x) for x in (
        "int claimed = claims.first();", "if (qm::sm90::producer_leader()) {", "int handed = -1;",
        "for (; claimed < tile_count; claimed = claims.next(claimed)) {", ">= qm::seqlen_q_of(p, t_b)) continue;",
        "handed = word.pack(claimed, tile);",
        "qm::sm90::hand_tile(sm, handed, iter);", "qm::sm90::producer_sync();",
        "const int tile_t = qm::sm90::handed_tile(sm, iter);", "if (tile_t < 0) break;",
        "const qm::sm90::Tile tile = word.unpack(tile_t, tiles);", "const int q_iter = iter++;",
        "gather.seek(", "gather.copy_v(", "if (qm::sm90::producer_leader()) claimed = claims.next(claimed);",
        "qm::sm90::gathers_drained();")]
    assert order == sorted(order)
    assert producer.count("claimed = claims.next(claimed);") == 1  # no claim a whole tile ahead
    assert "int* const tile_counter" in text  # the persistent ABI
    assert "qm::sm90::take_tile(sm, iter)" in text[text.index("} else {"):]  # the consumers take the same words


def split(text=SHIPPED, d=128, **params):
    """The shipped program with split=tail on, lowered for calls without a mask (the split's case; under
    a causal mask D = 128 carries the tile's last O += P V, which the split does not lower with)."""
    text = text.replace("  STORE_TMA = 1", "  STORE_TMA = 0")  # the split stores O from registers
    for name, value in {"SPLIT": 1, **params}.items():
        text = re.sub(rf"^  {name} = \d+", f"  {name} = {value}", text, count=1, flags=re.MULTILINE)
    return lowered(text, d=d, causal=False)


@pytest.mark.parametrize("d", [64, 128, 256])
def test_split_tail_runs_the_last_waves_tiles_in_parts(d):
    """split=tail (SPLIT = 1): the producer's walk splits the tail (the grid's CTAs, the host's parts in
    AttnParams::num_splits; none under a window or past the packed word), both roles narrow the KV
    loop to the part's range, and a part's O is stored only by the last part to arrive, combined."""
    from qimeng_serve.lower.emit_sm90 import SPLIT_ABI, split_tail_meta

    src = split(d=d)
    (entry,) = src.entries
    text = src.text
    producer, consumer = text[:text.index("consumer_registers")], text[text.index("consumer_registers"):]
    args = ("qm::window_of(p) || !qm::sm90::TileWord(qm::cdiv(p.max_seqlen_q, {bm}), p.heads_q, p.batch).packed ? 0 "
            ": qm::sm90::opaque(gridDim.x), qm::sm90::opaque(p.num_splits))")
    bm = entry.tensor_maps["q"]
    assert producer.count(args.format(bm=bm)) == 2  # the item count and each tile's scheduler
    assert "num_splits" not in consumer.split("qm::sm90::SplitTail")[0].split("part_range")[0]  # consumers: the word
    kv = "const qm::sm90::KvRange kv = qm::sm90::part_range(t_n_start, t_n_end, tile.part, qm::sm90::clamp_parts(p.num_splits));"
    assert producer.count(kv) == 1 and consumer.count(kv) == 1
    assert "if (tile.part < 0 || qm::sm90::SplitTail<KT>(tile_counter).finish(c, acc, p, tile)) c.normalize_and_store(" \
        in consumer
    assert entry.abi == SPLIT_ABI
    meta = entry.split_tail
    assert meta == {**split_tail_meta(bm, entry.tensor_maps["k"], d, bm // 64), "max_parts": 7}
    assert split(d=d, SPLIT=3).entries[0].split_tail["max_parts"] == 3
    # a part's bytes: per consumer thread its O (fp32) and {m, m, l, l}, in 16-byte units
    assert meta["part_bytes"] == 128 * (bm // 64) * (bm * d // (128 * (bm // 64)) // 4 + 1) * 16
    shipped = lowered(SHIPPED, d=d, causal=False)
    assert shipped.entries[0].abi == RETIRING_ABI and not shipped.entries[0].split_tail
    assert "SplitTail" not in shipped.text and "part_range" not in shipped.text


def test_split_tail_is_checked_and_refused_where_not_lowered():
    with pytest.raises(TLCheckError, match="split=tail splits the last wave of a persistent tile walk"):
        split(PERSISTENT=0)
    with pytest.raises(TLCheckError, match="split=sometimes"):
        lowered(SHIPPED.replace("split=SPLIT", "split=sometimes"))
    with pytest.raises(LoweringError, match="without carry=pv"):
        split(CARRY=1)
    with pytest.raises(LoweringError, match="is lowered for the grid"):
        split(SHIPPED.replace("q_head : heads_q, b : batch)", "q_head : heads_q, b : batch + 0)"))


@pytest.mark.parametrize("d", [64, 128, 256])
def test_split_stream_shares_the_last_waves_steps_out(d):
    """split=stream (SPLIT = -1): the producer walks its whole waves and then its run of the shared region
    (StreamClaims, no counter, when the launch shares: AttnParams::num_splits > 1 and no mask, window or
    grid past the packed word), both roles narrow the KV loop to the run's part of the tile (the producer
    from its claims, the consumers from the word's part), and a part's O is stored only by the last part
    to arrive, combined (StreamTail)."""
    from qimeng_serve.lower.emit_sm90 import SPLIT_ABI, split_tail_meta

    src = split(d=d, SPLIT=-1, CARRY=0)
    (entry,) = src.entries
    text = src.text
    producer, consumer = text[:text.index("consumer_registers")], text[text.index("consumer_registers"):]
    bm, bn = entry.tensor_maps["q"], entry.tensor_maps["k"]
    on = (f"qm::cdiv(p.max_seqlen_k, {bn}), qm::sm90::opaque(p.num_splits) > 1 && !p.causal && !qm::window_of(p) && "
          f"qm::sm90::TileWord(qm::cdiv(p.max_seqlen_q, {bm}), p.heads_q, p.batch).packed);")
    assert "const qm::sm90::StreamClaims claims(tile_counter, qm::sm90::TileScheduler(" in producer and on in producer
    assert "for (int tile_t = claims.first(); tile_t < claims.end; tile_t = claims.next(tile_t)) {" in producer
    assert "const qm::sm90::Tile tile = claims.at(tiles, tile_t);" in producer
    assert "TileCounter" not in producer and "part_range" not in text
    assert "const qm::sm90::KvRange kv = claims.share.range(t_n_start, t_n_end, tile.part, claims.kv);" in producer
    assert "const qm::sm90::KvRange kv = qm::sm90::StreamTail<KT>::range(t_n_start, t_n_end, tile.part, p);" in consumer
    # a part's O, normalised, through the tile's one store into its block; the last part merges the blocks
    epilogue = ["const auto dest = stream.dest(p, tile, t_b, t_q_head, t_q0);",
                "c.store_rows(acc, dest.out, dest.stride, t_q0, qm::seqlen_q_of(p, t_b), c.l);",
                "if (tile.part >= 0) stream.merge(c, p, tile, t_b, t_q_head, t_q0, qm::seqlen_q_of(p, t_b));"]
    at = [consumer.index(line) for line in epilogue]
    assert at == sorted(at) and "normalize_and_store" not in consumer and consumer.count("store_rows(") == 1
    assert entry.abi == SPLIT_ABI
    assert entry.split_tail == {**split_tail_meta(bm, bn, d, bm // 64), "part_bytes": bm * d * 2 + bm * 8,
                                "mode": "stream"}
    assert f"static_assert(qm::sm90::StreamTail<KT>::kBlockBytes == {bm * d * 2 + bm * 8}," in text


def test_split_stream_is_checked_and_refused_where_not_lowered():
    with pytest.raises(TLCheckError, match="split=stream splits the last wave of a persistent tile walk"):
        split(SPLIT=-1, PERSISTENT=0, CARRY=0)
    with pytest.raises(LoweringError, match="without carry=pv"):
        split(SPLIT=-1, CARRY=1)
    with pytest.raises(LoweringError, match="split=stream is lowered for the grid"):
        split(SHIPPED.replace("q_head : heads_q, b : batch)", "q_head : heads_q, b : batch + 0)"), SPLIT=-1, CARRY=0)
    stream = SHIPPED.replace("split=SPLIT", "split=stream")
    with pytest.raises(LoweringError, match="storing O from registers"):  # D 128 ships O's bulk store
        lowered(stream, causal=False)
    assert "StreamClaims" in lowered(stream.replace("  STORE_TMA = 1", "  STORE_TMA = 0"), causal=False).text


def test_idle_warpgroups_skip_their_tile_at_head_size_64():
    """idle=IDLE (on at D 64): a consumer warpgroup whose 64 rows all lie outside its tile's sequence
    ends the tile in its own branch, before the KV loop (nothing of it lives through that loop), passing
    one turn a KV tile; the producer arrives for it on every K and V slot it fills."""
    text = lowered(SHIPPED, d=64).text
    producer, consumer = text[:text.index("consumer_registers")], text[text.index("consumer_registers"):]
    assert "const int idle = qm::sm90::idle_consumer_threads<KT>(t_q0, qm::seqlen_q_of(p, t_b));" in producer
    assert producer.count("qm::sm90::arrive_idle(sm.k_empty, ps_k.stage, idle);") == 1
    assert producer.count("qm::sm90::arrive_idle(sm.v_empty, ps_v.stage, idle);") == 1
    vote = ("const bool idle = __any_sync(0xffffffffu, qm::sm90::rows_outside(t_q0 + qm::sm90::kWarpgroupRows * "
            "(c.tid / qm::sm90::kWarpgroupThreads), qm::seqlen_q_of(p, t_b)));")
    branch = consumer.index("if (idle) {")
    assert consumer.index("qm::sm90::wait_q(sm, q_iter);") < consumer.index(vote) < branch
    body = consumer[branch:consumer.index("}", branch)]
    assert "qm::sm90::idle_kv_tiles<KT>(ps_k, ps_v, n_hi - n_lo, turn);" in body
    assert body.index("qm::sm90::release_q(sm);") < body.index("continue;")
    assert branch < consumer.index("if (n_hi > n_lo) {")
    assert "!idle" not in consumer and "|| idle" not in consumer  # nothing of it after the branch
    for d in (128, 256):  # off: at D 128 the sweep has no such warpgroup and the switch cost 0.3-0.9%
        text = lowered(SHIPPED, d=d).text
        assert "idle_kv_tiles" not in text and "arrive_idle" not in text and "const bool idle" not in text
    # without ping-pong the idle warpgroup has no turns to pass
    assert "idle_kv_tiles<KT>(ps_k, ps_v, n_hi - n_lo, qm::sm90::NoTurns{});" in lowered(SM90, d=64).text


def test_lazy_rescale_is_a_traits_argument_where_the_program_turns_it_on():
    """rescale=RESCALE (on at D 128 and 256, off at D 64): Traits' LAZY_RESCALE argument, after STORE_O_TMA,
    which the consumer's softmax and O rescale read (consumer.cuh); the loop's calls stay as they are."""
    # D 128 stores O by TMA (STORE_O_TMA 1); D 256 from registers
    for d, head, store in ((128, "128, 128, 128, 2, 2, 40, 232", "1"), (256, "256, 128, 80, 2, 2, 24, 240", "0")):
        text = lowered(SHIPPED, d=d).text
        assert f"qm::sm90::Traits<qm::sm90::bf16, {head}, {store}, 1>" in text
        eager = lowered(SHIPPED.replace("rescale=RESCALE", "rescale=eager"), d=d).text
        assert f"qm::sm90::Traits<qm::sm90::bf16, {head}{', 1' if store == '1' else ''}>" in eager
        assert eager.count("c.rescale(acc);") == text.count("c.rescale(acc);") > 0
    assert "qm::sm90::Traits<qm::sm90::bf16, 64, 192, 128, 4, 3, 32, 160>" in lowered(SHIPPED, d=64).text
    assert "64, 192, 128, 4, 3, 32, 160, 0, 1>" in lowered(SHIPPED.replace("rescale=RESCALE", "rescale=lazy"), d=64).text
    # with O's bulk store the flag follows STORE_O_TMA's 1
    tma = lowered(SM90.replace("  STORE_TMA = 0", "  STORE_TMA = 1").replace("rescale=RESCALE", "rescale=lazy"), d=128)
    assert "qm::sm90::Traits<qm::sm90::bf16, 128, 128, 128, 2, 2, 40, 232, 1, 1>" in tma.text


def test_rescale_option_is_checked():
    with pytest.raises(TLCheckError, match="rescale=sometimes"):
        lowered(SHIPPED.replace("rescale=RESCALE", "rescale=sometimes"))
    with pytest.raises(TLCheckError, match="rescale=lazy on the producer role"):
        lowered(SHIPPED.replace("regs=PRODUCER_REGS {", "regs=PRODUCER_REGS, rescale=lazy {"))


def test_idle_option_is_checked():
    with pytest.raises(TLCheckError, match="idle=sometimes"):
        lowered(SHIPPED.replace("idle=IDLE", "idle=sometimes"), d=64)
    with pytest.raises(TLCheckError, match="on the producer role"):
        lowered(SHIPPED.replace("regs=PRODUCER_REGS {", "regs=PRODUCER_REGS, idle=skip {"), d=64)
    with pytest.raises(LoweringError, match="idle=skip is lowered without carry=pv"):
        lowered(SHIPPED.replace("  CARRY = 0", "  CARRY = 1").replace("  IDLE = 0", "  IDLE = 1"), d=128)


def test_idle_warpgroups_skip_their_tile_in_paged_d64():
    """The paged gather (on at D 64): the producer's leader arrives for the idle warpgroups on each K
    and V slot, after the warpgroup waited for it to be empty; the consumers skip as in dense."""
    text = paged(PAGED_SHIPPED, "bf16", 64).text
    producer, consumer = text[:text.index("consumer_registers")], text[text.index("consumer_registers"):]
    assert "const int idle = qm::sm90::idle_consumer_threads<KT>(t_q0, qm::seqlen_q_of(p, t_b));" in producer
    for ring in ("k", "v"):
        wait = producer.index(f"qm::sm90::wait_empty(sm.{ring}_empty, ps_{ring});")
        arrive = producer.index(f"if (qm::sm90::producer_leader()) qm::sm90::arrive_idle(sm.{ring}_empty, "
                                f"ps_{ring}.stage, idle);")
        assert wait < arrive
    assert "qm::sm90::idle_kv_tiles<KT>(ps_k, ps_v, n_hi - n_lo, qm::sm90::NoTurns{});" in consumer
    assert "idle_kv_tiles" not in paged(PAGED_SHIPPED, "bf16", 128).text


def test_carry_lowers_in_the_paged_gather_and_is_refused_elsewhere_in_paged_prefill():
    """carry=pv in paged prefill: the gathering producer takes kv_end too (a tile with no KV tile gathers
    one, zero-filled past kv_len); the page-per-box producer, one CTA per tile, is refused."""
    text = paged(PAGED_SHIPPED.replace("  CARRY = 0", "  CARRY = 1"), "bf16", 128).text
    producer, consumer = text[:text.index("consumer_registers")], text[text.index("consumer_registers"):]
    assert "qm::sm90::kv_end(" in producer and "const bool switching" in consumer
    assert "qm::sm90::wait_gathered(" in consumer  # the gathered stages' fence, as in the tile loop
    assert "const bool switching" not in paged(PAGED_SHIPPED, "bf16", 128).text  # CARRY = 0 as shipped
    with pytest.raises((LoweringError, TLCheckError), match="tiles=persistent|dense prefill and the paged gather"):
        paged(PAGED.replace("regs=CONSUMER_REGS {", "regs=CONSUMER_REGS, overlap=softmax, carry=pv {"))
