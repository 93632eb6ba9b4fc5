"""The host's side of split=tail (qimeng_serve/runtime/split_tail.py): how many parts a tail tile runs
in, and the workspace the kernel's layout (sm90/split.cuh) needs for them."""

from qimeng_serve.runtime.abi import AttnParams
from qimeng_serve.runtime.split_tail import (
    MAX_PARTS,
    counter_bytes,
    launch_parts,
    split_parts,
    workspace_bytes,
)

D128 = {"block_m": 128, "block_n": 128, "warps": 8, "part_bytes": 8 * 32 * 17 * 16}


def params(b=8, h=16, lq=2048, lk=2048, causal=0, window=0):
    p = AttnParams()
    p.batch, p.heads_q, p.heads_kv, p.max_seqlen_q, p.max_seqlen_k = b, h, h, lq, lk
    p.causal, p.window_left = causal, window
    return p


def test_parts_follow_the_tail_and_the_keys():
    # D 128 at 2k on 132 SMs: 2048 tiles, 68 in the last wave, 16 KV blocks: 3 parts (two rounds of
    # 6 + 1 blocks against one of 17)
    assert split_parts(2048, 132, 16) == 3
    assert split_parts(2048, 132, 16, part_cost=5) == 1  # a dearer part: the whole tile
    assert split_parts(2112, 132, 16) == 1  # whole waves: no tail
    assert split_parts(2048, 132, 3) == 1  # a part has at least two blocks
    assert split_parts(2048 + 4, 132, 1024) == MAX_PARTS  # 4 tail tiles, long keys: as many as the word holds
    assert split_parts(2048 + 4, 132, 1024, max_parts=3) == 3  # the program's cap (split=SPLIT, SPLIT = 3)
    for tiles in range(133, 700, 7):
        for blocks in (2, 5, 16, 64):
            k = split_parts(tiles, 132, blocks)
            assert 1 <= k <= MAX_PARTS and (k == 1 or 2 * k <= blocks)


def test_launch_parts_split_only_without_a_mask_or_window():
    assert launch_parts(D128, params(), 132) == 3
    assert launch_parts(D128, params(causal=1), 132) == 1
    assert launch_parts(D128, params(window=63), 132) == 1
    assert launch_parts({**D128, "parts": 5}, params(), 132) == 5  # a diagnostic build's fixed k
    assert launch_parts({**D128, "parts": 5}, params(h=33), 132) == 1  # 4224 tiles: whole waves


def test_workspace_holds_the_counters_and_every_tail_part():
    head = counter_bytes(132, 8)
    assert head == 4352 and head % 256 == 0 and head >= (1 + 132 * 8) * 4
    assert workspace_bytes(D128, params(), 132, 1) == head
    assert workspace_bytes(D128, params(), 132, 3) == head + 68 * 3 * D128["part_bytes"]


STREAM = {**D128, "mode": "stream", "part_bytes": 128 * 128 * 2 + 128 * 8}  # emit_sm90.stream_meta


def test_stream_shares_only_a_partial_wave_without_a_mask_or_window():
    """split=stream: num_splits 2 turns the kernel's share on (it reads > 1), 1 leaves the counter's claims."""
    assert launch_parts(STREAM, params(), 132) == 2  # 2048 tiles: 68 in a last, partial wave
    assert launch_parts(STREAM, params(h=33), 132) == 1  # 4224 tiles: whole waves
    assert launch_parts(STREAM, params(causal=1), 132) == 1
    assert launch_parts(STREAM, params(window=63), 132) == 1


def test_stream_workspace_holds_two_parts_a_cta():
    head = counter_bytes(132, 8)
    assert workspace_bytes(STREAM, params(), 132, 1) == head
    assert workspace_bytes(STREAM, params(), 132, 2) == head + 2 * 132 * STREAM["part_bytes"]
