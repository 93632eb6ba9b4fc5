"""Host side of the Hopper kernels' second parameter: the TMA tensor maps of Q, K, V and O.

A tensor map (CUtensorMap, 128 opaque bytes) can only be encoded by the driver on the host
(cuTensorMapEncodeTiled); the device has no encoder. So an sm_90a kernel is launched with two
parameters, `(const qm::AttnParams p, const __grid_constant__ qm::sm90::TmaDescs tma)`: the usual
232-byte AttnParams, then 512 bytes holding the maps of Q, K, V and O (docs/kernels.md "Hopper"). O's
map is encoded only for a kernel that stores O by TMA (its manifest's tensor_maps name "o"); for the
others it is zeros. (A kernel built when TmaDescs held three maps reads the first 384 bytes.)

Each map views a [batch, heads, positions, D] tensor (any strides, D contiguous) as the 4-D tensor
(D, positions, heads, batch) with a {64, rows, 1, 1} box and the 128-byte swizzle; positions past
the end read as zeros (the kernels' masks hide them). The geometry is plain Python (tile_map), the
encoding needs the CUDA driver (encode). Paged calls (vLLM's layout) map Q [tokens, Hq, D] as
[1, Hq, tokens, D] and each K/V cache [num_blocks, page, Hkv, D] as [num_blocks, Hkv, page, D]
(paged_descs), so a box reads part of one page of one KV head. O is mapped as Q is.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

from qimeng_serve.errors import QimengError
from qimeng_serve.runtime.abi import AttnParams

BOX_COLS = 64  # 64 16-bit values = one 128-byte swizzled row chunk
MAX_BOX_ROWS = 256
ALIGN = 16  # global address and strides, in bytes
MAP_BYTES = 128
DESCS_BYTES = 4 * MAP_BYTES


class TmaMapError(QimengError):
    """A tensor that a TMA tensor map cannot describe (layout, alignment) or a failed encode."""


@dataclass(frozen=True)
class TileMap:
    """The geometry of one tensor map, in the driver's order (innermost dimension first)."""

    dims: tuple[int, int, int, int]  # (D, positions, heads, batch)
    strides: tuple[int, int, int]  # bytes between positions, heads, batches
    box: tuple[int, int, int, int]  # (64, rows, 1, 1)
    dtype: str  # f16 | bf16


def tile_map(shape, strides, dtype: str, rows: int, address: int = 0) -> TileMap:
    """Geometry for a [batch, heads, positions, D] tensor with element `strides`, read `rows` at a time."""
    if dtype not in ("f16", "bf16"):
        raise TmaMapError(f"TMA maps here take f16 or bf16 tensors, not {dtype}", fix="pass f16 or bf16 tensors")
    b, h, length, d = (int(x) for x in shape)
    sb, sh, sl, sd = (int(x) for x in strides)
    if sd != 1:
        raise TmaMapError("the head dimension must be contiguous (stride 1) for TMA", fix="call .contiguous()")
    if d % BOX_COLS:
        raise TmaMapError(f"head size {d} is not a multiple of {BOX_COLS}", fix="use head size 64, 128 or 256")
    if not 1 <= rows <= MAX_BOX_ROWS:
        raise TmaMapError(f"a TMA box spans 1 to {MAX_BOX_ROWS} rows, not {rows}", fix="rebuild the kernel")
    elem = 2
    byte_strides = (sl * elem, sh * elem, sb * elem)
    bad = [s for s in byte_strides if s % ALIGN]
    if bad or address % ALIGN:
        raise TmaMapError(f"TMA needs 16-byte aligned addresses and strides; strides {byte_strides} bytes, "
                          f"address {address:#x}", fix="pass a contiguous tensor (or one whose strides are multiples "
                          "of 8 elements)")
    return TileMap((d, max(length, 1), max(h, 1), max(b, 1)), byte_strides, (BOX_COLS, rows, 1, 1), dtype)


def encode(tm: TileMap, address: int) -> bytes:
    """The driver's 128-byte CUtensorMap for a tensor at `address` (needs the CUDA driver)."""
    from cuda.bindings import driver as drv

    dtype = {"f16": drv.CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
             "bf16": drv.CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_BFLOAT16}[tm.dtype]
    err, tmap = drv.cuTensorMapEncodeTiled(
        dtype, 4, address,
        [drv.cuuint64_t(x) for x in tm.dims], [drv.cuuint64_t(x) for x in tm.strides],
        [drv.cuuint32_t(x) for x in tm.box], [drv.cuuint32_t(1)] * 4,
        drv.CUtensorMapInterleave.CU_TENSOR_MAP_INTERLEAVE_NONE,
        drv.CUtensorMapSwizzle.CU_TENSOR_MAP_SWIZZLE_128B,
        drv.CUtensorMapL2promotion.CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
        drv.CUtensorMapFloatOOBfill.CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,  # out of bounds reads zeros
    )
    if err != drv.CUresult.CUDA_SUCCESS:
        _, name = drv.cuGetErrorName(err)
        raise TmaMapError(f"cuTensorMapEncodeTiled failed ({name.decode() if isinstance(name, bytes) else name}) for "
                          f"dims {tm.dims}, strides {tm.strides}, box {tm.box}",
                          fix="check the tensor's alignment and that the GPU is sm_90")
    return ctypes.string_at(tmap.getPtr(), MAP_BYTES)


