#!/usr/bin/env python
"""Our sm_90a dense kernel and cuDNN's SDPA on one shape, timed three ways, with the SM clock and
board power sampled by nvidia-smi during each (why a same-shape ratio differs between Nsight
Compute's single-launch replay and the benchmark's timed loop; docs/perf-notes.md, session 14):

  loop      the benchmark's Timer: back-to-back runs, each after a 0.5 ms spin and an L2 flush
  no-flush  the same without the flush
  isolated  each run alone after 50 ms of idle GPU, L2 flushed (what a replay sees)

    python scripts/clock_probe.py qm_dense_prefill_sm90_attn_bf16_hd128 --kernels registry-sm90a \\
        --batch 8 --heads 128 --heads-kv 8 --seqlen 2048 --causal
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


class Sampler:
    """nvidia-smi every 20 ms into a file while the block runs; mean SM MHz and watts."""

    def __enter__(self):
        self.file = tempfile.NamedTemporaryFile("w+", suffix=".csv")
        self.proc = subprocess.Popen(["nvidia-smi", "--query-gpu=clocks.sm,power.draw", "--format=csv,noheader,nounits",
                                      "-lms", "20"], stdout=self.file, stderr=subprocess.DEVNULL)
        time.sleep(0.2)
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait()
        self.file.seek(0)
        rows = [line.split(",") for line in self.file.read().splitlines() if line.count(",") == 1]
        vals = [(float(a), float(b)) for a, b in rows if a.strip().replace(".", "").isdigit()]
        self.mhz = statistics.mean(v[0] for v in vals) if vals else None
        self.watts = statistics.mean(v[1] for v in vals) if vals else None
        return False


def driver_counter_launch(kernel, q, k, v, causal, out):
    """The launch prepare_dense makes, with the tile counter preallocated once and zeroed by
    cuMemsetD32Async on the stream (no torch allocation, no stream context per launch)."""
    import ctypes

    import torch

    from qimeng_serve.runtime.formula import evaluate
    from qimeng_serve.runtime.loader import check, driver
    from qimeng_serve.runtime.tma_sm90 import launch_args

    run = kernel.prepare_dense(q, k, v, causal=causal, out=out)
    cells = dict(zip(run.__code__.co_freevars, (c.cell_contents for c in run.__closure__)))
    p, descs, sizes = cells["p"], cells["descs"], cells["sizes"]  # what prepare_dense's launcher holds
    drv = driver()
    counter = torch.zeros(1, dtype=torch.int32, device=q.device)
    grid = [evaluate(f, sizes) for f in kernel.meta["grid"]] + [1, 1]
    args, keep = launch_args(p, descs, counter.data_ptr())

    def launch():
        stream = drv.CUstream(torch.cuda.current_stream().cuda_stream)
        check(drv.cuMemsetD32Async(counter.data_ptr(), 0, 1, stream), "zeroing the tile counter")
        check(drv.cuLaunchKernel(kernel.function, grid[0], grid[1], grid[2], kernel.meta["threads"], 1, 1,
                                 kernel.meta["smem_bytes"], stream, ctypes.addressof(args), 0), "launching")

    launch.keep = (keep, counter)
    return launch


def span_ms(fn, before, host: list | None = None) -> float:
    """GPU milliseconds between events around fn(), after before() is enqueued; host, when given,
    collects fn()'s host microseconds."""
    import torch

    before()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    t = time.perf_counter()
    fn()
    if host is not None:
        host.append((time.perf_counter() - t) * 1e6)
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


def busy_host(run, flush, runs: int) -> dict[str, float]:
    """The Timer's loop with the launcher's host time taken inside it (the GPU busy with the spin and
    the flush while the host enqueues): median host us of run(), and median GPU ms of the span."""
    import torch

    from qimeng_serve.bench import Timer

    host = []
    gpu = [span_ms(run, lambda: (torch.cuda._sleep(Timer.SPIN_CYCLES), flush.zero_()), host) for _ in range(runs)]
    return {"host_us": round(statistics.median(host), 1), "host_us_max": round(max(host), 1),
            "gpu_ms": round(statistics.median(gpu), 4)}


