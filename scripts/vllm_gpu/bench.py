"""(d) The attention forward of qimeng, TRITON_ATTN and FLASH_ATTN on the same batches, side by side.

Each backend gets vLLM Attention layers (so vLLM builds its impl), its own metadata builder and the
same CommonAttentionMetadata; all three read one shared KV cache (vLLM 0.26 gives them the same
layout, checked). Only impl.forward is timed: CUDA events on the current stream, L2 flushed before
every run, median of 20 after 3 warm-ups. Outputs are cross-checked against qimeng's (max abs diff).

Prefill rows: TFLOPS = 4 * D * Hq * (visible query-key pairs) / time (causal work only).
Decode rows: GB/s = bytes of K and V the batch must read / time. Mixed rows report both.

    python3 scripts/vllm_gpu/bench.py --out OUT/vllm_bench.json [--head-dims 128] [--dtype float16]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import (
    L2Flush,
    attention_pairs,
    kv_bytes,
    split_kv,
    step_result,
    time_cuda,
    write_context,
)

BATCHES = {  # name: (seq_lens, query_lens)
    "prefill 4x4096": ((4096,) * 4, (4096,) * 4),
    "chunked prefill 2x2048 on 8192": ((10240,) * 2, (2048,) * 2),
    "decode 64x4096": ((4096,) * 64, (1,) * 64),
    "decode 16x16384": ((16384,) * 16, (1,) * 16),
    "mixed 32x4096 decode + 2x1024 on 2048": ((4096,) * 32 + (3072,) * 2, (1,) * 32 + (1024,) * 2),
}
BACKENDS = ("QIMENG", "TRITON_ATTN", "FLASH_ATTN")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("vllm_bench.json"))
    ap.add_argument("--head-dims", default="128", help="comma-separated, e.g. 64,128,256")
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--dtype", default="float16", choices=["float16", "bfloat16"])
    ap.add_argument("--iters", type=int, default=20)
    args = ap.parse_args()
    with step_result(args.out, "bench", heads=args.heads, kv_heads=args.kv_heads, dtype=args.dtype) as result, \
            tempfile.TemporaryDirectory() as tmp:
        for head_dim in map(int, args.head_dims.split(",")):
            bench_head_dim(result, Path(tmp), head_dim, args)
        print_table(result["rows"])


def backend_class(name: str):
    if name == "QIMENG":
        from qimeng_serve.vllm_plugin.backend import QimengAttentionBackend

        return QimengAttentionBackend
    from vllm.v1.attention.backends.registry import AttentionBackendEnum

    return AttentionBackendEnum[name].get_class()


def bench_head_dim(result: dict, tmp: Path, head_dim: int, args) -> None:
    import torch
    from vllm.platforms.interface import DeviceCapability
    from vllm.plugins import load_general_plugins

    from qimeng_serve.vllm_plugin.batch import BatchSpec, make_batch
    from qimeng_serve.vllm_plugin.harness import (
        build_layers,
        new_builder,
        new_kv_cache,
        new_vllm_config,
        write_model_config,
    )

    load_general_plugins()
    dev, dtype = torch.device("cuda"), getattr(torch, args.dtype)
    heads, kv_heads, block_size, max_model_len = args.heads, args.kv_heads, 16, 17408
    cap = DeviceCapability(*torch.cuda.get_device_capability())
    flush = L2Flush()
    # one config, layers, builder per backend (each backend's layer names live in its own config)
    setups = {}
    for name in BACKENDS:
        try:
            cls = backend_class(name)
            reasons = cls.validate_configuration(head_size=head_dim, dtype=dtype, kv_cache_dtype="auto",
                                                 block_size=block_size, use_mla=False, has_sink=False,
                                                 use_sparse=False, use_mm_prefix=False,
                                                 use_per_head_quant_scales=False, device_capability=cap,
                                                 attn_type="decoder")
            if reasons:
                raise RuntimeError("; ".join(reasons))
            model = write_model_config(tmp / f"{name}-{head_dim}", heads=heads, kv_heads=kv_heads, head_dim=head_dim)
            config = new_vllm_config(model, dtype=args.dtype, max_model_len=max_model_len, max_num_seqs=128,
                                     block_size=block_size)
            (layer,) = build_layers(config, 1, backend=cls, device=dev)
            setups[name] = (cls, layer, new_builder(cls, [layer], config, dev, block_size), config)
        except Exception as exc:  # noqa: BLE001  (a backend this GPU or build lacks is a row, not a crash)
            result.setdefault("skipped", []).append(f"{name} D={head_dim}: {type(exc).__name__}: {exc}"[:500])
            print(f"skip {name} D={head_dim}: {exc}", flush=True)
    if not setups:
        raise RuntimeError(f"no backend could be set up for D={head_dim}: {result.get('skipped')}")
    gen = torch.Generator(device=dev).manual_seed(0)
    for batch_name, (seqs, queries) in BATCHES.items():
        spec = BatchSpec(seqs, queries, batch_name)
        batch = make_batch(spec, block_size, dev, table_width=max_model_len // block_size)
        cam = batch.metadata
        shapes = {n: s[0].get_kv_cache_shape(batch.num_blocks, block_size, kv_heads, head_dim) for n, s in setups.items()}
        if len(set(shapes.values())) > 1:
            raise RuntimeError(f"backends disagree on the KV-cache shape: {shapes}")
        any_config = next(iter(setups.values()))[3]
        kv_cache = new_kv_cache(backend_class("QIMENG"), batch.num_blocks, block_size, kv_heads, head_dim, dtype, dev,
                                any_config)
        k_cache, v_cache = split_kv(kv_cache, head_dim)
        for i, s in enumerate(seqs):
            k = torch.randn(s, kv_heads, head_dim, generator=gen, device=dev).to(dtype)
            write_context(k_cache, v_cache, cam.block_table_tensor[i], k, torch.randn_like(k), block_size, s)
        tokens = cam.num_actual_tokens
        query = torch.randn(tokens, heads, head_dim, generator=gen, device=dev).to(dtype)
        key = torch.randn(tokens, kv_heads, head_dim, generator=gen, device=dev).to(dtype)
        pairs = attention_pairs(seqs, queries)
        decode_seqs = [s for s, q in zip(seqs, queries) if q == 1]
        outputs = {}
        for name, (_, layer, builder, _) in setups.items():
            metadata = builder.build(0, cam)
            output = torch.empty(tokens, heads, head_dim, dtype=dtype, device=dev)

            def fwd(layer=layer, metadata=metadata, output=output, query=query, key=key, kv_cache=kv_cache):
                layer.impl.forward(layer, query, key, key, kv_cache, metadata, output)

            try:
                t = time_cuda(fwd, iters=args.iters, flush=flush)
            except Exception as exc:  # noqa: BLE001  (record the failing backend, keep measuring the others)
                result.setdefault("skipped", []).append(f"{name} {batch_name}: {type(exc).__name__}: {exc}"[:500])
                continue
            outputs[name] = output
            seconds = t["ms_median"] / 1e3
            row = {"head_dim": head_dim, "batch": batch_name, "backend": name, **t,
                   "tflops": 4 * head_dim * heads * pairs / seconds / 1e12}
            if decode_seqs:
                row["kv_gbps"] = kv_bytes(seqs, kv_heads, head_dim, dtype) / seconds / 1e9
            if name == "QIMENG":  # which of the bundle's kernels ran (the sm90a one on an H100, if it fits)
                row["kernel"] = layer.impl.artifact.kernels().last_kernel
            result.setdefault("rows", []).append(row)
        if "QIMENG" in outputs:
            for name, out in outputs.items():
                diff = float((out.float() - outputs["QIMENG"].float()).abs().max())
                for row in result["rows"]:
                    if row["batch"] == batch_name and row["backend"] == name and row["head_dim"] == head_dim:
                        row["max_abs_vs_qimeng"] = diff
        outputs.clear()
        kv_cache = k_cache = v_cache = None  # free this batch's cache before the next one is allocated
        torch.cuda.empty_cache()


def print_table(rows: list[dict]) -> None:
    print(f"\n{'D':>4} {'batch':<40} {'backend':<12} {'ms':>8} {'TFLOPS':>8} {'GB/s':>8} {'vs qimeng':>10}")
    for r in rows:
        gbps = f"{r['kv_gbps']:8.0f}" if "kv_gbps" in r else " " * 8
        print(f"{r['head_dim']:>4} {r['batch']:<40} {r['backend']:<12} {r['ms_median']:8.3f} {r['tflops']:8.1f} "
              f"{gbps} {r.get('max_abs_vs_qimeng', float('nan')):10.2e}")


if __name__ == "__main__":
    main()
