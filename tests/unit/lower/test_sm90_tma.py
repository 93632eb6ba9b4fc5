"""The host side of the sm_90a kernels' TMA parameter: tensor-map geometry for strided tensors, the
512-byte TmaDescs parameter (Q, K, V and O's maps), and the errors for tensors TMA cannot describe. (Encoding needs the
CUDA driver; scripts/hopper_check.py exercises it on a GPU.)"""

import ctypes

import pytest
import torch

from qimeng_serve.runtime.abi import AttnParams
from qimeng_serve.runtime.tma_sm90 import (
    DESCS_BYTES,
    TmaDescs,
    TmaMapError,
    dense_tile_maps,
    launch_args,
    pack_descs,
    tile_map,
)


def test_contiguous_bhld_tensor():
    t = torch.empty(2, 8, 1000, 128, dtype=torch.bfloat16)
    tm = tile_map(t.shape, t.stride(), "bf16", 128)
    assert tm.dims == (128, 1000, 8, 2)  # (D, positions, heads, batch): innermost first
    assert tm.strides == (256, 1000 * 256, 8 * 1000 * 256)  # bytes
    assert tm.box == (64, 128, 1, 1)


def test_strided_view_keeps_its_strides():
    base = torch.empty(2, 1000, 8, 64, dtype=torch.float16)  # [B, L, H, D] seen as [B, H, L, D]
    t = base.permute(0, 2, 1, 3)
    tm = tile_map(t.shape, t.stride(), "f16", 64)
    assert tm.dims == (64, 1000, 8, 2) and tm.strides == (8 * 64 * 2, 64 * 2, 1000 * 8 * 64 * 2)


@pytest.mark.parametrize("shape, strides, address, match", [
    ((1, 1, 10, 128), (1280, 1280, 1, 10), 0, "contiguous"),
    ((1, 1, 10, 96), (960, 960, 96, 1), 0, "multiple of 64"),
    ((1, 1, 10, 64), (650, 650, 65, 1), 0, "16-byte aligned"),
    ((1, 1, 10, 64), (640, 640, 64, 1), 8, "16-byte aligned"),
])
def test_tensors_tma_cannot_describe(shape, strides, address, match):
    with pytest.raises(TmaMapError, match=match):
        tile_map(shape, strides, "bf16", 64, address)


def test_box_rows_are_bounded():
    with pytest.raises(TmaMapError, match="1 to 256 rows"):
        tile_map((1, 1, 10, 64), (640, 640, 64, 1), "f16", 512)


def test_descs_parameter_layout():
    blobs = [bytes([i]) * 128 for i in (1, 2, 3, 4)]
    descs = pack_descs(*blobs)
    assert ctypes.sizeof(TmaDescs) == DESCS_BYTES == 512
    assert ctypes.string_at(ctypes.addressof(descs), 512) == b"".join(blobs)
    # a kernel that stores O from registers gets no O map: its 128 bytes stay zeros
    without_o = pack_descs(*blobs[:3])
    assert ctypes.string_at(ctypes.addressof(without_o), 512) == b"".join(blobs[:3]) + bytes(128)
    with pytest.raises(TmaMapError, match="128 bytes"):
        pack_descs(b"x", blobs[1], blobs[2])
    with pytest.raises(TmaMapError, match="128 bytes"):
        pack_descs(*blobs[:3], b"o")
    params = AttnParams()
    args, keep = launch_args(params, descs)
    assert [args[0], args[1]] == [ctypes.addressof(params), ctypes.addressof(descs)] and keep == (params, descs)


def test_o_map_only_for_a_kernel_that_stores_o_by_tma():
    """A manifest whose tensor_maps name "o" (STORE_TMA) gets out's map with a warpgroup's 64 rows a box;
    one without gets None there (its 128 bytes stay zeros); asking for O's map without out is an error."""
    q, k, v = (torch.empty(2, 8, 1000, 128, dtype=torch.bfloat16) for _ in range(3))
    out = torch.empty_like(q)
    qm, km, vm, om = dense_tile_maps(q, k, v, "bf16", {"q": 128, "k": 128, "v": 128, "o": 64}, out)
    assert om.dims == qm.dims and om.strides == qm.strides and om.box == (64, 64, 1, 1)
    assert dense_tile_maps(q, k, v, "bf16", {"q": 128, "k": 128, "v": 128}, out)[3] is None
    with pytest.raises(TmaMapError, match="stores O by TMA"):
        dense_tile_maps(q, k, v, "bf16", {"q": 128, "k": 128, "v": 128, "o": 64})
