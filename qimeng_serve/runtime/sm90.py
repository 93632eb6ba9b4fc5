"""Run the sm_90a dense prefill kernels (qimeng_serve/lower/emit_sm90.py) from a directory that
build_sm90_kernels wrote: load each cubin with cuda-python, encode the TMA maps, launch with the
two-parameter ABI on torch's current stream.

q [B, Hq, Lq, D], k / v [B, Hkv, Lk, D] (D contiguous, 16-byte aligned rows) -> out like q.
"""

from __future__ import annotations

import ctypes
import json
import math
from dataclasses import dataclass
from pathlib import Path

from qimeng_serve.errors import QimengError
from qimeng_serve.runtime.abi import AttnParams
from qimeng_serve.runtime.formula import evaluate
from qimeng_serve.runtime.launch import sm90_args
from qimeng_serve.runtime.loader import check, driver, num_sms
from qimeng_serve.runtime.tma_sm90 import dense_descs

LOG2E = 1.4426950408889634
_TORCH = {"f16": "float16", "bf16": "bfloat16"}


@dataclass
class Sm90Kernel:
    name: str
    meta: dict
    function: object
    module: object

    def dense_prefill(self, q, k, v, *, causal: bool, softmax_scale: float | None = None, window: int = 0,
                      softcap: float = 0.0, out=None):
        import torch

        out = torch.empty_like(q) if out is None else out
        self.prepare_dense(q, k, v, causal=causal, softmax_scale=softmax_scale, window=window, softcap=softcap,
                           out=out)()
        return out

    def prepare_dense(self, q, k, v, *, causal: bool, softmax_scale: float | None = None, window: int = 0,
                      softcap: float = 0.0, out):
        """A launcher for these very tensors: parameters and tensor maps built once (timing loops)."""
        b, hq, lq, d = q.shape
        _, hkv, lk, _ = k.shape
        if d != self.meta["head_dim"] or str(q.dtype).split(".")[-1] != _TORCH[self.meta["dtype"]]:
            raise QimengError(f"{self.name} takes {self.meta['dtype']} head size {self.meta['head_dim']}, got "
                              f"{q.dtype} head size {d}", fix="pick the kernel of this dtype and head size")
        if hq % hkv or float(softcap) != float(self.meta.get("softcap", 0.0)):
            raise QimengError("heads or soft-cap do not fit the kernel",
                              fix="query heads a multiple of KV heads; the soft-cap the kernel was built with")
        p = AttnParams()
        p.q, p.k, p.v, p.o = q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr()
        p.q_batch_stride, p.q_head_stride, p.q_token_stride = q.stride(0), q.stride(1), q.stride(2)
        p.o_batch_stride, p.o_head_stride, p.o_token_stride = out.stride(0), out.stride(1), out.stride(2)
        p.k_batch_stride, p.k_head_stride, p.k_token_stride = k.stride(0), k.stride(1), k.stride(2)
        p.v_batch_stride, p.v_head_stride, p.v_token_stride = v.stride(0), v.stride(1), v.stride(2)
        p.batch, p.heads_q, p.heads_kv, p.max_seqlen_q, p.max_seqlen_k = b, hq, hkv, lq, lk
        scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(d)
        p.softmax_scale_log2, p.softcap, p.causal = scale * LOG2E, softcap, int(causal)
        p.window_left = window - 1 if window > 0 else 0
        if out.shape != q.shape or out.dtype != q.dtype or out.stride(-1) != 1:
            raise QimengError("out must be shaped like q, of its dtype, with a contiguous head dimension",
                              fix="pass torch.empty_like(q)")
        descs = dense_descs(q, k, v, self.meta["dtype"], self.meta["tensor_maps"], out)
        sizes = {"batch": b, "heads_q": hq, "heads_kv": hkv, "max_seq_q": lq, "max_seq_k": lk,
                 "num_sms": num_sms(q.device.index)}
        return lambda: self.launch(p, descs, sizes)

    def launch(self, params: AttnParams, descs, sizes: dict[str, int], stream=None) -> None:
        import torch

        drv = driver()
        if "num_sms" not in sizes:  # a persistent grid's formula names the GPU's multiprocessor count
            sizes = {**sizes, "num_sms": num_sms()}
        grid = [evaluate(f, sizes) for f in self.meta["grid"]] + [1, 1]
        if min(grid[:3]) <= 0:
            return
        stream = stream or torch.cuda.current_stream()
        args, _keep = sm90_args(self.meta, params, descs, stream, grid[0])  # _keep: alive through the call
        handle = stream.cuda_stream
        check(drv.cuLaunchKernel(self.function, grid[0], grid[1], grid[2], self.meta["threads"], 1, 1,
                                 self.meta["smem_bytes"], drv.CUstream(handle), ctypes.addressof(args), 0),
              f"launching {self.name}")


def load_sm90_kernels(directory: Path, names=None) -> dict[str, Sm90Kernel]:
    """Entry name -> kernel (all, or those in names), from `index.json` and the cubins beside it."""
    import torch

    directory = Path(directory)
    index_path = directory / "index.json"
    if not index_path.is_file():
        raise QimengError(f"no index.json in {directory}", fix="build it: python scripts/hopper_check.py --build")
    drv = driver()
    torch.cuda.init()
    torch.empty(1, device="cuda")  # torch's primary context, current in this thread
    index = json.loads(index_path.read_text())
    out = {}
    for name, meta in index["kernels"].items():
        if names is not None and name not in names:
            continue
        blob = (directory / f"{name}.cubin").read_bytes()
        module = check(drv.cuModuleLoadData(blob), f"loading {name}")
        function = check(drv.cuModuleGetFunction(module, name.encode()), f"finding {name}")
        attr = drv.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
        check(drv.cuFuncSetAttribute(function, attr, meta["smem_bytes"]), f"opting {name} into its shared memory")
        out[name] = Sm90Kernel(name, meta, function, module)
    return out