def host_us(run, kernel, runs: int = 20) -> dict[str, float]:
    """Median host microseconds of one launch (run()) and of its parts: the tile counter (a torch
    tensor zeroed on the stream) and the kernel arguments, each with the GPU idle before it."""
    import torch

    from qimeng_serve.runtime.tile_counter import zeroed_tile_counter

    stream = torch.cuda.current_stream()
    parts = {"launch": run, "counter": lambda: zeroed_tile_counter(stream)}
    out = {}
    for name, fn in parts.items():
        times = []
        for _ in range(runs):
            torch.cuda.synchronize()
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e6)
        out[name] = round(statistics.median(times), 1)
        out[name + "_max"] = round(max(times), 1)
    return out


def read_flushed_ms(fn, flush, runs: int) -> float:
    """The benchmark's loop with L2 evicted by reading 256 MB instead of writing it: each run then
    starts on clean lines, none to write back (the Timer's zero_() leaves L2 full of dirty ones)."""
    import torch

    from qimeng_serve.bench import Timer

    return statistics.median(span_ms(fn, lambda: (torch.cuda._sleep(Timer.SPIN_CYCLES), flush.view(torch.int64).sum()))
                             for _ in range(runs))


def isolated_ms(fn, flush, runs: int = 10) -> float:
    """Each run alone after 50 ms of idle GPU, L2 flushed."""
    import torch

    def before():
        torch.cuda.synchronize()
        time.sleep(0.05)
        flush.zero_()

    return statistics.median(span_ms(fn, before) for _ in range(runs))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kernel")
    ap.add_argument("--kernels", type=Path, default=REPO / "registry-sm90a")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--heads", type=int, default=128)
    ap.add_argument("--heads-kv", type=int)
    ap.add_argument("--seqlen", type=int, default=2048)
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--runs", type=int, default=100, help="timed runs of the loop (the benchmark takes 20)")
    ap.add_argument("--sequence", action="store_true",
                    help="time ours on fresh inputs, then after hopper_check's earlier 2k / GQA rows (each on "
                         "inputs of its own, freed as hopper_check frees them), then on fresh inputs again")
    ap.add_argument("--keep-cache", action="store_true",
                    help="--sequence: keep freed blocks in torch's caching allocator (no empty_cache between rows)")
    ap.add_argument("--allocate-only", action="store_true",
                    help="--sequence: the earlier rows only allocate and write their tensors, no kernel runs")
    ap.add_argument("--spin", type=int, help="cycles the GPU spins before each timed run (the Timer's "
                    "SPIN_CYCLES: the host's time to enqueue the run hides behind it)")
    ap.add_argument("--driver-counter", action="store_true",
                    help="--sequence: launch with a preallocated tile counter zeroed by cuMemsetD32Async")
    args = ap.parse_args()
    if args.spin:
        from qimeng_serve.bench import Timer

        Timer.SPIN_CYCLES = args.spin
    if args.sequence:
        return sequence(args)
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from qimeng_serve.bench import Timer
    from qimeng_serve.runtime.sm90 import load_sm90_kernels

    kernel = load_sm90_kernels(args.kernels, names={args.kernel})[args.kernel]
    dt = {"f16": torch.float16, "bf16": torch.bfloat16}[kernel.meta["dtype"]]
    d, hk = kernel.meta["head_dim"], args.heads_kv or args.heads
    q = torch.randn(args.batch, args.heads, args.seqlen, d, dtype=dt, device="cuda")
    k = torch.randn(args.batch, hk, args.seqlen, d, dtype=dt, device="cuda")
    v = torch.randn_like(k)
    out = torch.empty_like(q)
    ours = kernel.prepare_dense(q, k, v, causal=args.causal, out=out)

    def cudnn():
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=args.causal, enable_gqa=hk != args.heads)

    flops = 4 * args.batch * args.heads * args.seqlen * args.seqlen * d / (2 if args.causal else 1)
    loop, no_flush = Timer(runs=args.runs), Timer(runs=args.runs, flush_l2=False)
    for name, fn in (("ours", ours), ("cudnn", cudnn), ("ours", ours), ("cudnn", cudnn)):
        row = {"impl": name, "shape": f"B{args.batch} H{args.heads}/{hk} L{args.seqlen}{' causal' if args.causal else ''}"}
        for how, timing in (("loop", lambda: loop.median_ms(fn)), ("no-flush", lambda: no_flush.median_ms(fn)),
                            ("isolated", lambda: isolated_ms(fn, loop.flush))):
            with Sampler() as s:
                ms = timing()
            row[how] = {"ms": round(ms, 4), "tflops": round(flops / ms / 1e9, 1), "sm_mhz": s.mhz and round(s.mhz),
                        "watts": s.watts and round(s.watts)}
        print(json.dumps(row), flush=True)
    return 0