class TmaDescs(ctypes.Structure):
    """qm::sm90::TmaDescs: the maps of Q, K, V and O, 128 bytes each (the kernel's second parameter)."""

    _fields_ = [(name, ctypes.c_uint8 * MAP_BYTES) for name in ("q", "k", "v", "o")]


assert ctypes.sizeof(TmaDescs) == DESCS_BYTES


def pack_descs(q: bytes, k: bytes | None, v: bytes | None, o: bytes | None = None) -> TmaDescs:
    """The parameter from encoded maps; a map given as None is zeros: O's for a kernel that stores O from
    registers, K's and V's for a paged kernel that gathers K and V with cp.async."""
    descs = TmaDescs()
    for name, blob in (("q", q), ("k", k), ("v", v), ("o", o)):
        if blob is None:
            continue
        if len(blob) != MAP_BYTES:
            raise TmaMapError(f"a tensor map is {MAP_BYTES} bytes, got {len(blob)} for {name}", fix="re-encode it")
        ctypes.memmove(getattr(descs, name), blob, MAP_BYTES)
    return descs


def _needs_out(rows: dict[str, int], out) -> None:
    if "o" in rows and out is None:
        raise TmaMapError("this kernel stores O by TMA, and no output tensor was given for its map",
                          fix="pass out= (shaped like q)")


def dense_tile_maps(q, k, v, dtype: str, rows: dict[str, int], out=None) -> tuple:
    """The geometry of dense_descs (no driver): the maps of q, k, v and (when `rows` names "o") out,
    else None in its place. Raises TmaMapError for a tensor TMA cannot describe."""
    _needs_out(rows, out)
    return tuple(tile_map(t.shape, t.stride(), dtype, rows[name], t.data_ptr()) if name in rows else None
                 for name, t in (("q", q), ("k", k), ("v", v), ("o", out)))


def dense_descs(q, k, v, dtype: str, rows: dict[str, int], out=None) -> TmaDescs:
    """Maps for torch tensors q [B, Hq, Lq, D], k / v [B, Hkv, Lk, D] and out (like q); rows = the kernel's boxes."""
    return encode_descs(dense_tile_maps(q, k, v, dtype, rows, out), (q, k, v, out))


# ------------------------------------------------------------------ paged tensors (vLLM's layout)
def paged_q_map(shape, strides, dtype: str, rows: int, address: int = 0) -> TileMap:
    """Q (or O) of a paged call, [tokens, Hq, D], seen as a [1, Hq, tokens, D] tensor: the kernel reads
    rows cu_seqlens_q[b] + i of head h as position cu_seqlens_q[b] + i of batch 0."""
    tokens, hq, d = (int(x) for x in shape)
    s_tok, s_head, s_d = (int(x) for x in strides)
    # the batch dimension has extent 1, so its stride is never used; one past the tokens keeps it aligned
    batch_stride = max(tokens, 1) * s_tok
    return tile_map((1, hq, tokens, d), (batch_stride, s_head, s_tok, s_d), dtype, rows, address)


def paged_kv_rows(page_size: int, block_n: int) -> int:
    """Box rows of a K/V cache map: one page, or one BLOCK_N tile when pages are larger."""
    return min(int(page_size), int(block_n))


def paged_kv_map(shape, strides, dtype: str, rows: int, address: int = 0) -> TileMap:
    """A K or V cache [num_blocks, page, Hkv, D] (any strides) seen as [num_blocks, Hkv, page, D]:
    a box reads `rows` slots of one page and one KV head."""
    blocks, page, hkv, d = (int(x) for x in shape)
    s_block, s_slot, s_head, s_d = (int(x) for x in strides)
    return tile_map((blocks, hkv, page, d), (s_block, s_head, s_slot, s_d), dtype, rows, address)


def paged_page_fit(page_size: int, block_n: int | None) -> str:
    """'' when the sm90a paged kernel handles this page size, else why not: its pages hold a multiple of
    8 rows (a TMA box's swizzle atom; the gather's 8-row segments), and with K/V maps (block_n given)
    a K/V tile is whole pages or a whole part of one."""
    page = int(page_size)
    if page <= 0 or page % 8:
        return f"page size {page} is not a multiple of 8"
    if block_n is None:  # the cp.async gather: any multiple of 8
        return ""
    bn = int(block_n)
    if max(page, bn) % min(page, bn):
        return f"page size {page} and the kernel's BLOCK_N {bn} do not divide one another"
    return ""


GATHER_STRIDE_LIMIT = 1 << 31  # the gather keeps its page and slot strides in bytes as 32-bit ints


