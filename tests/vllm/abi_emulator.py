"""The paged half of runtime.ops.KernelSet on the CPU, to the letter of the kernel ABI (docs/kernels.md).

It takes exactly the arguments the plugin hands the real kernels (views of vLLM's tensors, absolute
query offsets, max lengths) and computes what the grid those arguments launch would compute: a
sequence's query rows beyond `max_seqlen_q`, or keys beyond `max_seqlen_k` for split-KV decode, are
never reached by the real kernels, so they are refused here too, as are the checks ops.py makes
(dtype, decode rows, workspace splits). It stands in for the cubins only where no GPU exists; the
GPU scripts run the real ones.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from unittest import mock

import torch

# the reference, cache filling and comparison the GPU scripts use (scripts/ is not a package)
_COMMON = Path(__file__).resolve().parents[2] / "scripts" / "vllm_gpu" / "common.py"
_spec = importlib.util.spec_from_file_location("qimeng_vllm_gpu_common", _COMMON)
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)

_TORCH_DTYPE = {"f16": torch.float16, "bf16": torch.bfloat16}


class EmulatedKernelSet:
    def __init__(self, plan):
        self.plan = plan
        self.calls: list[dict] = []

    def paged_prefill(self, q, k_cache, v_cache, block_table, cu_seqlens_q, seqlens_k, max_seqlen_q, max_seqlen_k,
                      *, causal=True, softmax_scale=None, window=0, softcap=0.0, out=None):
        self._attend("paged_prefill", q, k_cache, v_cache, block_table, cu_seqlens_q, seqlens_k, max_seqlen_q,
                     max_seqlen_k, causal, softmax_scale, window, softcap, out)
        return out

    def paged_decode(self, q, k_cache, v_cache, block_table, cu_seqlens_q, seqlens_k, max_seqlen_q, max_seqlen_k,
                     *, causal=True, softmax_scale=None, window=0, softcap=0.0, workspace=None, out=None):
        group = q.shape[1] // k_cache.shape[2]
        assert group * max_seqlen_q <= self.plan.decode_rows, "ops.paged_decode refuses this (rows)"
        splits = math.ceil(max_seqlen_k / self.plan.decode_split)
        assert workspace is not None and workspace[0].shape[0] >= splits, "ops.paged_decode refuses this (workspace)"
        # o_partial and lse are indexed [split, t, head] with t < total_q = cu_seqlens_q[batch]
        total_q = int(cu_seqlens_q[block_table.shape[0]])
        assert workspace[0].numel() >= splits * total_q * q.shape[1] * q.shape[2], "workspace too small for total_q"
        self._attend("paged_decode", q, k_cache, v_cache, block_table, cu_seqlens_q, seqlens_k, max_seqlen_q,
                     max_seqlen_k, causal, softmax_scale, window, softcap, out)
        return out

    def _attend(self, op, q, k_cache, v_cache, block_table, cu_seqlens_q, seqlens_k, max_seqlen_q, max_seqlen_k,
                causal, softmax_scale, window, softcap, out):
        assert q.dtype == _TORCH_DTYPE[self.plan.dtype], "ops refuses a dtype the bundle was not built for"
        assert q.stride(-1) == 1 and k_cache.stride(-1) == 1 and out.stride(-1) == 1
        assert float(softcap) == self.plan.softcap, "ops refuses a soft-cap the kernels were not compiled for"
        assert causal, "the plugin always runs causal attention"
        batch, page = block_table.shape[0], k_cache.shape[1]
        assert cu_seqlens_q.numel() >= batch + 1 and seqlens_k.numel() >= batch
        scale = softmax_scale if softmax_scale is not None else q.shape[-1] ** -0.5
        rows = []
        for b in range(batch):  # grid z
            q0, q1, lk = int(cu_seqlens_q[b]), int(cu_seqlens_q[b + 1]), int(seqlens_k[b])
            lq = q1 - q0
            assert lq <= max_seqlen_q, f"{op}: sequence {b} has {lq} query rows, the grid covers {max_seqlen_q}"
            assert op == "paged_prefill" or lk <= max_seqlen_k, f"{op}: {lk} keys, the splits cover {max_seqlen_k}"
            if lq == 0:
                continue
            pos = torch.arange(lk)
            blocks = block_table[b, pos // page].long()
            k, v = k_cache[blocks, pos % page].double(), v_cache[blocks, pos % page].double()  # [lk, Hkv, D]
            out[q0:q1] = _attention(q[q0:q1].double(), k, v, scale, window, softcap).to(out.dtype)
            rows.append((q0, q1, lk))
        self.calls.append({"op": op, "batch": batch, "rows": rows, "max_seqlen_q": max_seqlen_q,
                           "max_seqlen_k": max_seqlen_k})


def _attention(q, k, v, scale, window, softcap):
    lq, hq, _ = q.shape
    lk, hkv, _ = k.shape
    k, v = k.repeat_interleave(hq // hkv, 1), v.repeat_interleave(hq // hkv, 1)
    s = torch.einsum("ihd,jhd->hij", q, k) * scale
    if softcap:
        s = softcap * torch.tanh(s / softcap)
    i = torch.arange(lq)[:, None] + (lk - lq)
    j = torch.arange(lk)[None, :]
    visible = (j <= i) & ((j > i - window) if window else True)
    s = s.masked_fill(~visible, float("-inf"))
    return torch.einsum("hij,jhd->ihd", torch.softmax(s, -1).nan_to_num(0.0), v)


def emulated_forward(config, seqs, queries, *, block_size=16, window=0, softcap=0.0, pad=0, seed=0):
    """One layer's forward on a described batch with emulated kernels; (stats vs SDPA, kernel calls,
    output rows past the real tokens)."""
    from qimeng_serve.vllm_plugin.backend import QimengAttentionBackend
    from qimeng_serve.vllm_plugin.batch import BatchSpec, make_batch
    from qimeng_serve.vllm_plugin.harness import build_layers, new_builder, new_kv_cache

    mc = config.model_config
    heads, kv_heads, d = mc.get_num_attention_heads(config.parallel_config), \
        mc.get_num_kv_heads(config.parallel_config), mc.get_head_size()
    kwargs = ({"per_layer_sliding_window": window} if window else {}) | ({"logits_soft_cap": softcap} if softcap else {})
    (layer,) = build_layers(config, 1, **kwargs)
    builder = new_builder(QimengAttentionBackend, [layer], config, "cpu", block_size)
    emulator = EmulatedKernelSet(layer.impl.artifact.plan)
    gen = torch.Generator().manual_seed(seed)
    pad_kwargs = {"pad_reqs_to": pad, "pad_tokens_to": pad, "max_seq_len": mc.max_model_len} if pad else {}
    batch = make_batch(BatchSpec(tuple(seqs), tuple(queries)), block_size, "cpu", seed=seed, **pad_kwargs)
    cam = batch.metadata
    kv_cache = new_kv_cache(QimengAttentionBackend, batch.num_blocks, block_size, kv_heads, d, torch.float16, "cpu",
                            config)
    kv_cache.fill_(float("nan"))
    k_cache, v_cache = common.split_kv(kv_cache, d)
    k_all = [torch.randn(s, kv_heads, d, generator=gen).half() for s in seqs]
    v_all = [torch.randn(s, kv_heads, d, generator=gen).half() for s in seqs]
    qsl = cam.query_start_loc_cpu
    key = torch.zeros(cam.num_actual_tokens, kv_heads, d, dtype=torch.float16)
    value = torch.zeros_like(key)
    for i, (s, q) in enumerate(zip(seqs, queries)):
        common.write_context(k_cache, v_cache, cam.block_table_tensor[i], k_all[i], v_all[i], block_size, s - q)
        key[qsl[i]:qsl[i] + q], value[qsl[i]:qsl[i] + q] = k_all[i][s - q:], v_all[i][s - q:]
    # the new tokens' K/V reach the cache through vLLM's slot mapping, as its cache-write kernel does
    real = cam.slot_mapping >= 0
    k_cache.flatten(0, 1)[cam.slot_mapping[real]] = key[real]
    v_cache.flatten(0, 1)[cam.slot_mapping[real]] = value[real]
    query = torch.randn(cam.num_actual_tokens, heads, d, generator=gen).half()
    output = torch.full_like(query, float("nan"))
    metadata = builder.build_for_cudagraph_capture(cam) if pad else builder.build(0, cam)
    with mock.patch.object(layer.impl.artifact, "kernels", lambda: emulator):  # the artifact is process-wide
        layer.impl.forward(layer, query, key, value, kv_cache, metadata, output)
    outs, refs = [], []
    for i, (s, q) in enumerate(zip(seqs, queries)):
        outs.append(output[qsl[i]:qsl[i] + q])
        refs.append(common.reference_attention(query[qsl[i]:qsl[i] + q], k_all[i], v_all[i], scale=d ** -0.5,
                                               window=window, softcap=softcap))
    stats = common.compare(torch.cat(outs), torch.cat(refs), torch.float16)
    return stats, emulator.calls, output[int(qsl[len(seqs)]):]
