#!/usr/bin/env python
"""GPU check of the Hopper (sm_90a) dense prefill kernels lowered from kernels_src/tl/dense_prefill_sm90.tl.

On an H100/H200:
    python scripts/hopper_check.py                  # build if needed, validate, time; JSON into $OUT
    python scripts/hopper_check.py --build          # rebuild the cubins first (needs nvcc)
    python scripts/hopper_check.py --quick          # fewer cases and lengths

Steps, each recorded (and the report rewritten) whether it works or fails, so one run says as much
as it can:
  1. environment: GPU, capability, torch / cuDNN versions;
  2. build: `registry-sm90a/` (one cubin per dtype x head size + index.json), unless present;
  3. validate: per kernel, in its own process (a hang or an illegal address cannot take the other
     kernels down): fresh random inputs, output poisoned with NaN, fp32 reference
     (qimeng_serve.validate.reference), lengths 1 17 127 128 129 1000 4099, causal and not, GQA 1/4/8,
     chunked prefill (Lq 100, Lk 1000) and a sliding window;
  4. bench: per kernel, in its own process, beside SDPA flash (FA2), cuDNN SDPA and FlexAttention in
     the same process on the same inputs: B*L = 16k tokens, H*D = 2048, L 1k..16k, causal and not;
     FLOPs = 4*B*H*L*L*D (halved for causal); L2 flushed before each run; CUDA events; figures above
     the roofline measured in the same run are rejected (qimeng_serve.bench).
Writes $OUT/hopper_check.json (or --out) and a readable hopper_check.log beside it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_KERNELS = REPO / "registry-sm90a"
BENCH_LENGTHS = (1024, 2048, 4096, 8192, 16384)
# the GQA configurations of ../shared/reference/h100_anchors.md: (tag, query heads, KV heads) at D = 128
GQA_MODELS = (("llama2-7b", 32, 32), ("qwen2.5-72b", 64, 8), ("llama3.1-405b", 128, 8))
TOKENS, HIDDEN = 16384, 2048  # B * L and H * D of every benchmark row
VALIDATE_TIMEOUT_S = 240
HANG_TIMEOUT_S = 45  # per kernel once one kernel hung before its first case finished
BENCH_TIMEOUT_S = 300


# ---------------------------------------------------------------- report
class Report:
    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self.data: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "steps": {}, "kernels": {},
                           "validation": {}, "bench": []}
        self.lines: list[str] = []

    def log(self, text: str) -> None:
        print(text, flush=True)
        self.lines.append(text)
        self.save()

    def step(self, name: str, ok: bool, seconds: float, error: str | None = None, **extra) -> None:
        self.data["steps"][name] = {"ok": ok, "seconds": round(seconds, 1), "error": error, **extra}
        self.log(f"[{'ok' if ok else 'FAILED'}] {name} ({seconds:.0f} s)" + (f": {error}" if error else ""))

    def save(self) -> None:
        (self.out_dir / "hopper_check.json").write_text(json.dumps(self.data, indent=1, default=str) + "\n")
        (self.out_dir / "hopper_check.log").write_text("\n".join(self.lines) + "\n")


def _tail(text: str, n: int = 1500) -> str:
    return text[-n:] if text else ""


# ---------------------------------------------------------------- workers (run in child processes)
def _load(kernel_dir: Path, name: str):
    from qimeng_serve.runtime.sm90 import load_sm90_kernels

    kernels = load_sm90_kernels(kernel_dir, names={name})
    if name not in kernels:
        raise SystemExit(f"no kernel {name} in {kernel_dir}")
    return kernels[name]


def validation_cases(quick: bool):
    """(label, Lq, Lk, group, causal, window)"""
    from qimeng_serve.validate import GROUPS, LENGTHS

    lengths = (1, 17, 128, 129, 1000) if quick else LENGTHS
    groups = (1, 8) if quick else GROUPS
    cases = []
    for g in groups:
        for length in lengths:
            for causal in (True, False):
                cases.append((f"L={length} g={g} {'causal' if causal else 'full'}", length, length, g, causal, 0))
        cases.append((f"Lq=100 Lk=1000 g={g} causal", 100, 1000, g, True, 0))
    # more queries than keys under a causal mask: the first query blocks see no key (tiles with no KV tile)
    cases.append(("Lq=1000 Lk=100 g=4 causal", 1000, 100, 4, True, 0))
    cases.append(("L=1000 g=4 causal window=64", 1000, 1000, 4, True, 64))
    cases.append(("Lq=129 Lk=700 g=1 causal window=200", 129, 700, 1, True, 200))
    # scores whose row max keeps rising as the kernel walks the keys (qimeng_serve.validate.key_ramp). An
    # emulation of a 16-row warp's update with rescale=lazy's 8-unit slack moves the max in 71% of the steps
    cases.append(("L=4099 g=4 full ramp", 4099, 4099, 4, False, 0))
    cases.append(("L=2000 g=1 causal ramp", 2000, 2000, 1, True, 0))
    return cases


# Shapes whose last wave does not fill 132 SMs (H100, H200), so a split=tail kernel runs its tail tiles
# in parts (2 to 7 by the head size's tile): (label, Lq, Lk, group, causal, window, batch, kv heads). The
# worker records the parts the launch chose; the causal twin runs whole tiles.
SPLIT_CASES = [
    ("split B=2 Hkv=2 g=4 L=1537 full", 1537, 1537, 4, False, 0, 2, 2),
    ("split B=2 Hkv=2 g=8 L=2049 full", 2049, 2049, 8, False, 0, 2, 2),
    ("split B=3 Hkv=2 g=4 L=1000 full", 1000, 1000, 4, False, 0, 3, 2),
    ("split B=2 Hkv=2 g=4 Lq=1537 Lk=3001 full", 1537, 3001, 4, False, 0, 2, 2),
    ("split B=2 Hkv=2 g=4 L=1537 causal", 1537, 1537, 4, True, 0, 2, 2),
    # split=stream: few tiles of many KV tiles, so a tile is cut by 4-5 CTAs' runs (32 tiles x 32 steps on
    # 132 CTAs) and by ~22 (6 tiles x 40 steps)
    ("stream B=1 Hkv=1 g=1 L=4096 full", 4096, 4096, 1, False, 0, 1, 1),
    ("stream B=1 Hkv=1 g=2 Lq=300 Lk=5000 full", 300, 5000, 2, False, 0, 1, 1),
]


def split_parts_of(kernel, q, k, causal: bool, window: int) -> int:
    """The parts per tail tile a split=tail kernel's launch chooses for this call (1: none or no split)."""
    from qimeng_serve.runtime.abi import AttnParams
    from qimeng_serve.runtime.formula import evaluate
    from qimeng_serve.runtime.loader import num_sms
    from qimeng_serve.runtime.split_tail import launch_parts

    split = kernel.meta.get("split_tail")
    if not split:
        return 1
    p = AttnParams()
    p.batch, p.heads_q, p.max_seqlen_q, p.max_seqlen_k = q.shape[0], q.shape[1], q.shape[2], k.shape[2]
    p.causal, p.window_left = int(causal), window - 1 if window > 0 else 0
    sizes = {"batch": q.shape[0], "heads_q": q.shape[1], "heads_kv": k.shape[1], "max_seq_q": q.shape[2],
             "max_seq_k": k.shape[2], "num_sms": num_sms(q.device.index)}
    return launch_parts(split, p, evaluate(kernel.meta["grid"][0], sizes))


