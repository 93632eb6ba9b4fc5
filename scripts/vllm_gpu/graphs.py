"""(b) CUDA-graph capture and replay of the qimeng decode step, the way vLLM's full decode graphs use it.

One padded uniform-decode batch (8 slots) is captured with vLLM's capture metadata (max_seq_len =
max_model_len, padded requests with 0 tokens): the KV-cache write (do_kv_cache_update) and forward
go into one torch.cuda.CUDAGraph. Then, for several batches of real requests (fewer than 8, contexts
from 1 to max_model_len), the persistent metadata buffers, q and the new K/V are overwritten in
place, the cache is refilled, the graph is replayed, and the rows are compared with SDPA and with an
eager forward on freshly built metadata.

    python3 scripts/vllm_gpu/graphs.py --out OUT/vllm_cudagraph.json
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

from common import compare, reference_attention, split_kv, step_result, write_context

SLOTS = 8  # the captured batch size
MAX_MODEL_LEN = 17408


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("vllm_cudagraph.json"))
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--dtype", default="float16", choices=["float16", "bfloat16"])
    args = ap.parse_args()
    with step_result(args.out, "cudagraph", head_dim=args.head_dim, dtype=args.dtype) as result, \
            tempfile.TemporaryDirectory() as tmp:
        run(result, Path(tmp), args.head_dim, args.dtype)


def run(result: dict, tmp: Path, head_dim: int, dtype_name: str) -> None:
    import torch
    from vllm.plugins import load_general_plugins

    from qimeng_serve.vllm_plugin.backend import QimengAttentionBackend
    from qimeng_serve.vllm_plugin.batch import BatchSpec, make_batch
    from qimeng_serve.vllm_plugin.harness import (
        build_layers,
        new_builder,
        new_kv_cache,
        new_vllm_config,
        write_model_config,
    )

    load_general_plugins()
    dev, dtype = torch.device("cuda"), getattr(torch, dtype_name)
    heads, kv_heads, block_size = 8, 2, 16
    gen = torch.Generator(device=dev).manual_seed(0)
    config = new_vllm_config(write_model_config(tmp / "model", heads=heads, kv_heads=kv_heads, head_dim=head_dim),
                             dtype=dtype_name, max_model_len=MAX_MODEL_LEN, max_num_seqs=SLOTS, block_size=block_size)
    (layer,) = build_layers(config, 1, device=dev)
    builder = new_builder(QimengAttentionBackend, [layer], config, dev, block_size)
    blocks_per_req = MAX_MODEL_LEN // block_size
    num_blocks = 1 + SLOTS * blocks_per_req
    kv_cache = new_kv_cache(QimengAttentionBackend, num_blocks, block_size, kv_heads, head_dim, dtype, dev, config)
    k_cache, v_cache = split_kv(kv_cache, head_dim)

    # capture: vLLM's dummy uniform-decode batch, padded to SLOTS, max_seq_len = max_model_len
    capture = make_batch(BatchSpec((1,) * 3, (1,) * 3), block_size, dev, num_blocks=num_blocks, pad_reqs_to=SLOTS,
                         pad_tokens_to=SLOTS, max_seq_len=MAX_MODEL_LEN, table_width=blocks_per_req).metadata
    persistent = {"qsl": capture.query_start_loc, "seq_lens": capture.seq_lens, "table": capture.block_table_tensor,
                  "slots": capture.slot_mapping}
    table_width = persistent["table"].shape[1]
    result["table_width_at_capture"] = table_width
    query = torch.zeros(SLOTS, heads, head_dim, dtype=dtype, device=dev)
    key = torch.zeros(SLOTS, kv_heads, head_dim, dtype=dtype, device=dev)
    value = torch.zeros_like(key)
    output = torch.zeros(SLOTS, heads, head_dim, dtype=dtype, device=dev)
    metadata = builder.build_for_cudagraph_capture(capture)
    if metadata.decode is None or metadata.decode.num_reqs != SLOTS:
        raise RuntimeError(f"capture batch was not planned as {SLOTS} decodes: {metadata}")

    def step():
        layer.impl.do_kv_cache_update(layer, key, value, kv_cache, persistent["slots"])
        layer.impl.forward(layer, query, key, value, kv_cache, metadata, output)

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            step()  # warm-up outside capture: Triton JIT of the cache write, first kernel loads
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    result["captured"] = True

    rng = random.Random(0)
    scenarios = [(1, 17, 600, 4099, MAX_MODEL_LEN), tuple(rng.randint(1, MAX_MODEL_LEN) for _ in range(SLOTS)),
                 (3, 2), (MAX_MODEL_LEN,) * 2 + (513,)]
    failures = 0
    for n, seqs in enumerate(scenarios):
        real = len(seqs)
        spec = BatchSpec(tuple(seqs), (1,) * real)
        fresh = make_batch(spec, block_size, dev, num_blocks=num_blocks, pad_reqs_to=SLOTS, pad_tokens_to=SLOTS,
                           seed=100 + n).metadata
        if fresh.block_table_tensor.shape[1] > table_width:
            raise RuntimeError(f"scenario needs a table of width {fresh.block_table_tensor.shape[1]}, "
                               f"captured {table_width}")
        # overwrite the captured buffers in place, as vLLM's runner does before a replay
        persistent["qsl"].copy_(fresh.query_start_loc)
        persistent["seq_lens"].copy_(fresh.seq_lens)
        persistent["table"].zero_()
        persistent["table"][:, :fresh.block_table_tensor.shape[1]].copy_(fresh.block_table_tensor)
        persistent["slots"].copy_(fresh.slot_mapping)
        kv_cache.fill_(float("nan"))
        k_all = [torch.randn(s, kv_heads, head_dim, generator=gen, device=dev).to(dtype) for s in seqs]
        v_all = [torch.randn(s, kv_heads, head_dim, generator=gen, device=dev).to(dtype) for s in seqs]
        for i, s in enumerate(seqs):
            write_context(k_cache, v_cache, persistent["table"][i], k_all[i], v_all[i], block_size, s - 1)
            key[i], value[i] = k_all[i][-1], v_all[i][-1]
        query.copy_(torch.randn(SLOTS, heads, head_dim, generator=gen, device=dev).to(dtype))
        output.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        replayed = output[:real].clone()
        refs = torch.cat([reference_attention(query[i:i + 1], k_all[i], v_all[i], scale=head_dim ** -0.5)
                          for i in range(real)])
        stats = compare(replayed, refs, dtype)
        # the same step eagerly, with metadata built for this batch (exact max_seq_len, fewer splits)
        eager_md = builder.build(0, make_batch(spec, block_size, dev, num_blocks=num_blocks, seed=100 + n).metadata)
        output.fill_(float("nan"))
        layer.impl.forward(layer, query[:real], key[:real], value[:real], kv_cache, eager_md, output[:real])
        torch.cuda.synchronize()
        eager_diff = float((output[:real].float() - replayed.float()).abs().max())
        row = {"seq_lens": list(seqs), **stats, "graph_vs_eager_max_abs": eager_diff,
               "ok": stats["ok"] and eager_diff <= 1e-3}
        failures += not row["ok"]
        result.setdefault("replays", []).append(row)
        print(f"{'ok  ' if row['ok'] else 'FAIL'} replay {n} seq_lens={list(seqs)}: rel_l2 {stats['rel_l2']:.2e} "
              f"max_abs {stats['max_abs']:.2e} graph-vs-eager {eager_diff:.1e}", flush=True)
    if failures:
        result["status"] = "failed"


if __name__ == "__main__":
    main()
