"""Shared pieces of the GPU-side vLLM scripts: results as JSON, the SDPA reference, KV-cache filling,
timing. Importable without a GPU and without vLLM (the CPU tests import it)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # qimeng_serve from the checkout (the GPU machine has no install)

from qimeng_serve.bench import Timer  # noqa: E402  (after the checkout is on the path)

# rel L2 / max abs limits against an fp32 SDPA reference on the same rounded inputs
TOLERANCE = {torch.float16: (3e-3, 2e-2), torch.bfloat16: (1.5e-2, 8e-2)}


# ------------------------------------------------------------------------------------------- results
@contextlib.contextmanager
def step_result(path: Path, step: str, **info):
    """Collect a step's result dict; always write it (an exception becomes status "error" with its
    traceback), so run_all.sh can go on to the next step and report every one."""
    result = {"step": step, "status": "running", "started": time.strftime("%Y-%m-%d %H:%M:%S"), **info}
    t0 = time.time()
    try:
        result.update(device_info())
        yield result
        if result["status"] == "running":
            result["status"] = "passed"
    except BaseException as exc:  # noqa: BLE001  (any failure, even an interrupt, must reach the JSON)
        result["status"] = "error"
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()
        print(result["traceback"], file=sys.stderr, flush=True)
    finally:
        result["seconds"] = round(time.time() - t0, 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"{step}: {result['status']} ({result['seconds']} s) -> {path}", flush=True)
    if result["status"] not in ("passed", "skipped"):
        sys.exit(1)


def device_info() -> dict:
    info = {"torch": torch.__version__, "qimeng_capability_override": os.environ.get("QIMENG_CAPABILITY")}
    try:
        import vllm

        info["vllm"] = vllm.__version__
    except ImportError:
        info["vllm"] = None
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name()
        info["capability"] = list(torch.cuda.get_device_capability())
    return info


# ------------------------------------------------------------------------------------------ reference
def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float, window: int = 0,
                        softcap: float = 0.0) -> torch.Tensor:
    """One request, fp32 torch SDPA: q [Lq, Hq, D], k/v [Lk, Hkv, D] (the whole context, new tokens last).
    Causal bottom-right aligned (query i sees key j iff j <= i + Lk - Lq); a window of W keys includes the
    diagonal; GQA by repeating KV heads."""
    lq, hq, _ = q.shape
    lk, hkv, _ = k.shape
    qf, kf, vf = (t.float().transpose(0, 1) for t in (q, k, v))  # [H, L, D]
    kf, vf = kf.repeat_interleave(hq // hkv, 0), vf.repeat_interleave(hq // hkv, 0)
    i = torch.arange(lq, device=q.device)[:, None] + (lk - lq)
    j = torch.arange(lk, device=q.device)[None, :]
    visible = j <= i
    if window:
        visible &= j > i - window
    if softcap:
        s = (qf @ kf.transpose(1, 2)) * scale
        s = softcap * torch.tanh(s / softcap)
        s = s.masked_fill(~visible, float("-inf"))
        out = torch.softmax(s, -1) @ vf
    else:
        out = torch.nn.functional.scaled_dot_product_attention(qf, kf, vf, attn_mask=visible, scale=scale)
    return out.transpose(0, 1)  # [Lq, Hq, D]


def compare(out: torch.Tensor, ref: torch.Tensor, dtype) -> dict:
    diff = (out.float() - ref).abs()
    nan = int(torch.isnan(out).sum())
    rel = float(torch.linalg.vector_norm(out.float() - ref) / torch.linalg.vector_norm(ref).clamp_min(1e-12))
    max_abs = float(diff.nan_to_num(float("inf")).max()) if out.numel() else 0.0
    rel_lim, abs_lim = TOLERANCE[dtype]
    return {"rel_l2": rel, "max_abs": max_abs, "nan": nan,
            "ok": nan == 0 and rel <= rel_lim and max_abs <= abs_lim}


# ------------------------------------------------------------------------------------- paged KV cache
def cache_slots(block_table_row: torch.Tensor, positions: torch.Tensor, block_size: int):
    """(block id, slot in block) of token positions of one request."""
    blocks = block_table_row.to(positions.device)[positions // block_size].long()
    return blocks, positions % block_size


def write_context(k_cache: torch.Tensor, v_cache: torch.Tensor, block_table_row: torch.Tensor, k: torch.Tensor,
                  v: torch.Tensor, block_size: int, upto: int) -> None:
    """Store positions [0, upto) of one request's K/V ([L, Hkv, D]) in K/V cache views [blocks, page, Hkv, D]."""
    if upto == 0:
        return
    pos = torch.arange(upto, device=k.device)
    blocks, slots = cache_slots(block_table_row, pos, block_size)
    k_cache[blocks, slots] = k[:upto].to(k_cache.dtype)
    v_cache[blocks, slots] = v[:upto].to(v_cache.dtype)


def read_context(k_cache: torch.Tensor, v_cache: torch.Tensor, block_table_row: torch.Tensor, length: int,
                 block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions [0, length) of one request, gathered back through the block table."""
    pos = torch.arange(length, device=k_cache.device)
    blocks, slots = cache_slots(block_table_row, pos, block_size)
    return k_cache[blocks, slots], v_cache[blocks, slots]


def split_kv(kv_cache: torch.Tensor, head_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """vLLM's [blocks, Hkv, page, 2D] cache -> K, V views [blocks, page, Hkv, D] (what every backend here reads)."""
    kv = kv_cache.transpose(1, 2)
    return kv[..., :head_size], kv[..., head_size:]


# -------------------------------------------------------------------------------------------- timing
class L2Flush:
    """Writing a buffer larger than L2 between timed runs, so every run reads K/V from HBM."""

    def __init__(self, device="cuda", megabytes: int = 256):
        self.buf = torch.empty(megabytes * 2**20, dtype=torch.uint8, device=device)

    def __call__(self) -> None:
        self.buf.zero_()


def time_cuda(fn, *, warmup: int = 3, iters: int = 20, flush: L2Flush | None = None) -> dict:
    """Median and spread of `fn` on the current stream, by CUDA events around each call alone. The
    GPU spins first (as qimeng_serve.bench.Timer does) so that the host has enqueued the call before
    the start event fires: the events hold GPU time, not the backend's Python overhead."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        torch.cuda._sleep(Timer.SPIN_CYCLES)
        if flush:
            flush()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return {"ms_median": times[len(times) // 2], "ms_min": times[0], "ms_max": times[-1], "iters": iters}


def attention_pairs(seq_lens, query_lens, window: int = 0) -> int:
    """Visible (query, key) pairs of a causal batch: the work, for FLOPs = 4 * D * Hq * pairs."""
    total = 0
    for s, q in zip(seq_lens, query_lens):
        ctx = s - q
        if window:
            total += sum(min(ctx + i + 1, window) for i in range(q))
        else:
            total += q * ctx + q * (q + 1) // 2
    return total


def kv_bytes(seq_lens, num_kv_heads: int, head_dim: int, dtype) -> int:
    """K and V bytes a decode step must read: the roofline's numerator for GB/s."""
    return 2 * sum(seq_lens) * num_kv_heads * head_dim * torch.empty((), dtype=dtype).element_size()


def seeded(seed: int, device="cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def ceil_div(a: int, b: int) -> int:
    return math.ceil(a / b)