# ---------------------------------------------------------------- paged prefill (paged_prefill_sm90.tl)
def is_paged(meta: dict) -> bool:
    return str(meta.get("program", "")).startswith("paged_prefill")


def prepare_paged(kernel, q, k_cache, v_cache, table, cu, seqlens_k, max_q: int, max_k: int, *, causal: bool,
                  window: int = 0, out):
    """A launcher for one paged call (vLLM layout: q [tokens, Hq, D], caches [blocks, page, Hkv, D])."""
    from qimeng_serve.runtime.loader import num_sms
    from qimeng_serve.runtime.ops import paged_params
    from qimeng_serve.runtime.tma_sm90 import paged_descs

    hq, hkv = q.shape[1], k_cache.shape[2]
    p = paged_params(q, k_cache, v_cache, table, cu, seqlens_k, max_q, max_k, causal=causal, softmax_scale=None,
                     window=window, softcap=0.0, out=out)
    descs = paged_descs(q, k_cache, v_cache, kernel.meta["dtype"], kernel.meta["tensor_maps"], out=out)
    sizes = {"batch": p.batch, "heads_q": hq, "heads_kv": hkv, "max_seq_q": max_q, "max_seq_k": max_k,
             "num_sms": num_sms(q.device.index)}
    return lambda: kernel.launch(p, descs, sizes)


def paged_inputs(seqs, hkv: int, group: int, d: int, dt, page: int, gen, poison: bool = True):
    """A varlen batch over a paged cache with a shuffled block table and spare blocks. poison: every
    cache row that belongs to no sequence (spare blocks, the tail of each last page) holds NaN, so a
    kernel that lets one reach O fails."""
    import torch

    blocks = [math.ceil(lk / page) for _, lk in seqs]
    total = sum(blocks) + 5
    kc = torch.randn(total, page, hkv, d, generator=gen, device="cuda").to(dt)
    vc = torch.randn(total, page, hkv, d, generator=gen, device="cuda").to(dt)
    used = torch.zeros(total, page, dtype=torch.bool, device="cuda")
    perm = torch.randperm(total, generator=gen, device="cuda").to(torch.int32)
    table = torch.zeros(len(seqs), max(blocks), dtype=torch.int32, device="cuda")
    at = 0
    for b, ((_, lk), n) in enumerate(zip(seqs, blocks)):
        table[b, :n] = perm[at:at + n]
        rows = torch.arange(n * page, device="cuda") < lk
        used[perm[at:at + n].long()] = rows.view(n, page)
        at += n
    if poison:
        kc[~used] = float("nan")
        vc[~used] = float("nan")
    lq = [q for q, _ in seqs]
    cu = torch.tensor([0] + [sum(lq[:i + 1]) for i in range(len(lq))], dtype=torch.int32, device="cuda")
    q = torch.randn(sum(lq), hkv * group, d, generator=gen, device="cuda").to(dt)
    seqlens_k = torch.tensor([lk for _, lk in seqs], dtype=torch.int32, device="cuda")
    return q, kc, vc, table, cu, seqlens_k


