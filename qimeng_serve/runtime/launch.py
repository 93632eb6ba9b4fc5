"""Launch a loaded kernel on torch's current stream, so CUDA graphs capture it."""

from __future__ import annotations

import ctypes

from qimeng_serve.runtime.abi import AttnParams
from qimeng_serve.runtime.formula import evaluate
from qimeng_serve.runtime.loader import LoadedKernel, RuntimeLoadError, check, driver

TMA_ABI = "attn_params+tma_descs"  # (const qm::AttnParams p, const __grid_constant__ qm::sm90::TmaDescs tma)
PERSISTENT_ABI = "attn_params+tma_descs+tile_counter"  # the same, then `int* tile_counter` (tiles=persistent)


def launch(kernel: LoadedKernel, params: AttnParams, sizes: dict[str, int], stream=None, descs=None) -> None:
    """One launch. `descs` (runtime.tma_sm90.TmaDescs) is the second parameter of kernels whose manifest
    entry says `"abi": "attn_params+tma_descs"` (the sm90a ones), and only of those; a persistent one
    (`"abi": "attn_params+tma_descs+tile_counter"`) also gets a tile counter, zeroed here on the stream."""
    import torch

    launch_meta = kernel.meta["launch"]
    two_params = kernel.meta.get("abi") in (TMA_ABI, PERSISTENT_ABI)
    if two_params != (descs is not None):
        raise RuntimeLoadError(f"{kernel.name} takes {'AttnParams and TmaDescs' if two_params else 'AttnParams only'}, "
                               f"the launch passed {'both' if descs is not None else 'AttnParams only'}",
                               fix="launch sm90a kernels through KernelSet (it encodes their TMA maps)")
    drv = driver()
    grid = [evaluate(f, sizes) for f in launch_meta["grid"]] + [1, 1]
    if min(grid[:3]) <= 0:
        return  # an empty batch: nothing to launch
    stream = stream or torch.cuda.current_stream()
    handle = stream.cuda_stream
    if two_params:
        from qimeng_serve.runtime.tma_sm90 import launch_args, zeroed_tile_counter

        counter = zeroed_tile_counter(stream) if kernel.meta.get("abi") == PERSISTENT_ABI else None
        # _keep: the parameters stay alive through the call
        args, _keep = launch_args(params, descs, None if counter is None else counter.data_ptr())
    else:
        args = (ctypes.c_void_p * 1)(ctypes.addressof(params))
    check(drv.cuLaunchKernel(kernel.function, grid[0], grid[1], grid[2], launch_meta["threads"], 1, 1,
                             launch_meta["smem_bytes"], drv.CUstream(handle), ctypes.addressof(args), 0),
          f"launching {kernel.name}")
