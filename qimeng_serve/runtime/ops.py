"""The Python API over a loaded bundle: dense prefill, paged prefill, paged decode.

Tensors are torch CUDA tensors; every launch goes to torch's current stream and reads strides,
so views (vLLM's KV cache halves, transposed layouts) work without copies.

Layouts:
- dense_prefill: q [B, Hq, Lq, D], k/v [B, Hkv, Lk, D] -> out like q.
- paged: q [tokens, Hq, D] (sequence b = rows cu_seqlens_q[b] .. cu_seqlens_q[b+1]),
  k_cache / v_cache [num_blocks, page_size, Hkv, D] (any strides), block_table [B, max_blocks] int32,
  seqlens_k [B] int32 (context + new tokens) -> out [tokens, Hq, D].

Two kinds of kernel: the portable ones (one AttnParams parameter; SASS or PTX) and, in sm_90
bundles on an sm_90 GPU, the Hopper ones (manifest `"variant": "sm90a"`: TMA + GMMA, a second
TmaDescs parameter). `find` prefers the sm90a kernel of a (family, role, head size) when it was
loaded and the call fits its tensor maps (page size, 16-byte alignment, head size), else the
portable one. Where a family has two sm90a kernels, one tuned for causal calls and one for calls
without a mask (manifest `"tuned_mask"`), the one tuned for the call's mask comes first; either runs
any call. A kernel tuned for long key sequences (manifest `"min_seqlen_k"`, `"tuned_mask": "any"`)
comes before both for calls with at least that many keys, and after them otherwise. QIMENG_NO_SM90A=1
switches the sm90a kernels off.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType

from qimeng_serve.build.bundle import read_manifest
from qimeng_serve.env import sm90a_enabled
from qimeng_serve.errors import QimengError
from qimeng_serve.runtime.abi import AttnParams
from qimeng_serve.runtime.launch import launch
from qimeng_serve.runtime.loader import LoadedKernel, is_sm90a, load_bundle, num_sms
from qimeng_serve.runtime.tma_sm90 import (
    TmaMapError,
    dense_tile_maps,
    encode_descs,
    paged_tile_maps,
)

LOG2E = 1.4426950408889634
_TORCH_DTYPE = {"f16": "float16", "bf16": "bfloat16"}


class NoKernelError(QimengError):
    """The bundle has no kernel for the asked op, dtype and head size."""


class CallDoesNotFit(NoKernelError):
    """A pinned kernel (KernelSet.pinned) cannot run this call (an sm90a kernel and its tensor maps)."""


# which tensor-map layout an sm90a kernel takes -> the geometry (tma_sm90: dense_tile_maps / paged_tile_maps)
_TMA_MAPS = {"dense": dense_tile_maps, "paged": paged_tile_maps}


def sm90a_maps(meta: dict, layout: str, dtype: str, q, k, v, out=None):
    """(the TMA maps of q, k, v and out, '') when the sm90a kernel of manifest entry `meta` can run a call on these
    tensors (`layout`: dense q/k/v [B, H, L, D], or paged q [tokens, Hq, D] with caches [blocks, page,
    Hkv, D]), else (None, why not). Pure: reads shapes, strides and data_ptr(), no GPU."""
    if meta.get("tma_layout") != layout:
        return None, f"its tensor maps are {meta.get('tma_layout')!r}, the call is {layout}"
    try:
        return _TMA_MAPS[layout](q, k, v, dtype, meta["tensor_maps"], out), ""
    except TmaMapError as exc:
        return None, exc.message


def sm90a_fit(meta: dict, layout: str, dtype: str, q, k, v, out=None) -> str:
    """'' when the sm90a kernel of `meta` can run this call, else why not (sm90a_maps without the maps)."""
    return sm90a_maps(meta, layout, dtype, q, k, v, out)[1]


def _key(meta: dict) -> tuple[str, str, int]:
    return meta["family"], meta["role"], meta["spec"]["head_dim"]


def tuned_for(meta: dict, causal: bool | None) -> bool:
    """Whether an sm90a kernel's params were chosen for calls of this mask (entries from before the
    field was written were built for causal calls; `any`: for both)."""
    return causal is None or meta.get("tuned_mask", "causal") in ("any", "causal" if causal else "full")


def preference(meta: dict, causal: bool | None, seqlen_k: int | None) -> int:
    """Where an sm90a kernel ranks for a call (lower first): a long-sequence kernel (`min_seqlen_k`) first
    for calls with at least that many keys, then the kernel tuned for the call's mask, then the other
    mask's, and a long-sequence kernel last for shorter calls (or when the call's length is not given)."""
    least = meta.get("min_seqlen_k", 0)
    if least:
        return 0 if seqlen_k is not None and seqlen_k >= least else 3
    return 1 if tuned_for(meta, causal) else 2


def index_kernels(kernels) -> tuple[dict[tuple, LoadedKernel], dict[tuple, list[LoadedKernel]]]:
    """(family, role, head size) -> the portable kernel, and -> the sm90a kernels (one per tuned mask)."""
    portable, sm90a = {}, {}
    for k in kernels:
        if is_sm90a(k.meta):
            sm90a.setdefault(_key(k.meta), []).append(k)
        else:
            portable[_key(k.meta)] = k
    return portable, sm90a


class KernelSet:
    """Every kernel of one bundle, loaded once, found by (family, role, head size)."""

    # set by __init__; class defaults keep a KernelSet made without loading (tests) usable
    _sm90a: Mapping = MappingProxyType({})
    _pinned: LoadedKernel | None = None
    last_kernel = ""

    def __init__(self, bundle: Path, prefer: str = "auto") -> None:
        self.path = Path(bundle)
        self.manifest = read_manifest(self.path)
        self.dtype = self.manifest["dtype"]
        self.sm90a_enabled = sm90a_enabled()
        self.skipped: dict[str, str] = {}  # kernels of the bundle not loaded here -> why (doctor, validate)
        self.kernels: dict[str, LoadedKernel] = load_bundle(self.path, prefer=prefer, skipped=self.skipped,
                                                            sm90a=self.sm90a_enabled)
        self._by_key, self._sm90a = index_kernels(self.kernels.values())
        # the logits soft-cap compiled into this bundle's kernels (one value per kernel set)
        self.softcap = max((float(k.meta["spec"].get("softcap", 0.0)) for k in self.kernels.values()), default=0.0)
        self._kv_maps: dict = {}  # encoded K/V cache tensor maps (tma_sm90.paged_descs): vLLM's caches never move
        self._pinned: LoadedKernel | None = None
        self.last_kernel = ""  # the kernel the last dense_prefill / paged_prefill / paged_decode call ran

    def find(self, family: str, role: str, head_dim: int, softcap: float = 0.0,
             fits: Callable[[LoadedKernel], str] | None = None, causal: bool | None = None,
             seqlen_k: int | None = None) -> LoadedKernel:
        """The kernel for (family, role, head size): an sm90a one when it was loaded and `fits(kernel)`
        says '' (the caller can build its tensor maps for this call), in `preference` order for the call's
        mask (`causal`) and longest key sequence (`seqlen_k`), else the portable one. Without `fits` (a
        caller that launches with AttnParams only) always the portable one."""
        key = (family, role, head_dim)
        if self._pinned is not None and _key(self._pinned.meta) == key:
            candidates = [self._pinned]
        else:
            fast = self._sm90a.get(key, []) if fits is not None else []
            fast = sorted(fast, key=lambda k: preference(k.meta, causal, seqlen_k))  # stable: the manifest's order otherwise
            candidates = [*fast, *([self._by_key[key]] if key in self._by_key else [])]
        if not candidates:
            have = sorted({f"{f}/{r}/hd{d}" for f, r, d in (*self._by_key, *self._sm90a)})
            raise NoKernelError(f"{self.path.name} has no {family} {role} kernel for head size {head_dim} (it has {', '.join(have)})",
                                fix=f"build it: qimeng-serve build --arch {self.manifest['arch']}")
        misfits = []
        for kernel in candidates:
            if is_sm90a(kernel.meta):
                why = fits(kernel) if fits is not None else "this call launches with AttnParams only"
                if why:
                    misfits.append(f"{kernel.name}: {why}")
                    continue
            built = float(kernel.meta["spec"].get("softcap", 0.0))
            if built != float(softcap):
                # the soft-cap is compiled into a kernel: running it with another one gives wrong logits
                raise NoKernelError(f"{kernel.name} was built for logits soft-cap {built:g}, the call asks for {softcap:g}",
                                    fix="use a bundle built for this model's soft-cap")
            return kernel
        raise CallDoesNotFit(f"no {family} {role} kernel for head size {head_dim} in {self.path.name} fits this "
                             f"call: {'; '.join(misfits)}",
                             fix="pass 16-byte aligned tensors (strides multiples of 8 elements), or rebuild with "
                             "the portable kernels (they take any page size)")

    @contextmanager
    def pinned(self, name: str):
        """Calls within run kernel `name` for its (family, role, head size), sm90a or portable, with no
        fallback (a call it cannot take raises CallDoesNotFit): how validate and bench reach each kernel."""
        kernel = self.kernels[name]
        before, self._pinned = self._pinned, kernel
        try:
            yield kernel
        finally:
            self._pinned = before

    def _run(self, kernel: LoadedKernel, p: AttnParams, device, layout: str = "", tensors=(), maps=None) -> None:
        """Launch one kernel: the sm90a ones with their tensor maps (`maps`: what the fit check computed;
        K/V maps of paged calls come from the KernelSet's cache once encoded)."""
        descs = None
        if is_sm90a(kernel.meta):
            if maps is None:
                maps, why = sm90a_maps(kernel.meta, layout, self.dtype, *tensors)
                if maps is None:
                    raise CallDoesNotFit(f"{kernel.name} cannot run this call: {why}", fix="use the portable kernel")
            descs = encode_descs(maps, tensors, self._kv_maps if layout == "paged" else None)
        launch(kernel, p, self._sizes(p, device), descs=descs)
        self.last_kernel = kernel.name

    def _sizes(self, p: AttnParams, device) -> dict[str, int]:
        index = getattr(device, "index", None)
        return {**_sizes(p), "num_sms": num_sms(index)}

    def _fits(self, layout: str, q, k, v, maps: dict | None = None, out=None) -> Callable[[LoadedKernel], str]:
        """find()'s fit check for this call; the maps it computes are kept in `maps` (kernel name -> maps)."""
        def fits(kernel: LoadedKernel) -> str:
            computed, why = sm90a_maps(kernel.meta, layout, self.dtype, q, k, v, out)
            if maps is not None and computed is not None:
                maps[kernel.name] = computed
            return why
        return fits

    # -------------------------------------------------------------- dense
    def dense_prefill(self, q, k, v, *, causal: bool, softmax_scale: float | None = None, window: int = 0,
                      softcap: float = 0.0, out=None):
        import torch

        b, hq, lq, d = q.shape
        _, hkv, lk, _ = k.shape
        self._check(q, d, hq, hkv)
        out = torch.empty_like(q) if out is None else out
        _check_aligned(q=q, k=k, v=v, out=out)
        p = _base_params(q, d, softmax_scale, causal, window, softcap)
        p.q, p.k, p.v, p.o = q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr()
        p.q_batch_stride, p.q_head_stride, p.q_token_stride = q.stride(0), q.stride(1), q.stride(2)
        p.o_batch_stride, p.o_head_stride, p.o_token_stride = out.stride(0), out.stride(1), out.stride(2)
        p.k_batch_stride, p.k_head_stride, p.k_token_stride = k.stride(0), k.stride(1), k.stride(2)
        p.v_batch_stride, p.v_head_stride, p.v_token_stride = v.stride(0), v.stride(1), v.stride(2)
        p.batch, p.heads_q, p.heads_kv, p.max_seqlen_q, p.max_seqlen_k = b, hq, hkv, lq, lk
        maps: dict = {}
        kernel = self.find("dense_prefill", "attn", d, softcap, fits=self._fits("dense", q, k, v, maps, out),
                           causal=causal, seqlen_k=lk)
        self._run(kernel, p, q.device, "dense", (q, k, v, out), maps.get(kernel.name))
        return out

    # -------------------------------------------------------------- paged
    def paged_prefill(self, q, k_cache, v_cache, block_table, cu_seqlens_q, seqlens_k, max_seqlen_q: int,
                      max_seqlen_k: int, *, causal: bool = True, softmax_scale: float | None = None, window: int = 0,
                      softcap: float = 0.0, out=None):
        import torch

        out = torch.empty_like(q) if out is None else out
        p = self._paged_params(q, k_cache, v_cache, block_table, cu_seqlens_q, seqlens_k, max_seqlen_q,
                               max_seqlen_k, causal, softmax_scale, window, softcap, out)
        maps: dict = {}
        fits = self._fits("paged", q, k_cache, v_cache, maps, out)
        kernel = self.find("paged_prefill", "attn", q.shape[-1], softcap, fits=fits, causal=causal,
                           seqlen_k=max_seqlen_k)
        self._run(kernel, p, q.device, "paged", (q, k_cache, v_cache, out), maps.get(kernel.name))
        return out

    def decode_workspace(self, total_q: int, heads_q: int, head_dim: int, max_seqlen_k: int, device):
        """o_partial and lse for split-KV decode; allocate once (before CUDA-graph capture) and reuse."""
        import torch

        split = self.find("paged_decode", "split", head_dim, self.softcap).meta["params"]["SPLIT_KV"]
        n = max(1, math.ceil(max_seqlen_k / split))
        return (torch.empty(n, total_q, heads_q, head_dim, dtype=torch.float32, device=device),
                torch.empty(n, total_q, heads_q, dtype=torch.float32, device=device))

    def paged_decode(self, q, k_cache, v_cache, block_table, cu_seqlens_q, seqlens_k, max_seqlen_q: int,
                     max_seqlen_k: int, *, causal: bool = True, softmax_scale: float | None = None, window: int = 0,
                     softcap: float = 0.0, workspace=None, out=None):
        import torch

        d = q.shape[-1]
        split_kernel = self.find("paged_decode", "split", d, softcap)
        combine = self.find("paged_decode", "combine", d, softcap)
        group = q.shape[1] // k_cache.shape[2]
        rows = split_kernel.meta["params"]["BLOCK_M"]
        if group * max_seqlen_q > rows:
            raise NoKernelError(f"decode packs GQA group x query tokens = {group} x {max_seqlen_q} into {rows} rows",
                                fix="send sequences with more query tokens to paged_prefill")
        out = torch.empty_like(q) if out is None else out
        o_part, lse = workspace or self.decode_workspace(q.shape[0], q.shape[1], d, max_seqlen_k, q.device)
        p = self._paged_params(q, k_cache, v_cache, block_table, cu_seqlens_q, seqlens_k, max_seqlen_q,
                               max_seqlen_k, causal, softmax_scale, window, softcap, out)
        p.split_size = split_kernel.meta["params"]["SPLIT_KV"]
        p.num_splits = math.ceil(max_seqlen_k / p.split_size)
        if o_part.shape[0] < p.num_splits:
            raise QimengError(f"decode workspace holds {o_part.shape[0]} splits, {p.num_splits} needed",
                              fix="size it with decode_workspace(..., max_seqlen_k) for the longest context")
        p.o_partial, p.lse = o_part.data_ptr(), lse.data_ptr()
        self._run(split_kernel, p, q.device)
        self._run(combine, p, q.device)
        self.last_kernel = split_kernel.name
        return out

    def _paged_params(self, q, k_cache, v_cache, block_table, cu_seqlens_q, seqlens_k, max_seqlen_q, max_seqlen_k,
                      causal, softmax_scale, window, softcap, out) -> AttnParams:
        self._check(q, q.shape[2], q.shape[1], k_cache.shape[2])
        _check_aligned(q=q, k_cache=k_cache, v_cache=v_cache, out=out)
        return paged_params(q, k_cache, v_cache, block_table, cu_seqlens_q, seqlens_k, max_seqlen_q, max_seqlen_k,
                            causal=causal, softmax_scale=softmax_scale, window=window, softcap=softcap, out=out)

    def _check(self, q, d: int, hq: int, hkv: int) -> None:
        if str(q.dtype).split(".")[-1] != _TORCH_DTYPE[self.dtype]:
            raise NoKernelError(f"{self.path.name} holds {self.dtype} kernels, the inputs are {q.dtype}",
                                fix=f"pass {_TORCH_DTYPE[self.dtype]} tensors or load the bundle of that dtype")
        if hq % hkv:
            raise QimengError(f"{hq} query heads are not a multiple of {hkv} KV heads", fix="check the model's head counts")
        if q.stride(-1) != 1:
            raise QimengError("the head dimension must be contiguous (stride 1)", fix="call .contiguous() on the input")


def _check_aligned(**tensors) -> None:
    """Every kernel (portable or sm90a) reads 16-byte vectors from 16-byte aligned addresses (docs/kernels.md
    section 1): refuse a tensor that starts elsewhere here, before a launch faults and poisons the context."""
    bad = [f"{name} at {t.data_ptr():#x}" for name, t in tensors.items() if t.data_ptr() % 16]
    if bad:
        raise QimengError(f"the kernels need 16-byte aligned tensors; {', '.join(bad)} is not",
                          fix="pass tensors whose data starts on a 16-byte boundary (.contiguous() makes a copy that does)")


def paged_params(q, k_cache, v_cache, block_table, cu_seqlens_q, seqlens_k, max_seqlen_q: int, max_seqlen_k: int, *,
                 causal: bool, softmax_scale: float | None, window: int, softcap: float, out) -> AttnParams:
    """AttnParams of a paged call (the layouts of this module's docstring); no checks (KernelSet's do)."""
    tokens, hq, d = q.shape
    num_blocks, page, hkv, _ = k_cache.shape
    p = _base_params(q, d, softmax_scale, causal, window, softcap)
    p.q, p.k, p.v, p.o = q.data_ptr(), k_cache.data_ptr(), v_cache.data_ptr(), out.data_ptr()
    p.cu_seqlens_q, p.seqlens_k, p.block_table = cu_seqlens_q.data_ptr(), seqlens_k.data_ptr(), block_table.data_ptr()
    p.q_token_stride, p.q_head_stride = q.stride(0), q.stride(1)
    p.o_token_stride, p.o_head_stride = out.stride(0), out.stride(1)
    # paged: "batch" stride = page (block) stride, "token" stride = slot stride
    p.k_batch_stride, p.k_token_stride, p.k_head_stride = k_cache.stride(0), k_cache.stride(1), k_cache.stride(2)
    p.v_batch_stride, p.v_token_stride, p.v_head_stride = v_cache.stride(0), v_cache.stride(1), v_cache.stride(2)
    p.block_table_stride = block_table.stride(0)
    p.batch, p.heads_q, p.heads_kv = block_table.shape[0], hq, hkv
    p.max_seqlen_q, p.max_seqlen_k, p.page_size = max_seqlen_q, max_seqlen_k, page
    return p


def _base_params(q, d: int, softmax_scale, causal: bool, window: int, softcap: float) -> AttnParams:
    if window == 1:
        raise QimengError("a sliding window of 1 key is not supported", fix="use a window of at least 2, or 0 for none")
    p = AttnParams()
    scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(d)
    p.softmax_scale_log2 = scale * LOG2E
    p.softcap = softcap
    p.causal = int(causal)
    p.window_left = window - 1 if window > 0 else 0
    return p


def _sizes(p: AttnParams) -> dict[str, int]:
    """The runtime names launch formulas use."""
    return {"batch": p.batch, "heads_q": p.heads_q, "heads_kv": p.heads_kv,
            "max_seq_q": p.max_seqlen_q, "max_seq_k": p.max_seqlen_k}