def gather_stride_fit(strides, page: int, element_bytes: int) -> str:
    """'' when the gathering kernel's 32-bit byte strides hold a cache of these strides (elements, vLLM's
    [num_blocks, page, Hkv, D] order), else why not: the page stride and a page's last slot."""
    s_block, s_slot = int(strides[0]) * element_bytes, int(strides[1]) * element_bytes
    if max(s_block, int(page) * s_slot) >= GATHER_STRIDE_LIMIT:
        return f"page stride {s_block} B or page span {int(page) * s_slot} B is 2 GiB or more"
    return ""


def paged_tile_maps(q, k_cache, v_cache, dtype: str, rows: dict[str, int], out=None) -> tuple:
    """The geometry of paged_descs (no driver; O's map, mapped as Q's, when `rows` names "o", else None);
    raises TmaMapError for a tensor or page size TMA cannot take."""
    _needs_out(rows, out)
    page = int(k_cache.shape[1])
    why = paged_page_fit(page, rows.get("k"))
    if why:
        fix = (f"use a page size that is a multiple of 8 and divides (or is a multiple of) {rows['k']}" if "k" in rows
               else "use a page size that is a multiple of 8")
        raise TmaMapError(why, fix=f"{fix}; other calls run the portable kernel")
    # no K/V map: the kernel gathers K and V itself with 16-byte cp.async, which asks what a map of
    # 8-row boxes asks (16-byte aligned address and strides, D contiguous): checked, not encoded
    gathered = "k" not in rows
    if gathered:
        for name, cache in (("K", k_cache), ("V", v_cache)):
            why = gather_stride_fit(cache.stride(), page, cache.element_size())
            if why:
                raise TmaMapError(f"the {name} cache's {why}",
                                  fix="use a cache whose pages are under 2 GiB apart; other calls run the portable kernel")
    kv_rows = 8 if gathered else paged_kv_rows(page, rows["k"])
    kv_maps = tuple(paged_kv_map(c.shape, c.stride(), dtype, kv_rows, c.data_ptr()) for c in (k_cache, v_cache))
    return (paged_q_map(q.shape, q.stride(), dtype, rows["q"], q.data_ptr()),
            *((None, None) if gathered else kv_maps),
            paged_q_map(out.shape, out.stride(), dtype, rows["o"], out.data_ptr()) if "o" in rows else None)


def paged_descs(q, k_cache, v_cache, dtype: str, rows: dict[str, int], cache: dict | None = None,
                out=None) -> TmaDescs:
    """Maps for a paged call: q [tokens, Hq, D], k_cache / v_cache [num_blocks, page, Hkv, D].

    `cache` (a dict the caller keeps) holds the encoded K/V maps, keyed by (data_ptr, shape, strides,
    dtype, rows): a KV cache that never moves (vLLM's) is encoded once. Q changes every call."""
    return encode_descs(paged_tile_maps(q, k_cache, v_cache, dtype, rows, out), (q, k_cache, v_cache, out), cache)


def encode_descs(maps, tensors, kv_cache: dict | None = None) -> TmaDescs:
    """The TmaDescs parameter from the maps of (q, k, v, o) and the tensors (q, k, v, out). Q's and O's
    maps are encoded every call (a None O map stays zeros); K's and V's go through `kv_cache` when
    given, keyed by (address, TileMap): the TileMap holds the shape, byte strides, dtype and box rows,
    so a hit is the very map the driver would encode again."""
    (qm, km, vm, om), (q, k, v, out) = maps, tensors
    blobs = [encode(qm, q.data_ptr())]
    for tm, t in ((km, k), (vm, v)):
        if tm is None:  # a gathering kernel's K / V: zeros
            blobs.append(None)
            continue
        key = (t.data_ptr(), tm)
        blob = kv_cache.get(key) if kv_cache is not None else None
        if blob is None:
            blob = encode(tm, t.data_ptr())
            if kv_cache is not None:
                if len(kv_cache) >= KV_MAP_CACHE_SIZE:
                    kv_cache.pop(next(iter(kv_cache)))  # the oldest: a KV cache that went away
                kv_cache[key] = blob
        blobs.append(blob)
    return pack_descs(*blobs, encode(om, out.data_ptr()) if om is not None else None)


KV_MAP_CACHE_SIZE = 1024  # two per layer: room for any model's KV cache tensors


def launch_args(params: AttnParams, descs: TmaDescs, tile_counter: int | None = None):
    """The kernelParams array for cuLaunchKernel: pointers to the two parameters (three with a
    persistent kernel's tile counter, a device address), kept alive together."""
    if tile_counter is None:
        args = (ctypes.c_void_p * 2)(ctypes.addressof(params), ctypes.addressof(descs))
        return args, (params, descs)
    counter = ctypes.c_void_p(tile_counter)
    args = (ctypes.c_void_p * 3)(ctypes.addressof(params), ctypes.addressof(descs), ctypes.addressof(counter))
    return args, (params, descs, counter)
