"""The split tail of a `split=tail` kernel (kernels_src/include/qimeng/sm90/scheduler.cuh, split.cuh):
how many parts each tile of the last, partial wave runs in, and the workspace they need: the tile
counter, one arrival counter per (tail tile, consumer warp), then the parts' O and row statistics
(fp32). A `split=stream` kernel (metadata mode "stream") shares the walk's KV steps out equally among
its CTAs: on (2) or off (1), with two part blocks a CTA.

The host decides the parts (the kernel reads them from AttnParams::num_splits, <= 1 meaning none) and
sizes the workspace for them, so the two cannot disagree. Only the counters are zeroed per launch: the
parts are written before they are read.
"""

from __future__ import annotations

MAX_PARTS = 7  # scheduler.cuh kMaxParts: the tile word's part field


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def split_parts(tiles: int, ctas: int, kv_blocks: int, part_cost: int = 1, max_parts: int = MAX_PARTS) -> int:
    """Parts per tail tile: the k that minimises the tail's time in KV blocks, rounds(k) x (ceil(kv_blocks
    / k) + part_cost) (part_cost: what a part costs besides its keys, its Q, the pipeline's fill and
    drain, its store and the combine, in KV blocks), against the whole tile's one round of kv_blocks +
    part_cost; parts of at least two blocks, at most max_parts. 1: no split."""
    tail = tiles % ctas if ctas > 0 else 0
    best, best_cost = 1, kv_blocks + part_cost
    k = 2
    while tail > 0 and k <= min(max_parts, MAX_PARTS) and 2 * k <= kv_blocks:
        cost = cdiv(tail * k, ctas) * (cdiv(kv_blocks, k) + part_cost)
        if cost < best_cost:
            best, best_cost = k, cost
        k += 1
    return best


def launch_tiles(split: dict, params) -> int:
    """The launch's query tiles (the persistent walk's grid: query blocks x heads x sequences)."""
    return cdiv(params.max_seqlen_q, split["block_m"]) * params.heads_q * params.batch


def launch_parts(split: dict, params, ctas: int) -> int:
    """Parts per tail tile for this launch (`split`: the entry's `split_tail` metadata, `params` its
    AttnParams, `ctas` its grid). The kernel splits only without a mask or window. A metadata `parts`
    fixes the number (diagnostic builds that time one k)."""
    if params.causal or params.window_left > 0:
        return 1
    tiles = launch_tiles(split, params)
    if split.get("mode") == "stream":
        # split=stream: 2 shares the steps out (the kernel reads > 1); whole waves need no share
        return 2 if tiles % ctas else 1
    kv_blocks = cdiv(params.max_seqlen_k, split["block_n"])
    if split.get("parts"):
        return max(1, min(int(split["parts"]), MAX_PARTS, kv_blocks)) if tiles % ctas else 1
    return split_parts(tiles, ctas, kv_blocks, split.get("part_cost", 1), split.get("max_parts", MAX_PARTS))


def counter_bytes(ctas: int, warps: int) -> int:
    """The claim counter and the arrival counters, padded to where the parts start (SplitTail::parts_offset)."""
    return cdiv((1 + ctas * warps) * 4, 256) * 256


def workspace_bytes(split: dict, params, ctas: int, parts: int) -> int:
    """Bytes `tile_counter` must point to: the counters, and with parts > 1 every tail tile's parts."""
    head = counter_bytes(ctas, split["warps"])
    if parts <= 1:
        return head
    if split.get("mode") == "stream":  # split.cuh StreamTail: two part blocks a CTA
        return head + 2 * ctas * split["part_bytes"]
    return head + (launch_tiles(split, params) % ctas) * parts * split["part_bytes"]


def split_workspace(split: dict, params, ctas: int, stream):
    """Choose the parts (written into params.num_splits, which the kernel reads) and allocate their
    workspace on `stream` (a torch stream), its counters zeroed there. The caller keeps the tensor alive
    until the launch is enqueued (the caching allocator orders its reuse on that stream)."""
    import torch

    parts = launch_parts(split, params, ctas)
    params.num_splits = parts
    with torch.cuda.stream(stream):
        buf = torch.empty(workspace_bytes(split, params, ctas, parts), dtype=torch.uint8, device=stream.device)
        buf[: counter_bytes(ctas, split["warps"])].zero_()
    return buf
