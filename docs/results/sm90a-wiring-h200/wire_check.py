"""GPU check of the sm90a wiring (KernelSet picks, fallbacks, graphs, a few timings). Not shipped."""

import json
import math
import os
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, os.getcwd())
import torch  # noqa: E402

from qimeng_serve.bench import Timer  # noqa: E402
from qimeng_serve.runtime.loader import num_sms  # noqa: E402
from qimeng_serve.runtime.ops import KernelSet  # noqa: E402
from qimeng_serve.validate import reference, rel_l2  # noqa: E402

BUNDLE = Path(".device/reg-wire/sm_90/bf16/qimeng-default-sm_90-bf16.safetensors")
OUT = Path(os.environ.get("OUT", "/tmp")) / "wire.json"
res: dict = {"device": torch.cuda.get_device_name(), "capability": list(torch.cuda.get_device_capability())}
dt = torch.bfloat16
gen = torch.Generator(device="cuda").manual_seed(0)


def save():
    OUT.write_text(json.dumps(res, indent=1, default=str))


def step(name):
    def wrap(fn):
        t0 = time.time()
        try:
            res[name] = fn()
        except Exception as exc:  # noqa: BLE001
            res[name] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-3000:]}
        res[name + "_s"] = round(time.time() - t0, 2)
        print(name, json.dumps(res[name], default=str)[:1500], flush=True)
        save()
        return fn
    return wrap


def paged(seqs, page, hkv, group, d):
    blocks = [math.ceil(lk / page) for _, lk in seqs]
    total = sum(blocks) + 3
    kc = torch.randn(total, page, hkv, d, generator=gen, device="cuda").to(dt)
    vc = torch.randn(total, page, hkv, d, generator=gen, device="cuda").to(dt)
    perm = torch.randperm(total, generator=gen, device="cuda").to(torch.int32)
    table = torch.zeros(len(seqs), max(blocks), dtype=torch.int32, device="cuda")
    at = 0
    for b, n in enumerate(blocks):
        table[b, :n] = perm[at:at + n]
        at += n
    lq = [q for q, _ in seqs]
    cu = torch.tensor([0] + [sum(lq[:i + 1]) for i in range(len(lq))], dtype=torch.int32, device="cuda")
    q = torch.randn(sum(lq), hkv * group, d, generator=gen, device="cuda").to(dt)
    seqlens = torch.tensor([lk for _, lk in seqs], dtype=torch.int32, device="cuda")
    return q, kc, vc, table, cu, seqlens


def paged_err(q, kc, vc, table, cu, seqlens, seqs, page, out, d):
    outs, refs = [], []
    for b, (lq, lk) in enumerate(seqs):
        idx = table[b, :math.ceil(lk / page)].long()
        k = kc[idx].flatten(0, 1)[:lk].permute(1, 0, 2)
        v = vc[idx].flatten(0, 1)[:lk].permute(1, 0, 2)
        refs.append(reference(q[cu[b]:cu[b + 1]].permute(1, 0, 2), k, v, causal=True, scale=d ** -0.5))
        outs.append(out[cu[b]:cu[b + 1]].permute(1, 0, 2))
    return rel_l2(torch.cat([o.flatten() for o in outs]), torch.cat([r.flatten() for r in refs]))


ks = KernelSet(BUNDLE)


@step("loaded")
def _():
    return {"methods": {n: k.method for n, k in ks.kernels.items()}, "skipped": ks.skipped, "num_sms": num_sms(0)}


@step("dense_pick")
def _():
    out = {}
    for d in (64, 128):
        q = torch.randn(2, 8, 1000, d, generator=gen, device="cuda").to(dt)
        k = torch.randn(2, 2, 1000, d, generator=gen, device="cuda").to(dt)
        v = torch.randn(2, 2, 1000, d, generator=gen, device="cuda").to(dt)
        o = torch.full_like(q, float("nan"))
        ks.dense_prefill(q, k, v, causal=True, out=o)
        torch.cuda.synchronize()
        ref = torch.stack([reference(q[i], k[i], v[i], causal=True, scale=d ** -0.5) for i in range(2)])
        fast = ks.last_kernel
        # q whose storage starts 2 bytes in: TMA cannot take it, the portable kernel must
        qu = torch.empty(q.numel() + 1, dtype=dt, device="cuda")[1:].view_as(q).copy_(q)
        o2 = torch.full_like(q, float("nan"))
        try:
            ks.dense_prefill(qu, k, v, causal=True, out=o2)
            refused = ""
        except Exception as exc:  # noqa: BLE001
            refused = str(exc)
        torch.cuda.synchronize()
        out[d] = {"aligned": fast, "err": rel_l2(o, ref), "unaligned_refused": refused}
    return out


@step("paged_pick")
def _():
    out = {}
    seqs = [(1, 1), (17, 17), (127, 300), (129, 1000), (60, 4099)]
    for d in (64, 128):
        for page in (16, 64, 256, 12, 24):
            q, kc, vc, table, cu, seqlens = paged(seqs, page, 2, 4, d)
            o = torch.full_like(q, float("nan"))
            ks.paged_prefill(q, kc, vc, table, cu, seqlens, max(s[0] for s in seqs), max(s[1] for s in seqs), out=o)
            torch.cuda.synchronize()
            out[f"d{d}_page{page}"] = {"kernel": ks.last_kernel, "err": paged_err(q, kc, vc, table, cu, seqlens, seqs, page, o, d)}
    # vLLM's layout: K and V are halves of one [blocks, 2, page, Hkv, D] cache; maps cached per tensor
    d, page = 128, 16
    before = len(ks._kv_maps)
    q, kc, vc, table, cu, seqlens = paged(seqs, page, 2, 4, d)
    both = torch.stack([kc, vc], 1)
    kc, vc = both[:, 0], both[:, 1]
    for _ in range(3):
        o = torch.full_like(q, float("nan"))
        ks.paged_prefill(q, kc, vc, table, cu, seqlens, max(s[0] for s in seqs), max(s[1] for s in seqs), out=o)
    torch.cuda.synchronize()
    out["vllm_halves"] = {"kernel": ks.last_kernel, "err": paged_err(q, kc, vc, table, cu, seqlens, seqs, page, o, d),
                          "kv_maps_added": len(ks._kv_maps) - before}
    return out


