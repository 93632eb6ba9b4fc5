#!/usr/bin/env python
"""Where a CTA of the sm_90a dense prefill kernel spends its time: timestamps at chosen points of every
CTA (qimeng/sm90/trace.cuh), from a diagnostic build of the shipped program with marks inserted into
its generated source. Not a shipped kernel: the marks add a few stores per CTA.

    python scripts/sm90_trace.py build [--out registry-trace]          # here: nvcc, no GPU
    python scripts/sm90_trace.py run --registry registry-trace [--json trace.json]   # on an H100/H200

Marks (thread 0 of the producer; threads 0 and 128 of the consumers, i.e. warpgroups 0 and 1):
  0 CTA start (producer)       1 Q's copy issued        2 WG0 has Q              3 WG0 first S = Q K^T done
  4 WG0 first softmax done     5 WG0 KV loop done       6 WG1 has Q              7 WG0 O stored
  8 WG1 O stored             9 WG0 has the last V     10 WG0 last O += P V done
Printed: the median of each interval over the CTAs, and per SM the gap between one CTA's last store
and the next CTA's start (what a new CTA costs), for B x H x Lq with several key lengths.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PROGRAM = "dense_prefill_sm90.tl"
# (anchor in the generated source, text inserted after the anchor's line)
MARKS = (
    ("auto& sm = qm::sm90::shared_storage<KT>(smem_raw);", "if (threadIdx.x == 0) qm::sm90::trace_mark(0);"),
    ("qm::sm90::produce_q<KT>(", "qm::sm90::trace_mark(1);"),
    ("qm::sm90::wait_q(sm, q_iter);", "if (c.tid == 0) qm::sm90::trace_mark(2); if (c.tid == 128) qm::sm90::trace_mark(6);"),
    ("c.wait_gemms<0>(S);", "if (c.tid == 0) qm::sm90::trace_mark(3);"),
    ("auto P = c.reshape(S);", "if (c.tid == 0) qm::sm90::trace_mark(4);"),
    ("// the last tile's O += P V", "if (c.tid == 0) qm::sm90::trace_mark(5);"),
    ("ps_v.phase);  // L82: Wait sV\n", "if (c.tid == 0) qm::sm90::trace_mark(9);"),
    ("c.gemm_pv(acc, P, sm, ps_v.stage);", "if (c.tid == 0) qm::sm90::trace_mark(10);"),
    ("c.normalize_and_store(", "if (c.tid == 0) qm::sm90::trace_mark(7); if (c.tid == 128) qm::sm90::trace_mark(8);"),
)
INTERVALS = (("Q landed after CTA start", 0, 2), ("first S GEMM", 2, 3), ("first softmax", 3, 4),
             ("rest of the KV loop", 4, 5), ("last V landed", 5, 9), ("last O += P V", 9, 10),
             ("normalise and store O", 10, 7),
             ("WG1 stores after WG0", 7, 8), ("CTA start to last store", 0, 8))


def with_marks(text: str) -> str:
    lines = text.splitlines()
    for anchor, insert in MARKS:
        if anchor.endswith("\n"):  # the anchor ends its line
            hits = [i for i, line in enumerate(lines) if line.endswith(anchor[:-1])]
        else:
            hits = [i for i, line in enumerate(lines) if anchor in line]
        if len(hits) != 1:
            raise SystemExit(f"anchor {anchor!r} found {len(hits)} times in the generated source")
        i = hits[0]
        pad = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
        lines.insert(i + 1, pad + insert)
    text = "\n".join(lines) + "\n"
    return text.replace("#include <qimeng/sm90/fa3.cuh>", "#include <qimeng/sm90/fa3.cuh>\n#include <qimeng/sm90/trace.cuh>")


def build(out: Path, dtype: str, head_dim: int) -> None:
    from dataclasses import replace

    from qimeng_serve.build.toolchain import KERNELS_INCLUDE, find_toolchain
    from qimeng_serve.lower.emit_sm90 import lower_sm90
    from qimeng_serve.lower.sm90_build import compile_sm90
    from qimeng_serve.spec import AttentionSpec
    from qimeng_serve.targets import get_target
    from qimeng_serve.tl.parser import parse_tl_file

    toolchain = find_toolchain()
    path = KERNELS_INCLUDE.parent / "tl" / PROGRAM
    source = lower_sm90(parse_tl_file(path), get_target("sm_90"), AttentionSpec("dense_prefill", dtype, head_dim, 1, True),
                        source_name=str(path))
    source = replace(source, text=with_marks(source.text))
    result = compile_sm90(source, toolchain)
    entry = source.entries[0]
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{entry.name}.cubin").write_bytes(result.cubin)
    (out / f"{entry.name}.cu").write_text(source.text)
    meta = {"program": PROGRAM, "dtype": dtype, "head_dim": head_dim, "softcap": 0.0, "threads": entry.threads,
            "grid": entry.grid, "smem_bytes": entry.smem_bytes, "abi": entry.abi, "tensor_maps": entry.tensor_maps,
            "params": source.params, "nvcc_flags": result.flags, "trace": True}
    (out / "index.json").write_text(json.dumps({"schema": "qimeng-sm90a-kernels/1", "arch": "sm_90a",
                                                "kernels": {entry.name: meta}}, indent=2) + "\n")
    print(f"built {entry.name} with trace marks into {out}")


def run(registry: Path, batch: int, heads: int, seqlen_q: int, seqlens_k: list[int], out_json: Path | None) -> None:
    import torch

    from qimeng_serve.runtime.loader import check, driver
    from qimeng_serve.runtime.sm90 import load_sm90_kernels

    (kernel,) = load_sm90_kernels(registry).values()
    drv = driver()
    ptr, size = check(drv.cuModuleGetGlobal(kernel.module, b"qm_trace"), "finding qm_trace")
    slots = 32
    report = {"device": torch.cuda.get_device_name(), "kernel": kernel.name, "runs": []}
    dt = {"f16": torch.float16, "bf16": torch.bfloat16}[kernel.meta["dtype"]]
    d = kernel.meta["head_dim"]
    for lk in seqlens_k:
        q = torch.randn(batch, heads, seqlen_q, d, dtype=dt, device="cuda")
        k = torch.randn(batch, heads, lk, d, dtype=dt, device="cuda")
        v = torch.randn_like(k)
        out = torch.empty_like(q)
        launch = kernel.prepare_dense(q, k, v, causal=False, out=out)
        for _ in range(3):
            launch()
        torch.cuda.synchronize()
        check(drv.cuMemsetD8(ptr, 0, size), "clearing qm_trace")
        launch()
        torch.cuda.synchronize()
        raw = torch.empty(size // 8, dtype=torch.int64)
        check(drv.cuMemcpyDtoH(raw.data_ptr(), ptr, size), "reading qm_trace")
        rows = [r for r in raw.view(-1, slots).tolist() if r[0] and r[8]]
        ns = [[r[s] for s in range(11)] for r in rows]
        run_report = {"seqlen_k": lk, "ctas": len(rows), "intervals_us": {}}
        print(f"{kernel.name}: B={batch} H={heads} Lq={seqlen_q} Lk={lk}, {len(rows)} CTAs traced")
        for name, a, b in INTERVALS:
            vals = sorted((r[b] - r[a]) / 1e3 for r in ns)
            med = statistics.median(vals)
            run_report["intervals_us"][name] = {"median": med, "p10": vals[len(vals) // 10], "p90": vals[9 * len(vals) // 10]}
            print(f"  {name:32s} median {med:7.2f} us  (p10 {vals[len(vals) // 10]:.2f}, p90 {vals[9 * len(vals) // 10]:.2f})")
        by_sm: dict[int, list] = {}
        for r in rows:
            by_sm.setdefault(r[15], []).append((r[0], max(r[7], r[8])))
        gaps = []
        for spans in by_sm.values():
            spans.sort()
            gaps += [(nxt[0] - cur[1]) / 1e3 for cur, nxt in itertools.pairwise(spans)]
        gaps.sort()
        if gaps:
            g = {"median": statistics.median(gaps), "p10": gaps[len(gaps) // 10], "p90": gaps[9 * len(gaps) // 10]}
            run_report["next_cta_gap_us"] = g
            print(f"  {'last store to next CTA start':32s} median {g['median']:7.2f} us  (p10 {g['p10']:.2f}, p90 {g['p90']:.2f})")
        clock_ns = [(r[16 + 8] - r[16]) / max(1, r[8] - r[0]) for r in rows if r[8] > r[0]]
        run_report["sm_clock_ghz"] = statistics.median(clock_ns)
        span = (max(r[8] for r in ns) - min(r[0] for r in ns)) / 1e3
        run_report["kernel_span_us"] = span
        print(f"  SM clock {run_report['sm_clock_ghz']:.2f} GHz; first CTA start to last store {span:.0f} us")
        report["runs"].append(run_report)
    if out_json:
        out_json.write_text(json.dumps(report, indent=2) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--out", type=Path, default=REPO / "registry-trace")
    b.add_argument("--dtype", default="bf16")
    b.add_argument("--head-dim", type=int, default=128)
    r = sub.add_parser("run")
    r.add_argument("--registry", type=Path, default=REPO / "registry-trace")
    r.add_argument("--batch", type=int, default=8)
    r.add_argument("--heads", type=int, default=16)
    r.add_argument("--seqlen-q", type=int, default=2048)
    r.add_argument("--seqlens-k", default="1024,2048,8192")
    r.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.cmd == "build":
        build(args.out, args.dtype, args.head_dim)
    else:
        run(args.registry, args.batch, args.heads, args.seqlen_q, [int(x) for x in args.seqlens_k.split(",")], args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