def gather_pages(cache, row, lk: int, page: int):
    """[Hkv, Lk, D] of one sequence through its block-table row."""
    idx = row[: math.ceil(lk / page)].long()
    return cache[idx].flatten(0, 1)[:lk].permute(1, 0, 2)


def paged_cases(quick: bool):
    """(label, seqs [(Lq, Lk)], group, causal, window, page)"""
    mixed = [(1, 1), (17, 17), (127, 300), (128, 128), (129, 1000), (1000, 1000), (60, 4099)]
    cases = []
    for page in ((16, 256) if quick else (8, 16, 24, 64, 256)):  # 8 / 24: the gather's segments, no tile fit
        for g in ((1, 8) if quick else (1, 4, 8)):
            cases.append((f"page {page} mixed g={g} causal", mixed, g, True, 0, page))
        cases.append((f"page {page} mixed g=4 full", mixed, 4, False, 0, page))
        cases.append((f"page {page} mixed g=1 causal window=64", mixed, 1, True, 64, page))
    cases.append(("page 16 L=4099 g=8 full", [(4099, 4099)], 8, False, 0, 16))
    return cases


def worker_validate_paged(args, kernel) -> dict:
    import torch

    from qimeng_serve.validate import TOLERANCE, reference, rel_l2

    dtype, d = kernel.meta["dtype"], kernel.meta["head_dim"]
    dt = {"f16": torch.float16, "bf16": torch.bfloat16}[dtype]
    tol = TOLERANCE[dtype]
    gen = torch.Generator(device="cuda").manual_seed(args.seed)
    from qimeng_serve.runtime.tma_sm90 import TmaMapError

    results, refused = [], []
    cases = paged_cases(args.quick)
    if args.sanitize:
        cases = [c for c in cases if c[0] in ("page 16 mixed g=4 full", "page 256 mixed g=8 causal")] or cases[:1]
    for label, seqs, g, causal, window, page in cases:
        row = {"case": label}
        try:
            q, kc, vc, table, cu, seqlens_k = paged_inputs(seqs, 2, g, d, dt, page, gen)
            out = torch.full_like(q, float("nan"))  # poison: every element must be written
            prepare_paged(kernel, q, kc, vc, table, cu, seqlens_k, max(s[0] for s in seqs), max(s[1] for s in seqs),
                          causal=causal, window=window, out=out)()
            torch.cuda.synchronize()
            outs, refs = [], []
            for b, (lq, lk) in enumerate(seqs):
                qb = q[cu[b]:cu[b + 1]].permute(1, 0, 2)
                refs.append(reference(qb, gather_pages(kc, table[b], lk, page), gather_pages(vc, table[b], lk, page),
                                      causal=causal, scale=1.0 / math.sqrt(d), window=window).flatten())
                outs.append(out[cu[b]:cu[b + 1]].permute(1, 0, 2).flatten())
            out_all, ref_all = torch.cat(outs), torch.cat(refs)
            err = rel_l2(out_all, ref_all)
            row.update(rel_l2=err, ok=err <= tol, nan=bool(torch.isnan(out_all).any()))
        except TmaMapError as exc:  # a page size this kernel does not take: such calls run the portable kernel
            refused.append({"case": label, "why": exc.message})
            print(json.dumps(refused[-1]), flush=True)
            continue
        except Exception as exc:
            row.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        results.append(row)
        print(json.dumps(row), flush=True)
    return {"kernel": kernel.name, "tolerance": tol, "cases": results, "refused": refused,
            "passed": sum(r.get("ok", False) for r in results), "total": len(results)}


