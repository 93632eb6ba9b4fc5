"""`qimeng-serve bench` (needs a GPU): our kernels beside the anchors, measured in the same run.

Each row names the kernel that ran (`Row.kernel`): the one KernelSet picks, which on an H100 / H200
is the sm90a kernel for dense prefill; `QIMENG_NO_SM90A=1 qimeng-serve bench` times the portable ones.

Anchors: PyTorch SDPA's flash backend (FA2), cuDNN SDPA, FlexAttention (compiled), and for decode
dense SDPA. FLOPs = 4 * B * Hq * Lq * Lk * D, halved for causal. Every timing: inputs made once
per configuration, L2 flushed (a 256 MB write) before each run, CUDA events on the current stream,
median of the runs. A figure above the roofline measured in the same run is rejected, not printed.
The GPU spins (about half a millisecond) before each flush, so the host has enqueued the flush, the
events and the launch before the GPU reaches them: the events hold GPU time only, for every
contender alike. Without it a launcher's host overhead (Python, tens of microseconds) counted
whenever it outlasted the flush, as a fixed cost per run that weighs most on short sequences.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

SWEEP_L = (512, 1024, 2048, 4096, 8192, 16384)
GQA_CONFIGS = {"llama2-7b": (32, 32), "qwen2.5-72b": (64, 8), "llama3.1-405b": (128, 8)}
DECODE_CTX = (8192, 16384, 32768, 65536, 131072)


@dataclass
class Row:
    tag: str
    dtype: str
    batch: int
    heads_q: int
    heads_kv: int
    seqlen: int
    head_dim: int
    causal: bool
    unit: str  # TFLOPS or GB/s
    ours: float | None
    fa2: float | None = None
    cudnn: float | None = None
    flex: float | None = None
    sdpa: float | None = None  # decode anchor: dense SDPA
    kernel: str = ""  # the bundle kernel that ran `ours` (on an H100 the sm90a one for dense prefill)


class Timer:
    # ~0.5 ms at H100 clocks: longer than any launcher's host overhead (ours enqueues in 19-150 us with the
    # GPU busy, docs/perf-notes.md "twelfth run", run 19). Session 14 timed a 4M spin too: it lifted our
    # llama3.1-405b row from 529-537 to 576-579 TFLOPS (cuDNN unmoved) for a reason not found, so the
    # method stays as every earlier figure was measured
    SPIN_CYCLES = 1_000_000

    def __init__(self, runs: int = 20, warmup: int = 3, flush_l2: bool = True) -> None:
        import torch

        self.runs, self.warmup = runs, warmup
        # flush_l2=False: back-to-back runs on a warm L2 (a diagnostic; every reported figure flushes)
        self.flush = torch.empty(256 * 1024 * 1024, dtype=torch.uint8, device="cuda") if flush_l2 else None

    def median_ms(self, fn) -> float:
        import torch

        for _ in range(self.warmup):
            fn()
        times = []
        stream = torch.cuda.current_stream()
        for _ in range(self.runs):
            torch.cuda._sleep(self.SPIN_CYCLES)  # the host enqueues what follows while the GPU spins
            if self.flush is not None:
                self.flush.zero_()  # evict L2 so every run reads from HBM
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(stream)
            fn()
            end.record(stream)
            end.synchronize()
            times.append(start.elapsed_time(end))
        self.last_ms = times  # every run of the last call, for a caller that reports the spread
        return statistics.median(times)


def measure_ceilings(timer: Timer) -> dict[str, float]:
    """The two roofs every figure is checked against: bf16 matmul TFLOPS and copy GB/s."""
    import torch

    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    mm = 2 * 8192**3 / timer.median_ms(lambda: a @ b) / 1e9
    src = torch.randn(512 * 1024**2, dtype=torch.float32, device="cuda")  # 2 GiB
    dst = torch.empty_like(src)
    nbytes = src.numel() * 4
    copy = 2 * nbytes / timer.median_ms(lambda: dst.copy_(src)) / 1e6
    # a read-only stream (what attention decode is) can outrun a copy's read + write figure
    read = nbytes / timer.median_ms(lambda: src.sum()) / 1e6
    return {"matmul_bf16_tflops": mm, "copy_gbps": copy, "read_gbps": read}


def _tflops(b, hq, lq, lk, d, causal, ms) -> float:
    flops = 4 * b * hq * lq * lk * d / (2 if causal else 1)
    return flops / ms / 1e9


def _sdpa(backend, q, k, v, causal):
    import torch
    from torch.nn.attention import sdpa_kernel

    def run():
        with sdpa_kernel(backend):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal,
                                                                    enable_gqa=q.shape[1] != k.shape[1])
    return run


def _flex(q, k, v, causal):
    import torch
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    # a fresh compile per shape: dynamo recompiles flex_attention for every new shape and, past its
    # cache-size limit (8), runs it eagerly (it materialises the scores: 7-14 TFLOPS at 16k and on
    # the GQA rows, which the bench then reported as FlexAttention's speed)
    torch._dynamo.reset()
    compiled = torch.compile(flex_attention, dynamic=False)
    mask = None
    if causal:
        mask = create_block_mask(lambda b, h, qi, ki: qi >= ki, None, None, q.shape[2], k.shape[2], device="cuda")
    return lambda: compiled(q, k, v, block_mask=mask, enable_gqa=q.shape[1] != k.shape[1])


def _try(timer, make, *args):
    """Milliseconds, or None when an anchor does not support the configuration."""
    try:
        fn = make(*args)
        fn()
        return timer.median_ms(fn)
    except Exception:  # an anchor backend refusing a shape (e.g. no GQA) is data, not a failure
        return None


def bench_dense(ks, timer, tag, dtype, b, hq, hkv, l, d, causal, roof, flex: bool) -> Row:
    import torch
    from torch.nn.attention import SDPBackend

    tdt = {"f16": torch.float16, "bf16": torch.bfloat16}[dtype]
    q = torch.randn(b, hq, l, d, dtype=tdt, device="cuda")
    k = torch.randn(b, hkv, l, d, dtype=tdt, device="cuda")
    v = torch.randn(b, hkv, l, d, dtype=tdt, device="cuda")
    out = torch.empty_like(q)
    conv = lambda ms: None if ms is None else _checked(_tflops(b, hq, l, l, d, causal, ms), roof, "TFLOPS")  # noqa: E731
    ours = conv(timer.median_ms(lambda: ks.dense_prefill(q, k, v, causal=causal, out=out)))  # our failures raise
    kernel = ks.last_kernel
    return Row(tag, dtype, b, hq, hkv, l, d, causal, "TFLOPS", ours,
               fa2=conv(_try(timer, _sdpa, SDPBackend.FLASH_ATTENTION, q, k, v, causal)),
               cudnn=conv(_try(timer, _sdpa, SDPBackend.CUDNN_ATTENTION, q, k, v, causal)),
               flex=conv(_try(timer, _flex, q, k, v, causal)) if flex else None, kernel=kernel)


def bench_decode(ks, timer, dtype, ctx, roof) -> Row:
    import torch

    b, hq, hkv, d, page = 8, 32, 8, 128, 16
    tdt = {"f16": torch.float16, "bf16": torch.bfloat16}[dtype]
    blocks = b * ctx // page
    kc = torch.randn(blocks, page, hkv, d, dtype=tdt, device="cuda")
    vc = torch.randn(blocks, page, hkv, d, dtype=tdt, device="cuda")
    table = torch.randperm(blocks, device="cuda", dtype=torch.int32).view(b, ctx // page)
    q = torch.randn(b, hq, d, dtype=tdt, device="cuda")
    cu = torch.arange(b + 1, dtype=torch.int32, device="cuda")
    seqlens = torch.full((b,), ctx, dtype=torch.int32, device="cuda")
    ws = ks.decode_workspace(b, hq, d, ctx, "cuda")
    out = torch.empty_like(q)
    kv_bytes = 2 * b * ctx * hkv * d * q.element_size()
    conv = lambda ms: None if ms is None else _checked(kv_bytes / ms / 1e6, roof, "GB/s")  # noqa: E731
    ours = conv(timer.median_ms(lambda: ks.paged_decode(q, kc, vc, table, cu, seqlens, 1, ctx, workspace=ws, out=out)))
    qd = q.view(b, hq, 1, d)
    kd = torch.randn(b, hkv, ctx, d, dtype=tdt, device="cuda")
    vd = torch.randn(b, hkv, ctx, d, dtype=tdt, device="cuda")
    sdpa = lambda: torch.nn.functional.scaled_dot_product_attention(qd, kd, vd, enable_gqa=True)  # noqa: E731
    return Row("paged-decode", dtype, b, hq, hkv, ctx, d, True, "GB/s", ours, sdpa=conv(_try(timer, lambda: sdpa)),
               kernel=ks.last_kernel)


REJECTED: list[str] = []


def _checked(value: float, roof: dict, unit: str) -> float | None:
    """The figure, or None (and a note) when it is above the roofline measured in this run."""
    limit = (roof["matmul_bf16_tflops"] * 1.3 if unit == "TFLOPS"
             else max(roof["copy_gbps"], roof["read_gbps"]) * 1.05)
    if value > limit:
        REJECTED.append(f"{value:.0f} {unit} is above the measured roofline ({limit:.0f}): rejected")
        return None
    return value


def run_bench(ks_by_dtype: dict, out_dir: Path, *, quick: bool = False) -> list[Row]:
    import torch

    timer = Timer(runs=10 if quick else 20)
    roof = measure_ceilings(timer)
    rows: list[Row] = []
    for dtype, ks in ks_by_dtype.items():
        for d in (64, 128, 256):
            for causal in (False, True):
                for l in SWEEP_L:
                    flex = d == 128 and dtype == "bf16" and l in (1024, 4096, 16384)
                    rows.append(bench_dense(ks, timer, "sweep", dtype, 16384 // l, 2048 // d, 2048 // d, l, d, causal,
                                            roof, flex))
        for name, (hq, hkv) in GQA_CONFIGS.items():
            for l in (2048, 8192):
                rows.append(bench_dense(ks, timer, name, dtype, 16384 // l, hq, hkv, l, 128, True, roof, False))
        for ctx in DECODE_CTX:
            rows.append(bench_decode(ks, timer, dtype, ctx, roof))
    device = torch.cuda.get_device_name()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench.json").write_text(json.dumps({"device": device, "ceilings": roof, "rejected": REJECTED,
                                                    "rows": [asdict(r) for r in rows]}, indent=1))
    _plot(rows, device, out_dir / "bench.png")
    return rows


def _plot(rows: list[Row], device: str, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    sweep = [r for r in rows if r.tag == "sweep" and r.dtype == rows[0].dtype]
    panels = sorted({(r.head_dim, r.causal) for r in sweep})
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.5), squeeze=False)
    for ax, (d, causal) in zip(axes[0], panels):
        pts = sorted((r for r in sweep if r.head_dim == d and r.causal == causal), key=lambda r: r.seqlen)
        for key, label in (("ours", "qimeng"), ("fa2", "SDPA flash (FA2)"), ("cudnn", "cuDNN"), ("flex", "FlexAttention")):
            xs = [r.seqlen for r in pts if getattr(r, key)]
            if xs:
                ax.plot(xs, [getattr(r, key) for r in pts if getattr(r, key)], marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_title(f"D={d} {'causal' if causal else 'non-causal'}")
        ax.set_xlabel("sequence length")
        ax.set_ylabel("TFLOPS")
    handles = {}
    for ax in axes[0]:  # one legend for every series, whichever panels they appear in
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    axes[0][0].legend(handles.values(), handles.keys(), fontsize=7)
    fig.suptitle(f"{rows[0].dtype} forward, {device}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def fmt(v) -> str:
    return "-" if v is None else (f"{v:.0f}" if v >= 100 else f"{v:.1f}") if not math.isinf(v) else "inf"