def sequence(args) -> int:
    """Ours on the probe's shape: alone, then after the rows hopper_check times before it."""
    import torch

    from qimeng_serve.bench import Timer
    from qimeng_serve.runtime.sm90 import load_sm90_kernels

    kernel = load_sm90_kernels(args.kernels, names={args.kernel})[args.kernel]
    dt = {"f16": torch.float16, "bf16": torch.bfloat16}[kernel.meta["dtype"]]
    d = kernel.meta["head_dim"]
    timer, warm = Timer(runs=args.runs), Timer(runs=args.runs, flush_l2=False)
    target = (args.batch, args.heads, args.heads_kv or args.heads, args.seqlen, args.causal)
    before = [(8, 16, 16, 2048, False), (8, 16, 16, 2048, True), (8, 32, 32, 2048, True), (2, 32, 32, 8192, True),
              (8, 64, 8, 2048, True), (2, 64, 8, 8192, True)]

    def timed(b, h, hk, length, causal, label):
        q = torch.randn(b, h, length, d, dtype=dt, device="cuda")
        k = torch.randn(b, hk, length, d, dtype=dt, device="cuda")
        v = torch.randn(b, hk, length, d, dtype=dt, device="cuda")
        out = torch.empty_like(q)
        if label == "earlier row" and args.allocate_only:
            out.zero_()  # the row's memory written, no attention run
            del q, k, v, out
            if not args.keep_cache:
                torch.cuda.empty_cache()
            return
        run = kernel.prepare_dense(q, k, v, causal=causal, out=out)
        if args.driver_counter:
            run = driver_counter_launch(kernel, q, k, v, causal, out)
        run()
        ms = timer.median_ms(run)
        spread = [round(min(timer.last_ms), 4), round(max(timer.last_ms), 4)]
        flops = 4 * b * h * length * length * d / (2 if causal else 1)
        row = {"label": label, "shape": f"B{b} H{h}/{hk} L{length}{' causal' if causal else ''}",
               "ms": round(ms, 4), "tflops": round(flops / ms / 1e9, 1), "min_max": spread,
               "q_addr": hex(q.data_ptr())}
        if label != "earlier row":  # host time of the launcher and of its tile counter's zeroing, GPU idle
            row["host_us"] = host_us(run, kernel)
            row["busy"] = busy_host(run, timer.flush, args.runs)
        if label != "earlier row":  # the same launches after a flush that reads instead of writes
            read_ms = read_flushed_ms(run, timer.flush, args.runs)
            row["read_flush"] = {"ms": round(read_ms, 4), "tflops": round(flops / read_ms / 1e9, 1)}
            warm_ms = warm.median_ms(run)  # back to back, nothing between the launches but the spin
            row["no_flush"] = {"ms": round(warm_ms, 4), "tflops": round(flops / warm_ms / 1e9, 1)}
        print(json.dumps(row), flush=True)
        del q, k, v, out
        if not args.keep_cache:
            torch.cuda.empty_cache()

    timed(*target, "fresh")
    for shape in before:
        timed(*shape, "earlier row")
    timed(*target, "after the earlier rows")
    timed(*target, "again")
    return 0


if __name__ == "__main__":
    sys.exit(main())
