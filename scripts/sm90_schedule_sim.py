#!/usr/bin/env python
"""List-scheduling simulation of the persistent sm_90a kernels' tile claims (no GPU).

132 SMs take tiles in the order of `qm::sm90::TileScheduler::at` (kernels_src/include/qimeng/sm90/
scheduler.cuh: under a causal mask, heads in groups whose K and V fit the L2 budget, the query blocks
from the last, the group's heads fastest). A tile costs its KV tiles plus a fixed overhead. Two claim
points:
  late   an SM claims its next tile when it is free (the dense producer, and the gathering producer
         since session 12: a ring's depth before the CTA is free);
  early  an SM claims its next tile as it starts the current one (the gathering producer before
         session 12: a one-tile lookahead).
Prints each makespan over the ideal (total work / SMs) for the benchmark's shapes (B x L = 16k tokens,
H x D = 2048). docs/perf-notes.md "tenth run" has the table and what the H100 measured.

    python scripts/sm90_schedule_sim.py [--overhead 2] [--sms 132]
"""

from __future__ import annotations

import argparse
import heapq
import math

MB = 1 << 20
# (D, BLOCK_M, BLOCK_N) of the shipped paged_prefill_sm90.tl tiles
TILES = {64: (192, 96), 128: (128, 128), 256: (128, 80)}


def tile_order(m_blocks: int, heads: int, batch: int, group: int) -> list[tuple[int, int]]:
    """(query block, (head, batch) pair: head fastest) of each tile number, as TileScheduler::at hands
    them out (tests/unit/kernels/test_schedule_sim.py compares the two)."""
    pairs = heads * batch
    per_group = group * m_blocks
    tiles = []
    for t in range(m_blocks * pairs):
        g, r = divmod(t, per_group)
        size = min(group, pairs - g * group)  # the last group may be partial
        tiles.append((m_blocks - 1 - r // size, g * group + r % size))
    return tiles


def group_size(seqlen: int, head_dim: int, pairs: int, budget: int = 32 * MB) -> int:
    """Heads per L2 group: TileScheduler's constructor under a causal mask (K and V, 2-byte elements)."""
    per_head = max(seqlen, 1) * head_dim * 2 * 2
    return max(1, min(pairs, budget // per_head))


def makespan(costs: list[int], sms: int, early: bool) -> float:
    """Finish time of the last tile over the ideal. Late: the first free SM takes the next tile. Early:
    an SM's first tile is its index, and each SM claims its next tile as it starts one."""
    ideal = sum(costs) / sms
    if not early:
        free = [0.0] * sms
        end = 0.0
        for c in costs:
            start = heapq.heappop(free)
            heapq.heappush(free, start + c)
            end = max(end, start + c)
        return end / ideal
    nxt = min(sms, len(costs))
    events = []  # (time the SM is free, sm, the tile it already claimed or -1)
    for sm in range(nxt):
        claimed = nxt if nxt < len(costs) else -1
        nxt += claimed >= 0
        heapq.heappush(events, (costs[sm], sm, claimed))
    end = 0.0
    while events:
        t, sm, tile = heapq.heappop(events)
        end = max(end, t)
        if tile < 0:
            continue
        claimed = nxt if nxt < len(costs) else -1
        nxt += claimed >= 0
        heapq.heappush(events, (t + costs[tile], sm, claimed))
    return end / ideal


def causal_costs(tiles: list[tuple[int, int]], seqlen: int, block_m: int, block_n: int, overhead: int) -> list[int]:
    """KV tiles of each causal tile (Lq = Lk) plus the fixed overhead."""
    return [math.ceil(min(seqlen, m * block_m + block_m) / block_n) + overhead for m, _ in tiles]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--overhead", type=int, default=2, help="a tile's fixed cost, in KV tiles (default 2)")
    ap.add_argument("--sms", type=int, default=132, help="SMs (H100 SXM: 132)")
    args = ap.parse_args()
    print(f"causal, makespan / ideal, {args.sms} SMs, overhead {args.overhead} KV tiles")
    print(f"{'D':>4} {'B x L':>10} {'L2 budget':>9} {'group':>5} {'early':>7} {'late':>7}")
    for d, (block_m, block_n) in TILES.items():
        heads = 2048 // d
        for batch, seqlen in ((8, 2048), (2, 8192), (1, 16384)):
            for budget in (32 * MB, 16 * MB, 8 * MB):
                group = group_size(seqlen, d, heads * batch, budget)
                tiles = tile_order(math.ceil(seqlen / block_m), heads, batch, group)
                costs = causal_costs(tiles, seqlen, block_m, block_n, args.overhead)
                early, late = (makespan(costs, args.sms, e) for e in (True, False))
                print(f"{d:4d} {batch:>3} x {seqlen:<5d} {budget // MB:6d} MB {group:5d} {early:7.3f} {late:7.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
