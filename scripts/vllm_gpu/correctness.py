"""(a) The qimeng backend against torch SDPA, on vLLM's own data structures.

Every case builds vLLM Attention layers on the backend (so vLLM constructs the impl), the backend's
metadata builder, vLLM's CommonAttentionMetadata with a shuffled block table, and a KV cache in
vLLM's layout poisoned with NaN outside the written positions. The context K/V go into the cache
directly; the new tokens' K/V go through the impl's do_kv_cache_update (vLLM's own cache-write
kernel), then forward runs on a NaN-poisoned output. Rows are compared with an fp32 SDPA reference
per request. Cases: decode-only, prefill-only (fresh and chunked), mixed, CUDA-graph-style padded
decode, a sliding window, GQA 1/4/8 (and 32, which decodes through prefill), page sizes 16 and 32,
odd lengths (1, 17, 127, 129, 1000, 4099), every head size and dtype the registry serves here.

    python3 scripts/vllm_gpu/correctness.py --out OUT/vllm_correctness.json [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import (
    compare,
    read_context,
    reference_attention,
    split_kv,
    step_result,
    write_context,
)

BATCHES = {
    "decode": ((1, 17, 127, 128, 129, 1000, 4099), (1, 1, 1, 1, 1, 1, 1)),
    "prefill": ((1, 17, 129, 1000), (1, 17, 129, 1000)),
    "chunked_prefill": ((700, 4099, 33), (200, 1000, 33)),
    "mixed": ((1000, 33, 4099, 17, 300, 2000), (1, 1, 1, 17, 45, 513)),
}
GQA = ((8, 8), (8, 2), (16, 2))  # groups 1, 4, 8


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("vllm_correctness.json"))
    ap.add_argument("--quick", action="store_true", help="one GQA ratio and page size per head size")
    ap.add_argument("--allow-empty", action="store_true",
                    help="a registry with nothing for this GPU is 'skipped', not a failure")
    args = ap.parse_args()
    with step_result(args.out, "correctness") as result:
        run(result, args.quick, args.allow_empty)


def run(result: dict, quick: bool, allow_empty: bool = False) -> None:
    import torch
    from vllm.plugins import load_general_plugins

    from qimeng_serve.errors import QimengError
    from qimeng_serve.vllm_plugin import artifacts

    load_general_plugins()
    capability = artifacts.device_capability()
    dtypes = [torch.float16] + ([torch.bfloat16] if capability >= artifacts.BF16_CAPABILITY else [])
    result["capability_served"] = list(capability)
    cases, served = [], []
    for dtype in dtypes:
        for head_dim in (64, 128, 256):
            try:
                art = artifacts.serving_artifact(capability, dtype, head_dim)
            except QimengError as exc:
                result.setdefault("not_served", []).append(f"{dtype} D={head_dim}: {exc.message.splitlines()[0]}")
                continue
            served.append({"dtype": str(dtype), "head_dim": head_dim, "bundle": art.bundle_path.name, "how": art.how,
                           "decode": art.plan.has_decode})
            for heads, kv_heads in (GQA[1:2] if quick else GQA):
                for block_size in ((16,) if quick or (heads, kv_heads) != (8, 2) else (16, 32)):
                    for name, (seqs, queries) in BATCHES.items():
                        cases.append({"dtype": dtype, "head_dim": head_dim, "heads": heads, "kv_heads": kv_heads,
                                          "block_size": block_size, "batch": name, "seqs": seqs, "queries": queries})
                if (heads, kv_heads) == (8, 2):
                    cases.append({"dtype": dtype, "head_dim": head_dim, "heads": 8, "kv_heads": 2, "block_size": 16,
                                      "batch": "graph_padded_decode", "seqs": (5, 77, 1025), "queries": (1, 1, 1), "pad": 8})
                    cases.append(dict(dtype=dtype, head_dim=head_dim, heads=8, kv_heads=2, block_size=16,
                                      batch="mixed_window256", window=256, **_batch("mixed")))
            if head_dim == 128 and not quick:
                cases.append(dict(dtype=dtype, head_dim=128, heads=32, kv_heads=1, block_size=16,
                                  batch="mixed_gqa32", **_batch("mixed")))
            for cap in _softcaps(dtype):  # soft-capped kernel sets in the registry (Gemma 2 style models)
                try:
                    artifacts.serving_artifact(capability, dtype, head_dim, artifacts.kernel_set_for(cap))
                except QimengError:
                    continue
                cases.append(dict(dtype=dtype, head_dim=head_dim, heads=8, kv_heads=2, block_size=16,
                                  batch=f"mixed_softcap{cap:g}", softcap=cap, **_batch("mixed")))
    result["served"] = served
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for n, case in enumerate(cases):
            row = run_case(Path(tmp) / f"m{n}", seed=n, **case)
            failures += not row["ok"]
            result.setdefault("cases", []).append(row)
            print(f"{'ok  ' if row['ok'] else 'FAIL'} {row['case']}: rel_l2 {row['rel_l2']:.2e} max_abs "
                  f"{row['max_abs']:.2e} nan {row['nan']} kv_write {row['kv_write_ok']}", flush=True)
    result["checked"], result["failed"] = len(cases), failures
    if not cases:
        result["status"] = "skipped" if allow_empty else "failed"
        result["error"] = "the registry serves nothing on this GPU"
    elif failures:
        result["status"] = "failed"


def _softcaps(dtype) -> list[float]:
    """The soft-caps the registry has kernel sets for (names `softcap<cap>`), for this dtype."""
    import os

    from qimeng_serve.env import default_registry
    from qimeng_serve.registry.index import read_index
    from qimeng_serve.vllm_plugin.artifacts import dtype_name

    if os.environ.get("QIMENG_REPO"):
        return []
    index = read_index(default_registry() / "index.json")
    return sorted({float(e["kernel_set"][len("softcap"):]) for e in index["bundles"]
                   if e["kernel_set"].startswith("softcap") and e["dtype"] == dtype_name(dtype)})


def _batch(name: str) -> dict:
    seqs, queries = BATCHES[name]
    return {"seqs": seqs, "queries": queries}


def run_case(model_dir: Path, *, dtype, head_dim: int, heads: int, kv_heads: int, block_size: int, batch: str,
             seqs, queries, pad: int = 0, window: int = 0, softcap: float = 0.0, seed: int = 0,
             device: str = "cuda") -> dict:
    import torch

    from qimeng_serve.vllm_plugin.backend import QimengAttentionBackend
    from qimeng_serve.vllm_plugin.batch import BatchSpec, make_batch
    from qimeng_serve.vllm_plugin.harness import (
        build_layers,
        new_builder,
        new_kv_cache,
        new_vllm_config,
        write_model_config,
    )

    label = (f"{str(dtype).split('.')[-1]} D={head_dim} Hq={heads} Hkv={kv_heads} page={block_size} {batch}"
             + (f" window={window}" if window else "") + (f" softcap={softcap:g}" if softcap else ""))
    dev = torch.device(device)
    gen = torch.Generator(device=dev).manual_seed(seed)
    max_model_len = 8192
    write_model_config(model_dir, heads=heads, kv_heads=kv_heads, head_dim=head_dim)
    config = new_vllm_config(model_dir, dtype=str(dtype).split(".")[-1], max_model_len=max_model_len,
                             block_size=block_size, device=None if dev.type == "cuda" else dev.type)
    kwargs = {"per_layer_sliding_window": window} if window else {}
    if softcap:
        kwargs["logits_soft_cap"] = softcap
    (layer,) = build_layers(config, 1, device=dev, **kwargs)
    builder = new_builder(QimengAttentionBackend, [layer], config, dev, block_size)
    spec = BatchSpec(tuple(seqs), tuple(queries), batch)
    pad_kwargs = {"pad_reqs_to": pad, "pad_tokens_to": pad, "max_seq_len": max_model_len} if pad else {}
    b = make_batch(spec, block_size, dev, seed=seed, **pad_kwargs)
    cam = b.metadata
    kv_cache = new_kv_cache(QimengAttentionBackend, b.num_blocks, block_size, kv_heads, head_dim, dtype, dev, config)
    kv_cache.fill_(float("nan"))  # a kernel that reads past a sequence's end shows up as NaN
    k_cache, v_cache = split_kv(kv_cache, head_dim)
    table = cam.block_table_tensor
    k_all = [torch.randn(s, kv_heads, head_dim, generator=gen, device=dev).to(dtype) for s in seqs]
    v_all = [torch.randn(s, kv_heads, head_dim, generator=gen, device=dev).to(dtype) for s in seqs]
    for i, (s, q) in enumerate(zip(seqs, queries)):
        write_context(k_cache, v_cache, table[i], k_all[i], v_all[i], block_size, s - q)
    tokens = cam.num_actual_tokens
    key = torch.randn(tokens, kv_heads, head_dim, generator=gen, device=dev).to(dtype)  # padded rows: junk
    value = torch.randn(tokens, kv_heads, head_dim, generator=gen, device=dev).to(dtype)
    qsl = cam.query_start_loc_cpu
    for i, (s, q) in enumerate(zip(seqs, queries)):
        key[qsl[i]:qsl[i] + q] = k_all[i][s - q:]
        value[qsl[i]:qsl[i] + q] = v_all[i][s - q:]
    query = torch.randn(tokens, heads, head_dim, generator=gen, device=dev).to(dtype)
    output = torch.full((tokens, heads, head_dim), float("nan"), dtype=dtype, device=dev)
    metadata = (builder.build_for_cudagraph_capture(cam) if pad else builder.build(0, cam))
    layer.impl.do_kv_cache_update(layer, key, value, kv_cache, cam.slot_mapping)
    layer.impl.forward(layer, query, key, value, kv_cache, metadata, output)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    outs, refs, kv_ok = [], [], True
    for i, (s, q) in enumerate(zip(seqs, queries)):
        k_back, v_back = read_context(k_cache, v_cache, table[i], s, block_size)
        kv_ok &= bool(torch.equal(k_back, k_all[i]) and torch.equal(v_back, v_all[i]))
        outs.append(output[qsl[i]:qsl[i] + q])
        refs.append(reference_attention(query[qsl[i]:qsl[i] + q], k_all[i], v_all[i], scale=head_dim ** -0.5,
                                        window=window, softcap=softcap))
    stats = compare(torch.cat(outs), torch.cat(refs), dtype)
    split = [metadata.decode.num_reqs if metadata.decode else 0, metadata.prefill.num_reqs if metadata.prefill else 0]
    return {"case": label, **stats, "kv_write_ok": kv_ok, "ok": stats["ok"] and kv_ok, "decode_prefill_reqs": split,
            "bundle": layer.impl.artifact.bundle_path.name}


if __name__ == "__main__":
    main()