@step("decode")
def _():
    seqs = [(1, 17), (1, 1000), (1, 4099)]
    q, kc, vc, table, cu, seqlens = paged(seqs, 16, 2, 4, 128)
    o = torch.full_like(q, float("nan"))
    ks.paged_decode(q, kc, vc, table, cu, seqlens, 1, 4099, out=o)
    torch.cuda.synchronize()
    return {"kernel": ks.last_kernel, "err": paged_err(q, kc, vc, table, cu, seqlens, seqs, 16, o, 128)}


@step("graph")
def _():
    seqs = [(100, 1000), (60, 4099)]
    d, page = 128, 16
    q, kc, vc, table, cu, seqlens = paged(seqs, page, 2, 4, d)
    o = torch.empty_like(q)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        ks.paged_prefill(q, kc, vc, table, cu, seqlens, 100, 4099, out=o)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        ks.paged_prefill(q, kc, vc, table, cu, seqlens, 100, 4099, out=o)
    picked = ks.last_kernel
    q.copy_(torch.randn(q.shape, generator=gen, device="cuda").to(dt))
    o.fill_(float("nan"))
    g.replay()
    torch.cuda.synchronize()
    return {"kernel": picked, "err_after_replay": paged_err(q, kc, vc, table, cu, seqlens, seqs, page, o, d)}


@step("timing")
def _():
    timer = Timer(runs=10)
    rows = []
    b, h, L = 4, 16, 4096
    for d in (64, 128):
        for causal in (False, True):
            q = torch.randn(b, h, L, d, device="cuda", dtype=dt)
            k, v = torch.randn_like(q), torch.randn_like(q)
            o = torch.empty_like(q)
            flops = 4 * b * h * L * L * d / (2 if causal else 1)
            row = {"op": "dense", "d": d, "causal": causal}
            for name, kern in ks.kernels.items():
                if kern.meta["family"] == "dense_prefill" and kern.meta["spec"]["head_dim"] == d:
                    with ks.pinned(name):
                        ms = timer.median_ms(lambda: ks.dense_prefill(q, k, v, causal=causal, out=o))
                    row[kern.meta.get("variant", "portable")] = round(flops / ms / 1e9, 1)
            ms = timer.median_ms(lambda: ks.dense_prefill(q, k, v, causal=causal, out=o))
            row["default"], row["default_kernel"] = round(flops / ms / 1e9, 1), ks.last_kernel
            rows.append(row)
            print(row, flush=True)
        seqs = [(L, L)] * b
        q, kc, vc, table, cu, seqlens = paged(seqs, 16, h, 1, d)
        o = torch.empty_like(q)
        flops = 4 * b * h * L * L * d / 2
        row = {"op": "paged page 16", "d": d, "causal": True}
        for name, kern in ks.kernels.items():
            if kern.meta["family"] == "paged_prefill" and kern.meta["spec"]["head_dim"] == d:
                with ks.pinned(name):
                    ms = timer.median_ms(lambda: ks.paged_prefill(q, kc, vc, table, cu, seqlens, L, L, out=o))
                row[kern.meta.get("variant", "portable")] = round(flops / ms / 1e9, 1)
        ms = timer.median_ms(lambda: ks.paged_prefill(q, kc, vc, table, cu, seqlens, L, L, out=o))
        row["default"], row["default_kernel"] = round(flops / ms / 1e9, 1), ks.last_kernel
        # host cost of one call (maps encoded for Q each call; K/V from the cache)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        q1, o1 = q[:1].clone(), o[:1].clone()
        cu1 = torch.tensor([0, 1], dtype=torch.int32, device="cuda")
        for _ in range(200):
            ks.paged_prefill(q1, kc, vc, table[:1], cu1, seqlens[:1], 1, L, out=o1)
        row["host_us_per_call_tiny"] = round((time.perf_counter() - t0) / 200 * 1e6, 1)
        torch.cuda.synchronize()
        rows.append(row)
        print(row, flush=True)
    return rows


@step("bench_rows")
def _():
    from qimeng_serve.bench import bench_dense

    timer = Timer(runs=5)
    roof = {"matmul_bf16_tflops": 800.0, "copy_gbps": 3000.0, "read_gbps": 3000.0}
    r = bench_dense(ks, timer, "sweep", "bf16", 4, 16, 16, 2048, 128, True, roof, False)
    return {"kernel": r.kernel, "ours": r.ours, "fa2": r.fa2, "cudnn": r.cudnn}


@step("no_sm90a")
def _():
    os.environ["QIMENG_NO_SM90A"] = "1"
    try:
        ks2 = KernelSet(BUNDLE)
    finally:
        del os.environ["QIMENG_NO_SM90A"]
    q = torch.randn(1, 8, 300, 128, device="cuda", dtype=dt)
    ks2.dense_prefill(q, q[:, :2], q[:, :2], causal=True)
    return {"loaded": sorted(ks2.kernels), "skipped": ks2.skipped, "dense_ran": ks2.last_kernel}


save()
print("done", flush=True)