def worker_validate(args) -> dict:
    import torch

    from qimeng_serve.validate import TOLERANCE, key_ramp, reference, rel_l2

    kernel = _load(args.kernels, args.kernel)
    if is_paged(kernel.meta):
        return worker_validate_paged(args, kernel)
    dtype, d = kernel.meta["dtype"], kernel.meta["head_dim"]
    dt = {"f16": torch.float16, "bf16": torch.bfloat16}[dtype]
    tol = TOLERANCE[dtype]
    gen = torch.Generator(device="cuda").manual_seed(args.seed)
    b, hkv = 2, 2
    results = []
    cases = validation_cases(args.quick)
    if args.sanitize:  # under compute-sanitizer every launch is slow: a few cases that reach every path
        cases = [c for c in cases if c[0] in ("L=129 g=4 causal", "L=1000 g=1 full", "Lq=129 Lk=700 g=1 causal window=200",
                                              "Lq=1000 Lk=100 g=4 causal", "L=2000 g=1 causal ramp")]
    cases = [(*c, b, hkv) for c in cases]
    # shapes whose last wave splits: split=tail kernels, and the rows-split experiment (scripts/experiments/build_rows.py)
    splits = kernel.meta.get("split_tail") or kernel.meta.get("params", {}).get("rows_split")
    if splits:  # quick / sanitize: one split shape
        cases += SPLIT_CASES[:1] if args.quick or args.sanitize else SPLIT_CASES
    for label, lq, lk, g, causal, window, b, hkv in cases:
        row = {"case": label}
        try:
            q = torch.randn(b, hkv * g, lq, d, generator=gen, device="cuda").to(dt)
            k = torch.randn(b, hkv, lk, d, generator=gen, device="cuda")
            k = (key_ramp(k) if "ramp" in label else k).to(dt)
            v = torch.randn(b, hkv, lk, d, generator=gen, device="cuda").to(dt)
            out = torch.full_like(q, float("nan"))  # poison: every element must be written
            scale = 1.0 / math.sqrt(d)
            kernel.dense_prefill(q, k, v, causal=causal, softmax_scale=scale, window=window, out=out)
            torch.cuda.synchronize()
            ref = torch.stack([reference(q[i], k[i], v[i], causal=causal, scale=scale, window=window)
                               for i in range(b)])
            err = rel_l2(out, ref)
            row.update(rel_l2=err, ok=err <= tol, nan=bool(torch.isnan(out).any()))
            if kernel.meta.get("split_tail"):
                row["parts"] = split_parts_of(kernel, q, k, causal, window)
        except Exception as exc:  # record and go on; a sticky CUDA error will fail the rest the same way
            row.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        results.append(row)
        print(json.dumps(row), flush=True)
    return {"kernel": kernel.name, "tolerance": tol, "cases": results,
            "passed": sum(r.get("ok", False) for r in results), "total": len(results)}


def timed(timer, fn, conv):
    """(figure, None) or (None, why): an anchor that refuses a shape says why in the report."""
    try:
        fn()
        return conv(timer.median_ms(fn)), None
    except Exception as exc:
        return None, f"{type(exc).__name__}: {str(exc)[:200]}"


def fa3_varlen():
    """vLLM's FlashAttention-3 (vllm.vllm_flash_attn, fa_version=3) when the vLLM payload is on the path."""
    try:
        from vllm.vllm_flash_attn import flash_attn_varlen_func
    except Exception:
        return None
    return flash_attn_varlen_func


def fastest_slowest(timer) -> list[float]:
    """The fastest and slowest of the timer's last runs (ms): how far the median's runs spread."""
    return [round(min(timer.last_ms), 4), round(max(timer.last_ms), 4)]


