"""Launch a loaded kernel on torch's current stream, so CUDA graphs capture it."""

from __future__ import annotations

import ctypes

from qimeng_serve.runtime.abi import AttnParams
from qimeng_serve.runtime.formula import evaluate
from qimeng_serve.runtime.loader import LoadedKernel, check, driver


def launch(kernel: LoadedKernel, params: AttnParams, sizes: dict[str, int], stream=None) -> None:
    import torch

    drv = driver()
    launch_meta = kernel.meta["launch"]
    grid = [evaluate(f, sizes) for f in launch_meta["grid"]] + [1, 1]
    if min(grid[:3]) <= 0:
        return  # an empty batch: nothing to launch
    handle = (stream or torch.cuda.current_stream()).cuda_stream
    args = (ctypes.c_void_p * 1)(ctypes.addressof(params))
    check(drv.cuLaunchKernel(kernel.function, grid[0], grid[1], grid[2], launch_meta["threads"], 1, 1,
                             launch_meta["smem_bytes"], drv.CUstream(handle), ctypes.addressof(args), 0),
          f"launching {kernel.name}")
