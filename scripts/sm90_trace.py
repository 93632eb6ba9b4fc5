#!/usr/bin/env python
"""Where a CTA (or, under tiles=persistent, a tile) of an sm_90a dense prefill kernel spends its time:
timestamps at chosen points (qimeng/sm90/trace.cuh), from a diagnostic build of a dense program with
marks inserted into its generated source. Not a shipped kernel: the marks add a few stores per tile.

    python scripts/sm90_trace.py build [--out registry-trace] [--program TL | --variant NAME] [--head-dim 128]   # here
    python scripts/sm90_trace.py run --registry registry-trace [--json trace.json]   # on an H100/H200

Marks (thread 0 of the producer; threads 0 and 128 of the consumers, i.e. warpgroups 0 and 1):
  0 CTA start (producer; one-tile CTAs only)   1 Q's copy issued   2 WG0 has Q   3 WG0 first S = Q K^T done
  4 WG0 first softmax done     5 WG0 KV loop done       6 WG1 has Q              7 WG0 O stored
  8 WG1 O stored               9 WG0 has the last V     10 WG0 last O += P V done
  11 WG0 took the tile from the producer (tiles=persistent)
Printed: the median of each interval, and the cost between tiles: one-tile CTAs, per SM, from a CTA's
last store to the next CTA's start; a persistent kernel, per CTA, from a tile's last store to the next
tile's Q being there. For B x H x Lq with several key lengths, non-causal.
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
# (anchor: text the line contains, and the text it ends with or ""), the mark inserted after that line,
# with {row} the trace row: the tile number under tiles=persistent, else -1 (the CTA's own row)
MARKS = (
    (("auto& sm = qm::sm90::shared_storage<KT>(smem_raw);", ""), "if (threadIdx.x == 0) qm::sm90::trace_mark(0);"),
    (("qm::sm90::produce_q<KT>(", ""), "qm::sm90::trace_mark(1, {row});"),
    (("qm::sm90::wait_q(sm, q_iter);", ""),
     "if (c.tid == 0) qm::sm90::trace_mark(2, {row}); if (c.tid == 128) qm::sm90::trace_mark(6, {row});"),
    (("c.wait_gemms<0>(S);", ""), "if (c.tid == 0) qm::sm90::trace_mark(3, {row});"),
    (("auto P = c.reshape(S);", ""), "if (c.tid == 0) qm::sm90::trace_mark(4, {row});"),
    (("// the last tile's O += P V", ""), "if (c.tid == 0) qm::sm90::trace_mark(5, {row});"),
    (("qm::sm90::wait_full(sm.v_full", ": Wait sV"), "if (c.tid == 0) qm::sm90::trace_mark(9, {row});"),
    (("c.gemm_pv(acc, P, sm, ps_v.stage);", ""), "if (c.tid == 0) qm::sm90::trace_mark(10, {row});"),
    # 11: when WG0 took the tile, stored once the tile's coordinates (its row) are known
    (("if (tile_t < 0) break;", ""), "const qm::sm90::TraceStamp took = qm::sm90::trace_stamp();"),
    (("= word.unpack(tile_t, tiles);", ""), "if (c.tid == 0) qm::sm90::trace_put(11, {row}, took);"),
    (("c.normalize_and_store", ""),  # the register or the TMA (_tma) store
     "if (c.tid == 0) qm::sm90::trace_mark(7, {row}); if (c.tid == 128) qm::sm90::trace_mark(8, {row});"),
)
SLOT_CTA, SLOT_SM = 14, 15  # qm::sm90::kCtaSlot, kSmidSlot
INTERVALS = (("first S GEMM", 2, 3), ("first softmax", 3, 4), ("rest of the KV loop", 4, 5), ("last V landed", 5, 9),
             ("last O += P V", 9, 10), ("normalise and store O", 10, 7), ("WG1 stores after WG0", 7, 8))


def is_persistent(text: str) -> bool:
    return "qm::sm90::TileScheduler tiles(" in text


def with_marks(text: str) -> str:
    persistent = is_persistent(text)
    lines = text.splitlines()
    for (contains, ends), insert in MARKS:
        if persistent and "trace_mark(0)" in insert:
            continue  # a persistent CTA runs many tiles: its start is no tile's
        if not persistent and ("trace_put(11" in insert or "trace_stamp()" in insert):
            continue  # one tile per CTA: nothing is taken from the producer
        hits = [i for i, line in enumerate(lines) if contains in line and line.endswith(ends)]
        if len(hits) != 1:
            raise SystemExit(f"anchor {contains!r} found {len(hits)} times in the generated source")
        i = hits[0]
        pad = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
        lines.insert(i + 1, pad + insert.format(row="qm::sm90::trace_row(tile, tiles)" if persistent else "-1"))
    text = "\n".join(lines) + "\n"
    return text.replace("#include <qimeng/sm90/fa3.cuh>", "#include <qimeng/sm90/fa3.cuh>\n#include <qimeng/sm90/trace.cuh>")


def variant_source(name: str, tmp: Path) -> tuple[Path, int, dict]:
    """A variant of scripts/sm90_variants.py: its TL program (written into tmp), head size and macros."""
    sys.path.insert(0, str(REPO / "scripts"))
    from sm90_variants import TL_DIR, VARIANTS, variant_text

    program, head_dim, overrides, defines, _ = VARIANTS[name]
    tl = tmp / f"{Path(program).stem}_v_{name}.tl"
    tl.write_text(variant_text((TL_DIR / program).read_text(), name, head_dim, overrides))
    return tl, head_dim, defines


def build(out: Path, dtype: str, head_dim: int, program: Path, defines: dict | None = None) -> None:
    from dataclasses import replace

    from qimeng_serve.build.toolchain import KERNELS_INCLUDE, find_toolchain
    from qimeng_serve.lower.emit_sm90 import lower_sm90
    from qimeng_serve.lower.sm90_build import compile_sm90
    from qimeng_serve.spec import AttentionSpec
    from qimeng_serve.targets import get_target
    from qimeng_serve.tl.parser import parse_tl_file

    toolchain = find_toolchain()
    path = program if program.is_absolute() else KERNELS_INCLUDE.parent / "tl" / program
    source = lower_sm90(parse_tl_file(path), get_target("sm_90"), AttentionSpec("dense_prefill", dtype, head_dim, 1, False),
                        source_name=str(path))
    head = "".join(f"#define {k} {v}\n" for k, v in (defines or {}).items())
    source = replace(source, text=head + with_marks(source.text))
    result = compile_sm90(source, toolchain)
    entry = source.entries[0]
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{entry.name}.cubin").write_bytes(result.cubin)
    (out / f"{entry.name}.cu").write_text(source.text)
    meta = {"program": path.name, "persistent": is_persistent(source.text), "dtype": dtype, "head_dim": head_dim, "softcap": 0.0, "threads": entry.threads,
            "grid": entry.grid, "smem_bytes": entry.smem_bytes, "abi": entry.abi, "tensor_maps": entry.tensor_maps,
            "params": source.params, "nvcc_flags": result.flags, "trace": True, "defines": defines or {},
            **({"split_tail": entry.split_tail} if entry.split_tail else {})}
    (out / "index.json").write_text(json.dumps({"schema": "qimeng-sm90a-kernels/1", "arch": "sm_90a",
                                                "kernels": {entry.name: meta}}, indent=2) + "\n")
    print(f"built {entry.name} with trace marks into {out}")


def spread(vals: list[float]) -> dict:
    vals = sorted(vals)
    return {"median": statistics.median(vals), "p10": vals[len(vals) // 10], "p90": vals[9 * len(vals) // 10]}


def show(name: str, g: dict) -> None:
    print(f"  {name:36s} median {g['median']:7.2f} us  (p10 {g['p10']:.2f}, p90 {g['p90']:.2f})")


def analyse(rows: list[list[int]], persistent: bool) -> dict:
    """rows: the trace rows that ran (a CTA each, or a tile each under tiles=persistent)."""
    out = {"rows": len(rows), "intervals_us": {}}
    first = ("Q landed after its copy was issued", 1, 2) if persistent else ("Q landed after CTA start", 0, 2)
    whole = ("Q there to last store", 2, 8) if persistent else ("CTA start to last store", 0, 8)
    waits = (("Q wait after WG0 took the tile", 11, 2),) if persistent else ()
    for name, a, b in (first, *waits, *INTERVALS, whole):
        out["intervals_us"][name] = spread([(r[b] - r[a]) / 1e3 for r in rows])
    # between tiles: per SM (one-tile CTAs: last store to the next CTA's start) or per CTA (persistent:
    # a tile's last store to the next tile's Q being there)
    key, start = (SLOT_CTA, 2) if persistent else (SLOT_SM, 0)
    groups: dict[int, list] = {}
    for r in rows:
        groups.setdefault(r[key], []).append((r[start], max(r[7], r[8])))
    gaps = []
    for spans in groups.values():
        spans.sort()
        gaps += [(nxt[0] - cur[1]) / 1e3 for cur, nxt in itertools.pairwise(spans)]
    if gaps:
        out["between_tiles_us"] = spread(gaps)
    t0 = min(r[start] for r in rows)
    out["span_us"] = (max(r[8] for r in rows) - t0) / 1e3
    # when each CTA (persistent) or SM (one-tile CTAs) stored its last O, from the first start: a wide
    # spread is a tail of idle SMs (imbalance), which no per-tile interval shows
    done = sorted((max(end for _, end in spans) - t0) / 1e3 for spans in groups.values())
    out["last_store_per_worker_us"] = {"min": done[0], "median": statistics.median(done), "max": done[-1]}
    # the share of (workers x span) spent inside a tile (start to last store)
    busy = sum(end - begin for spans in groups.values() for begin, end in spans) / 1e3
    out["busy_share"] = busy / (len(groups) * out["span_us"])
    return out


def run(registry: Path, batch: int, heads: int, seqlen_q: int, seqlens_k: list[int], out_json: Path | None) -> None:
    import torch

    from qimeng_serve.runtime.loader import check, driver
    from qimeng_serve.runtime.sm90 import load_sm90_kernels

    (kernel,) = load_sm90_kernels(registry).values()
    persistent = bool(kernel.meta.get("persistent"))
    drv = driver()
    ptr, size = check(drv.cuModuleGetGlobal(kernel.module, b"qm_trace"), "finding qm_trace")
    slots = 32
    report = {"device": torch.cuda.get_device_name(), "kernel": kernel.name, "persistent": persistent, "runs": []}
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
        rows = [r for r in raw.view(-1, slots).tolist() if r[2] and r[8]]
        result = {"seqlen_k": lk, **analyse(rows, persistent)}
        print(f"{kernel.name}: B={batch} H={heads} Lq={seqlen_q} Lk={lk}, {len(rows)} "
              f"{'tiles' if persistent else 'CTAs'} traced")
        for name, g in result["intervals_us"].items():
            show(name, g)
        if "between_tiles_us" in result:
            show("tile's last store to the next tile's Q" if persistent else "last store to next CTA start",
                 result["between_tiles_us"])
        w = result["last_store_per_worker_us"]
        print(f"  first to last timestamp {result['span_us']:.0f} us; last store per {'CTA' if persistent else 'SM'}: "
              f"min {w['min']:.0f}, median {w['median']:.0f}, max {w['max']:.0f} us; "
              f"busy share {result['busy_share']:.3f}")
        report["runs"].append(result)
    if out_json:
        out_json.write_text(json.dumps(report, indent=2) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--out", type=Path, default=REPO / "registry-trace")
    b.add_argument("--dtype", default="bf16")
    b.add_argument("--head-dim", type=int, default=128)
    b.add_argument("--program", type=Path, default=Path(PROGRAM), help="a dense TL program (kernels_src/tl or a path)")
    b.add_argument("--variant", help="a variant of scripts/sm90_variants.py instead of --program (its head size too)")
    r = sub.add_parser("run")
    r.add_argument("--registry", type=Path, default=REPO / "registry-trace")
    r.add_argument("--batch", type=int, default=8)
    r.add_argument("--heads", type=int, default=16)
    r.add_argument("--seqlen-q", type=int, default=2048)
    r.add_argument("--seqlens-k", default="1024,2048,8192")
    r.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.cmd == "build":
        if args.variant:
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                tl, head_dim, defines = variant_source(args.variant, Path(tmp))
                build(args.out, args.dtype, head_dim, tl, defines)
        else:
            build(args.out, args.dtype, args.head_dim, args.program)
    else:
        run(args.registry, args.batch, args.heads, args.seqlen_q, [int(x) for x in args.seqlens_k.split(",")], args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