def worker_bench(args) -> dict:
    import torch
    from torch.nn.attention import SDPBackend

    from qimeng_serve.bench import (
        Timer,
        _checked,
        _flex,
        _sdpa,
        _tflops,
        _try,
        measure_ceilings,
    )

    kernel = _load(args.kernels, args.kernel)
    dtype, d = kernel.meta["dtype"], kernel.meta["head_dim"]
    dt = {"f16": torch.float16, "bf16": torch.bfloat16}[dtype]
    timer = Timer(flush_l2=not args.no_l2_flush)
    roof = measure_ceilings(timer)
    fa3 = fa3_varlen()
    if is_paged(kernel.meta):
        return bench_paged(args, kernel, dt, timer, roof, fa3)
    rows = []
    masks = bench_masks(kernel.meta)
    # the sweep (B*L = 16k, H*D = 2048), then at D = 128 the GQA models' shapes (causal, as served)
    shapes = [(TOKENS // length, HIDDEN // d, HIDDEN // d, length, causal, "sweep")
              for length in args.lengths for causal in masks]
    if args.shapes:  # explicit rows instead (e.g. tile counts that fill whole waves of SMs)
        shapes = [(b, h, h, length, causal, f"H={h}") for b, h, length in _parse_shapes(args.shapes)
                  for causal in masks]
    elif d == 128 and True in masks:
        shapes += [(b, hq, hk, length, True, tag) for tag, hq, hk in GQA_MODELS for b, length in ((8, 2048), (2, 8192))]
    for b, h, hk, length, causal, tag in shapes:
            row = {"kernel": kernel.name, "program": kernel.meta.get("program"), "dtype": dtype, "head_dim": d,
                   "batch": b, "heads": h, "heads_kv": hk, "seqlen": length, "causal": causal, "tag": tag,
                   "tuned_mask": kernel.meta.get("tuned_mask", "causal"),
                   "min_seqlen_k": kernel.meta.get("min_seqlen_k", 0)}
            try:
                q = torch.randn(b, h, length, d, dtype=dt, device="cuda")
                k = torch.randn(b, hk, length, d, dtype=dt, device="cuda")
                v = torch.randn(b, hk, length, d, dtype=dt, device="cuda")
                out = torch.empty_like(q)

                def conv(ms, b=b, h=h, length=length, causal=causal):
                    return None if ms is None else _checked(_tflops(b, h, length, length, d, causal, ms), roof,
                                                            "TFLOPS")

                run = kernel.prepare_dense(q, k, v, causal=causal, out=out)  # tensor maps encoded once
                try:
                    run()
                    row["ours"] = conv(timer.median_ms(run))
                    row["ours_ms_min_max"] = fastest_slowest(timer)
                except Exception as exc:  # ours failing is a finding, not a missing anchor
                    row["ours"], row["ours_error"] = None, f"{type(exc).__name__}: {exc}"
                row["fa2"] = conv(_try(timer, _sdpa, SDPBackend.FLASH_ATTENTION, q, k, v, causal))
                if fa3 is not None:  # FA3 takes varlen [tokens, H, D]: the copies are made before timing
                    qf, kf, vf = (t.transpose(1, 2).reshape(b * length, t.shape[1], d).contiguous() for t in (q, k, v))
                    cu = torch.arange(0, (b + 1) * length, length, dtype=torch.int32, device="cuda")
                    of = torch.empty_like(qf)
                    row["fa3"], row["fa3_error"] = timed(timer, lambda: fa3(
                        qf, kf, vf, length, cu, length, cu_seqlens_k=cu, causal=causal, out=of, fa_version=3), conv)
                    del qf, kf, vf, of
                row["cudnn"] = conv(_try(timer, _sdpa, SDPBackend.CUDNN_ATTENTION, q, k, v, causal))
                row["flex"] = conv(_try(timer, _flex, q, k, v, causal)) if args.flex else None
            except Exception as exc:
                row["error"] = f"{type(exc).__name__}: {exc}"
            rows.append(row)
            print(json.dumps(row), flush=True)
            torch.cuda.empty_cache()
    return {"kernel": kernel.name, "roofline": roof, "rows": rows}


def bench_masks(meta: dict) -> tuple[bool, ...]:
    """The masks a kernel is timed under (causal flags): a kernel tuned for calls without a mask
    (build_sm90_kernels' `_full` entries) only there, where the runtime picks it; the others both."""
    return (False,) if meta.get("tuned_mask") == "full" else (False, True)


def bench_paged(args, kernel, dt, timer, roof, fa3) -> dict:
    """Paged prefill beside FA3's paged prefill (vLLM's, same cache and block table) and cuDNN's dense
    SDPA on the same sequences: B*L = 16k tokens, H*D = 2048, page 16 (vLLM's default), a whole
    prompt per sequence (Lq = Lk), block table shuffled."""
    import torch
    from torch.nn.attention import SDPBackend

    from qimeng_serve.bench import _checked, _sdpa, _tflops, _try

    d = kernel.meta["head_dim"]
    rows = []
    for length in args.lengths:
        for causal in bench_masks(kernel.meta):
            b, h = TOKENS // length, HIDDEN // d
            row = {"kernel": kernel.name, "program": kernel.meta.get("program"), "dtype": kernel.meta["dtype"],
                   "head_dim": d, "batch": b, "heads": h, "seqlen": length, "causal": causal, "page": 16,
                   "tuned_mask": kernel.meta.get("tuned_mask", "causal"),
                   "min_seqlen_k": kernel.meta.get("min_seqlen_k", 0)}
            try:
                gen = torch.Generator(device="cuda").manual_seed(0)
                q, kc, vc, table, cu, seqlens_k = paged_inputs([(length, length)] * b, h, 1, d, dt, 16, gen,
                                                               poison=False)
                out = torch.empty_like(q)

                def conv(ms, b=b, h=h, length=length, causal=causal):
                    return None if ms is None else _checked(_tflops(b, h, length, length, d, causal, ms), roof,
                                                            "TFLOPS")

                run = prepare_paged(kernel, q, kc, vc, table, cu, seqlens_k, length, length, causal=causal, out=out)
                try:
                    run()
                    row["ours"] = conv(timer.median_ms(run))
                    row["ours_ms_min_max"] = fastest_slowest(timer)
                except Exception as exc:
                    row["ours"], row["ours_error"] = None, f"{type(exc).__name__}: {exc}"
                if fa3 is not None:
                    row["fa3_paged"], row["fa3_error"] = timed(timer, lambda: fa3(
                        q, kc, vc, length, cu, length, seqused_k=seqlens_k, block_table=table, causal=causal,
                        out=out, fa_version=3), conv)
                qd = q.view(b, length, h, d).transpose(1, 2)
                kd = torch.randn(b, h, length, d, dtype=dt, device="cuda")
                row["cudnn"] = conv(_try(timer, _sdpa, SDPBackend.CUDNN_ATTENTION, qd, kd, kd, causal))
                del kd
            except Exception as exc:
                row["error"] = f"{type(exc).__name__}: {exc}"
            rows.append(row)
            print(json.dumps(row), flush=True)
            torch.cuda.empty_cache()
    return {"kernel": kernel.name, "roofline": roof, "rows": rows}


def worker_main(args) -> None:
    fn = {"validate": worker_validate, "bench": worker_bench}[args.worker]
    result = fn(args)
    Path(args.result).write_text(json.dumps(result, default=str))


# ---------------------------------------------------------------- parent steps
def step_environment(rep: Report) -> bool:
    t = time.time()
    try:
        import torch

        info = {"python": platform.python_version(), "torch": torch.__version__,
                "cuda_available": torch.cuda.is_available()}
        if torch.cuda.is_available():
            info.update(device=torch.cuda.get_device_name(), capability=list(torch.cuda.get_device_capability()),
                        cudnn=torch.backends.cudnn.version(), torch_cuda=torch.version.cuda)
        rep.data["environment"] = info
        ok = info.get("capability") == [9, 0]
        rep.step("environment", ok, time.time() - t, None if ok else "needs an sm_90 GPU (H100/H200)", **info)
        return ok
    except Exception as exc:
        rep.step("environment", False, time.time() - t, f"{type(exc).__name__}: {exc}")
        return False


def step_build(rep: Report, args) -> bool:
    t = time.time()
    index = args.kernels / "index.json"
    if index.is_file() and not args.build:
        data = json.loads(index.read_text())
        rep.data["kernels"] = data["kernels"]
        rep.step("build", True, time.time() - t, None, note=f"using the cubins in {args.kernels}")
        return True
    try:
        from qimeng_serve.lower.sm90_build import build_sm90_kernels

        from qimeng_serve.lower.sm90_build import GOLDEN_SM90

        programs = [g for g in GOLDEN_SM90 if args.programs is None or g[0] in args.programs]
        data = build_sm90_kernels(args.kernels, dtypes=args.dtypes, head_dims=args.head_dims, programs=programs,
                                  progress=lambda name, meta: rep.log(f"  built {name}: {meta['ptxas']} {meta['sass']}"))
        rep.data["kernels"] = data["kernels"]
        rep.step("build", True, time.time() - t)
        return True
    except Exception as exc:
        rep.step("build", False, time.time() - t, f"{type(exc).__name__}: {exc}", trace=_tail(traceback.format_exc()))
        return False


def _child(rep: Report, args, worker: str, name: str, timeout: float, extra: list[str]) -> dict:
    result = args.out / f".{worker}_{name}.json"
    result.unlink(missing_ok=True)
    argv = [sys.executable, __file__, "--worker", worker, "--kernel", name,
            "--kernels", str(args.kernels), "--result", str(result), "--seed", str(args.seed), *extra]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return {"error": f"timed out after {timeout:.0f} s (a hang: a barrier never completed?)",
                "partial": [json.loads(x) for x in out.splitlines() if x.startswith("{")]}
    if proc.returncode != 0 or not result.is_file():
        return {"error": f"worker exited {proc.returncode}", "stderr": _tail(proc.stderr),
                "partial": [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]}
    data = json.loads(result.read_text())
    result.unlink(missing_ok=True)
    return data


def _left(args) -> float:
    return args.budget_s - (time.time() - args.t0)


def selected(rep: Report, args, dtypes) -> list[str]:
    """Kernel names of the index, in its order, whose dtype and head size were asked for."""
    return [n for n, m in rep.data["kernels"].items() if m["dtype"] in dtypes and m["head_dim"] in args.head_dims]


def step_validate(rep: Report, args) -> None:
    timeout = VALIDATE_TIMEOUT_S
    for kernel in selected(rep, args, args.dtypes):
        t = time.time()
        name = f"validate {kernel}"
        if _left(args) < 30:
            rep.step(name, False, 0, "skipped: the time budget (--budget-s) is spent")
            continue
        data = _child(rep, args, "validate", kernel, min(timeout, _left(args)),
                      ["--quick"] if args.quick else [])
        if "timed out" in data.get("error", "") and not data.get("partial"):
            timeout = HANG_TIMEOUT_S  # the kernels hang: spend little time on the others
        rep.data["validation"][kernel] = data
        if "error" in data:
            rep.step(name, False, time.time() - t, data["error"])
            continue
        bad = [c for c in data["cases"] if not c.get("ok")]
        worst = max((c.get("rel_l2", math.inf) for c in data["cases"]), default=math.nan)
        rep.step(name, not bad, time.time() - t, None if not bad else
                 f"{len(bad)} of {data['total']} cases fail, e.g. {bad[0]}", worst_rel_l2=worst)


SANITIZE_TIMEOUT_S = 240


def step_sanitize(rep: Report, args) -> None:
    """compute-sanitizer memcheck and racecheck on the named kernels, each over a few validation cases
    (the worker's --sanitize set), in a child process under the tool; the tool's summary line and
    the tail of its report go into the report."""
    import re
    import shutil

    tool = shutil.which("compute-sanitizer")
    if tool is None:
        rep.step("sanitize", False, 0, "compute-sanitizer is not on PATH")
        return
    rep.data.setdefault("sanitize", {})
    for kernel in args.sanitize:
        for check in ("memcheck", "racecheck"):
            t = time.time()
            name = f"{check} {kernel}"
            if _left(args) < 60:
                rep.step(name, False, 0, "skipped: the time budget (--budget-s) is spent")
                continue
            result = args.out / f".sanitize_{kernel}.json"
            # memcheck: device errors only (cuda-python probes driver entry points that this driver
            # lacks: host API errors, 34 of them per process, none from a kernel)
            opts = ["--racecheck-report", "all"] if check == "racecheck" else ["--report-api-errors", "no"]
            argv = [tool, "--tool", check, *opts,
                    sys.executable, __file__, "--worker", "validate", "--sanitize", "1", "--kernel", kernel,
                    "--kernels", str(args.kernels), "--result", str(result), "--seed", str(args.seed)]
            try:
                proc = subprocess.run(argv, capture_output=True, text=True,
                                      timeout=min(SANITIZE_TIMEOUT_S, _left(args)), check=False)
                text = proc.stdout + proc.stderr
            except subprocess.TimeoutExpired as exc:
                rep.step(name, False, time.time() - t, f"timed out after {exc.timeout:.0f} s")
                continue
            summary = [ln.strip() for ln in text.splitlines() if re.search(r"(ERROR|RACECHECK) SUMMARY", ln)]
            cases = json.loads(result.read_text()) if result.is_file() else {}
            result.unlink(missing_ok=True)
            errors = [int(x) for ln in summary for x in re.findall(r"(\d+) error", ln)]
            hazards = [int(x) for ln in summary for x in re.findall(r"(\d+) hazard", ln)]
            ok = bool(summary) and not any(errors) and not any(hazards) and proc.returncode == 0 and \
                bool(cases.get("cases")) and all(c.get("ok") for c in cases["cases"])
            rep.data["sanitize"][name] = {"summary": summary, "returncode": proc.returncode,
                                          "cases": cases.get("cases"), "tail": _tail(text, 3000)}
            rep.step(name, ok, time.time() - t, None if ok else f"{summary or 'no summary'}; exit {proc.returncode}")


def step_bench(rep: Report, args) -> None:
    # D = 128 first (the anchors' headline), each program beside the other; FlexAttention, an anchor
    # that compiles per shape, last and once per dtype x head size
    names = sorted(selected(rep, args, args.bench_dtypes),
                   key=lambda n: (rep.data["kernels"][n]["head_dim"] != 128, rep.data["kernels"][n]["head_dim"]))
    flex = [n for n in names if args.flex == "all" or (args.flex == "d128" and rep.data["kernels"][n]["head_dim"] == 128)]
    flex_keys = {}
    for n in flex:  # one pass per dtype, head size and tuned mask (the table takes the tuned kernel's rows)
        meta = rep.data["kernels"][n]
        flex_keys.setdefault((meta["dtype"], meta["head_dim"], meta.get("tuned_mask", "causal")), n)
    jobs = [(n, False) for n in names] + [(n, True) for n in flex_keys.values()]
    for kernel, with_flex in jobs:
        checked = rep.data["validation"].get(kernel, {})
        if "error" in checked or (checked.get("cases") is not None and not any(c.get("ok") for c in checked["cases"])):
            rep.step(f"bench {kernel}", False, 0, "skipped: the kernel did not pass validation at all "
                     f"({checked.get('error', 'no case passed')})")
            continue
        if checked.get("cases") and not all(c.get("ok") for c in checked["cases"]):
            rep.log(f"  (bench {kernel}: some validation cases fail; its figures are reported, not valid)")
        t = time.time()
        name = f"bench {kernel}" + (" + FlexAttention" if with_flex else "")
        if _left(args) < 45:
            rep.step(name, False, 0, "skipped: the time budget (--budget-s) is spent")
            continue
        extra = ["--lengths", ",".join(map(str, args.lengths))] + (["--with-flex"] if with_flex else [])
        extra += ["--shapes", args.shapes] if args.shapes else []
        extra += ["--no-l2-flush"] if args.no_l2_flush else []
        data = _child(rep, args, "bench", kernel, min(BENCH_TIMEOUT_S, _left(args)), extra)
        rows = data.get("rows", data.get("partial", []))
        for row in rows:
            row["flex_pass"] = with_flex
            rep.data["bench"].append(row)
            rep.log("  " + _fmt_row(row))
        rep.step(name, "error" not in data, time.time() - t, data.get("error"))


def _parse_shapes(text: str) -> list[tuple[int, int, int]]:
    """`BxHxL,...` (batch, heads, length) as int triples; a malformed entry stops the run."""
    shapes = []
    for item in filter(None, text.split(",")):
        parts = item.lower().split("x")
        if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise SystemExit(f"--shapes takes BxHxL entries such as 4x33x2048, not {item!r}")
        shapes.append(tuple(int(p) for p in parts))
    return shapes


def _fmt_row(row: dict) -> str:
    def f(v):
        return "  -  " if v is None else f"{v:5.0f}"
    tag = "" if row.get("tag", "sweep") == "sweep" else f" {row['tag']} B={row['batch']}"
    head = f"{row.get('kernel')}{tag} L={row.get('seqlen')} {'causal' if row.get('causal') else 'full  '}"
    if "error" in row:
        return f"{head}: {row['error']}"
    return (f"{head}  ours {f(row.get('ours'))}  FA2 {f(row.get('fa2'))}  cuDNN {f(row.get('cudnn'))}  "
            f"FA3 {f(row.get('fa3', row.get('fa3_paged')))}  flex {f(row.get('flex'))} TFLOPS")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernels", type=Path, default=DEFAULT_KERNELS, help="directory of cubins + index.json")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "hopper-check-out")))
    ap.add_argument("--build", action="store_true", help="rebuild the cubins (needs nvcc) even if present")
    ap.add_argument("--quick", action="store_true", help="fewer validation cases and benchmark lengths")
    ap.add_argument("--dtypes", default="f16,bf16")
    ap.add_argument("--bench-dtypes", default="bf16")
    ap.add_argument("--head-dims", default="64,128,256")
    ap.add_argument("--programs", help="TL programs to build (kernels_src/tl file names, comma-separated; "
                    "default: the plain, ping-pong and overlap schedules)")
    ap.add_argument("--lengths", default=",".join(map(str, BENCH_LENGTHS)))
    ap.add_argument("--shapes", default="", help="bench rows BxHxL (comma-separated, causal and not) instead of "
                    "the sweep and the GQA rows, e.g. 4x33x2048: 2112 tiles of 128 rows, 16 waves of 132 SMs")
    ap.add_argument("--no-l2-flush", action="store_true", help="time without evicting L2 before each run "
                    "(a diagnostic: the reported figures flush it)")
    ap.add_argument("--flex", choices=("all", "d128", "none"), default="d128",
                    help="which head sizes also time FlexAttention (it compiles per shape: slow)")
    ap.add_argument("--sanitize", default="", help="kernel names (comma-separated) to run under compute-sanitizer "
                    "memcheck and racecheck")
    ap.add_argument("--no-validate", action="store_true")
    ap.add_argument("--no-bench", action="store_true")
    ap.add_argument("--budget-s", type=float, default=560, help="stop starting new steps after this many seconds")
    ap.add_argument("--seed", type=int, default=0)
    # worker mode (internal)
    ap.add_argument("--worker", choices=("validate", "bench"), help=argparse.SUPPRESS)
    ap.add_argument("--kernel", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--with-flex", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        args.sanitize = bool(args.sanitize)  # worker: the short case list for compute-sanitizer
        if args.worker == "bench":
            args.lengths = [int(x) for x in args.lengths.split(",")]
            args.flex = args.with_flex
        worker_main(args)
        return 0
    args.t0 = time.time()
    args.dtypes = args.dtypes.split(",")
    args.bench_dtypes = args.bench_dtypes.split(",")
    args.head_dims = [int(x) for x in args.head_dims.split(",")]
    args.programs = args.programs.split(",") if args.programs else None
    args.sanitize = [x for x in args.sanitize.split(",") if x]
    args.lengths = [int(x) for x in args.lengths.split(",")]
    _parse_shapes(args.shapes)  # a malformed list stops the run before any GPU work
    if args.quick:
        args.lengths = [x for x in args.lengths if x in (1024, 4096, 16384)] or args.lengths
    rep = Report(args.out)
    rep.log(f"hopper_check: kernels {args.kernels}, report {args.out}")
    gpu = step_environment(rep)
    built = step_build(rep, args)
    if gpu and built:
        if not args.no_validate:
            step_validate(rep, args)
        if not args.no_bench:
            step_bench(rep, args)
        if args.sanitize:  # last: slow under the tool, and the figures matter more than its time
            step_sanitize(rep, args)
    steps = rep.data["steps"]
    failed = [n for n, s in steps.items() if not s["ok"]]
    rep.data["summary"] = {"steps": len(steps), "failed": failed, "seconds": round(time.time() - args.t0)}
    rep.log(f"done in {time.time() - args.t0:.0f} s; {len(failed)} step(s) failed" + (f": {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
