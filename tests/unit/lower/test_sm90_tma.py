"""The host side of the sm_90a kernels' TMA parameter: tensor-map geometry for strided tensors, the
384-byte TmaDescs parameter, and the errors for tensors TMA cannot describe. (Encoding needs the
CUDA driver; scripts/hopper_check.py exercises it on a GPU.)"""

import ctypes

import pytest
import torch

from qimeng_serve.runtime.abi import AttnParams
from qimeng_serve.runtime.tma_sm90 import (
    DESCS_BYTES,
    TmaDescs,
    TmaMapError,
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
    blobs = [bytes([i]) * 128 for i in (1, 2, 3)]
    descs = pack_descs(*blobs)
    assert ctypes.sizeof(TmaDescs) == DESCS_BYTES == 384
    assert ctypes.string_at(ctypes.addressof(descs), 384) == b"".join(blobs)
    with pytest.raises(TmaMapError, match="128 bytes"):
        pack_descs(b"x", blobs[1], blobs[2])
    params = AttnParams()
    args, keep = launch_args(params, descs)
    assert [args[0], args[1]] == [ctypes.addressof(params), ctypes.addressof(descs)] and keep == (params, descs)
