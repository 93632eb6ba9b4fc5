#!/usr/bin/env python
"""Interleaved A/B of sm_90a kernels on one GPU: every kernel timed on the same inputs in one process,
round after round with the order rotated, cuDNN SDPA timed in each round as the scale. Kernels from
different directories may share an entry name (an old and a new build of one program).

    python scripts/ab_sm90.py --kernel old=registry-shipped14:qm_dense_prefill_sm90_attn_bf16_hd64 \
        --kernel new=registry-var15a:qm_dense_prefill_sm90_attn_bf16_hd64 --rounds 3 --out ab.jsonl

All kernels are of one family (dense or paged prefill), dtype and head size. Shapes as hopper_check's
sweep: B * L = 16k tokens, H * D = 2048 (`--heads` sets H); paged with 16-row pages and a shuffled block
table, and with `--context N` each sequence's L new queries come after N keys of context (chunked
prefill: Lk = N + L; no cuDNN there, whose causal mask aligns to the top left, and TFLOPS count lq * lk
/ 2 pairs, a nominal figure that only compares kernels). Each kernel's output on every shape is checked
against cuDNN's (dense) or the first kernel's (paged) before any timing. Prints, per shape, each
kernel's median TFLOPS over the rounds, its ratio to the first kernel and to cuDNN, and every round's
figure (the spread says what a difference is worth).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

TOKENS, HIDDEN = 16384, 2048


def load(specs: list[str]):
    """[(label, kernel)] from `label=DIR:ENTRY` arguments, loaded in order."""
    from qimeng_serve.runtime.sm90 import load_sm90_kernels

    out = []
    for spec in specs:
        label, _, where = spec.partition("=")
        directory, _, name = where.partition(":")
        if not (label and directory and name):
            raise SystemExit(f"--kernel takes LABEL=DIR:ENTRY, not {spec!r}")
        kernels = load_sm90_kernels(Path(directory), names={name})
        if name not in kernels:
            raise SystemExit(f"no {name} in {directory}")
        out.append((label, kernels[name]))
    metas = {(k.meta["dtype"], k.meta["head_dim"], str(k.meta.get("program", "")).startswith("paged")) for _, k in out}
    if len(metas) != 1:
        raise SystemExit(f"the kernels differ in dtype, head size or family: {sorted(metas)}")
    return out


def launchers(kernels, b: int, h: int, hkv: int, length: int, causal: bool, d: int, dt, paged: bool,
               context: int = 0):
    """(label -> launcher, cuDNN launcher, outputs by label) on one shape's inputs: b sequences of
    length queries, h query heads on hkv KV heads (paged: h = hkv)."""
    import torch
    from torch.nn.attention import SDPBackend

    from hopper_check import paged_inputs, prepare_paged
    from qimeng_serve.bench import _sdpa

    outs = {}
    runs = {}
    if paged:
        gen = torch.Generator(device="cuda").manual_seed(0)
        lk = length + context
        q, kc, vc, table, cu, seqlens_k = paged_inputs([(length, lk)] * b, h, 1, d, dt, 16, gen, poison=False)
        for label, k in kernels:
            outs[label] = torch.full_like(q, float("nan"))
            runs[label] = prepare_paged(k, q, kc, vc, table, cu, seqlens_k, length, lk, causal=causal,
                                        out=outs[label])
        qd = q.view(b, length, h, d).transpose(1, 2)
        kd = torch.randn(b, h, length, d, dtype=dt, device="cuda")
        ref_in = (qd, kd, kd)
    else:
        q = torch.randn(b, h, length, d, dtype=dt, device="cuda")
        k_, v = (torch.randn(b, hkv, length, d, dtype=dt, device="cuda") for _ in range(2))
        for label, k in kernels:
            outs[label] = torch.full_like(q, float("nan"))
            runs[label] = k.prepare_dense(q, k_, v, causal=causal, out=outs[label])
        ref_in = (q, k_, v)

    return runs, _sdpa(SDPBackend.CUDNN_ATTENTION, *ref_in, causal), outs


def check(runs, cudnn, outs, paged: bool) -> dict[str, float]:
    """Each kernel's relative L2 error against cuDNN (dense) or the first kernel (paged: cuDNN there runs
    on other inputs); NaN anywhere is an error of 1.0."""
    import torch

    for run in runs.values():
        run()
    torch.cuda.synchronize()
    first = next(iter(outs.values()))
    ref = first.float() if paged else cudnn().float()
    errors = {}
    for label, out in outs.items():
        o = out.float()
        errors[label] = 1.0 if torch.isnan(o).any() else float((o - ref).norm() / ref.norm())
    return errors


def kernels_of(run) -> list[tuple[str, float]]:
    """(name, GPU microseconds) of each kernel or memset one call of `run` puts on the GPU, in order."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    run()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        run()
        torch.cuda.synchronize()
    events = sorted((e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA),
                    key=lambda e: e.time_range.start)
    return [(e.name[:60], e.time_range.elapsed_us()) for e in events]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernel", action="append", required=True, help="LABEL=DIR:ENTRY (the first is the baseline)")
    ap.add_argument("--lengths", default="1024,2048,4096,8192,16384")
    ap.add_argument("--masks", default="full,causal")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--context", type=int, default=0, help="paged: keys of context before each sequence's queries")
    ap.add_argument("--heads", type=int, default=0,
                    help="query heads (default HIDDEN / D: 16 at D 128); e.g. 33 at D 128 makes every length "
                         "4224 tiles of 128 rows, 32 whole waves on 132 SMs")
    ap.add_argument("--gqa", action="append", default=[], metavar="B,HQ,HKV,L",
                    help="dense: a GQA shape to time instead of the sweep (repeatable; --lengths is then ignored)")
    ap.add_argument("--no-l2-flush", action="store_true",
                    help="time back-to-back runs on a warm L2 (a diagnostic; every reported figure flushes it)")
    ap.add_argument("--list-kernels", action="store_true",
                    help="print the GPU kernels one call of each launcher runs (torch.profiler), per shape")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    import torch

    from qimeng_serve.bench import Timer, _tflops

    kernels = load(args.kernel)
    meta = kernels[0][1].meta
    d, paged = meta["head_dim"], str(meta.get("program", "")).startswith("paged")
    dt = {"f16": torch.float16, "bf16": torch.bfloat16}[meta["dtype"]]
    if args.context and not paged:
        raise SystemExit("--context is for paged prefill kernels")
    timer = Timer(flush_l2=not args.no_l2_flush)
    sink = args.out.open("a") if args.out else None
    labels = [label for label, _ in kernels]
    print(f"{'family':6s} D {'L':>6s} mask   " + " ".join(f"{lb:>22s}" for lb in labels) + "   cuDNN")
    if args.gqa and paged:
        raise SystemExit("--gqa is for dense prefill kernels")
    shapes = [tuple(map(int, g.split(","))) for g in args.gqa] or \
        [(TOKENS // length, args.heads or HIDDEN // d, args.heads or HIDDEN // d, length)
         for length in map(int, args.lengths.split(","))]
    for b, h, hkv, length in shapes:
        for mask in args.masks.split(","):
            causal = mask == "causal"
            lk = length + args.context
            runs, cudnn, outs = launchers(kernels, b, h, hkv, length, causal, d, dt, paged, args.context)
            errors = check(runs, cudnn, outs, paged)
            if args.list_kernels:
                for label, run in [*runs.items(), *([] if args.context else [("cudnn", cudnn)])]:
                    print(f"  {label}: " + "; ".join(f"{n} {us:.1f} us" for n, us in kernels_of(run)), flush=True)
            tf = {label: [] for label in [*labels, "cudnn"]}
            for r in range(args.rounds):
                order = labels[r % len(labels):] + labels[: r % len(labels)]
                for label in order:
                    tf[label].append(_tflops(b, h, length, lk, d, causal, timer.median_ms(runs[label])))
                if not args.context:
                    tf["cudnn"].append(_tflops(b, h, length, length, d, causal, timer.median_ms(cudnn)))
            med = {label: statistics.median(v) if v else float("nan") for label, v in tf.items()}
            row = {"family": "paged" if paged else "dense", "head_dim": d, "dtype": meta["dtype"], "batch": b,
                   "heads": h, "heads_kv": hkv, "seqlen": length, "seqlen_k": lk, "causal": causal, "rounds": tf, "median": med,
                   "rel_l2": errors,
                   "kernels": {label: f"{Path(spec.split('=', 1)[1])}" for label, spec in zip(labels, args.kernel)}}
            if sink:
                sink.write(json.dumps(row) + "\n")
                sink.flush()
            base = med[labels[0]]
            cells = [f"{med[lb]:6.1f} {med[lb] / base:5.3f} {med[lb] / med['cudnn']:5.3f}"
                     + ("!" if errors[lb] > 0.02 else " ") for lb in labels]
            where = f"B{b} {h}/{hkv} {length}" if args.gqa else f"{length:6d}"
            print(f"{row['family']:6s} {d} {where} {mask:6s} " + " ".join(f"{c:>22s}" for c in cells)
                  + f"   {med['cudnn']:6.1f}", flush=True)
            del runs, cudnn, outs
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
