"""Launch a loaded kernel on torch's current stream, so CUDA graphs capture it."""

from __future__ import annotations

import ctypes

from qimeng_serve.runtime.abi import AttnParams
from qimeng_serve.runtime.formula import evaluate
from qimeng_serve.runtime.loader import LoadedKernel, RuntimeLoadError, check, driver

TMA_ABI = "attn_params+tma_descs"  # (const qm::AttnParams p, const __grid_constant__ qm::sm90::TmaDescs tma)
PERSISTENT_ABI = "attn_params+tma_descs+tile_counter"  # the same, then `int* tile_counter` (tiles=persistent)
# tiles=persistent as built now: the kernel leaves its counter zero, so a stream keeps one (runtime/tile_counter.py)
RETIRING_ABI = "attn_params+tma_descs+tile_counter+retire"
# split=tail: the same parameters; `tile_counter` heads the split tail's workspace (runtime/split_tail.py)
SPLIT_ABI = "attn_params+tma_descs+tile_counter+split_tail"
SM90_ABIS = (TMA_ABI, PERSISTENT_ABI, RETIRING_ABI, SPLIT_ABI)


def launch(kernel: LoadedKernel, params: AttnParams, sizes: dict[str, int], stream=None, descs=None) -> None:
    """One launch. `descs` (runtime.tma_sm90.TmaDescs) is the second parameter of kernels whose manifest
    entry says `"abi": "attn_params+tma_descs"` (the sm90a ones), and only of those; a persistent one
    (`"abi": "attn_params+tma_descs+tile_counter..."`) also gets a tile counter (sm90_args)."""
    import torch

    launch_meta = kernel.meta["launch"]
    two_params = kernel.meta.get("abi") in SM90_ABIS
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
        args, _keep = sm90_args(kernel.meta, params, descs, stream, grid[0])  # _keep: alive through the call
    else:
        args = (ctypes.c_void_p * 1)(ctypes.addressof(params))
    check(drv.cuLaunchKernel(kernel.function, grid[0], grid[1], grid[2], launch_meta["threads"], 1, 1,
                             launch_meta["smem_bytes"], drv.CUstream(handle), ctypes.addressof(args), 0),
          f"launching {kernel.name}")


def sm90_args(meta: dict, params: AttnParams, descs, stream, ctas: int):
    """The kernelParams of an sm90a kernel and what must stay alive with them: AttnParams and TmaDescs,
    for a persistent one its tile counter: the stream's own when the kernel leaves it zero (RETIRING_ABI),
    else (PERSISTENT_ABI, earlier builds) one zeroed on `stream` for this launch; for a split=tail one
    (SPLIT_ABI) the workspace that counter heads, sized for this launch's `ctas`."""
    from qimeng_serve.runtime.split_tail import split_workspace
    from qimeng_serve.runtime.tile_counter import retiring_counter, zeroed_tile_counter
    from qimeng_serve.runtime.tma_sm90 import launch_args

    abi = meta.get("abi")
    if abi == RETIRING_ABI:
        counter = retiring_counter(stream)
    elif abi == SPLIT_ABI:
        counter = split_workspace(meta["split_tail"], params, ctas, stream)
    elif abi == PERSISTENT_ABI:
        counter = zeroed_tile_counter(stream)
    else:
        return launch_args(params, descs)
    args, keep = launch_args(params, descs, counter.data_ptr())
    return args, (*keep, counter)
