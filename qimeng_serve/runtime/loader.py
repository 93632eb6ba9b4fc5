"""Load a bundle's kernels into the current CUDA context with cuda-python (no torch C++ extension).

Each kernel is loaded from its SASS cubin when the GPU can run it, else from its PTX, which the
driver JIT-compiles (how sm_75 / sm_80 code is exercised on newer GPUs); `method` says which.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qimeng_serve.build.bundle import read_blob, read_manifest
from qimeng_serve.errors import QimengError


class RuntimeLoadError(QimengError):
    """A kernel could not be loaded or launched."""


def driver():
    try:
        from cuda.bindings import driver as drv
    except ImportError:
        raise RuntimeLoadError("cuda-python is not installed", fix="pip install 'cuda-python>=13'") from None
    return drv


def check(result, what: str):
    """cuda-python returns (err, value...): raise on error, return the values."""
    drv = driver()
    err, *rest = result if isinstance(result, tuple) else (result,)
    if err != drv.CUresult.CUDA_SUCCESS:
        _, name = drv.cuGetErrorName(err)
        raise RuntimeLoadError(f"{what} failed: {name.decode() if isinstance(name, bytes) else name}",
                               fix="check the driver supports this GPU and the bundle's arch (qimeng-serve doctor)")
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else tuple(rest)


@dataclass
class LoadedKernel:
    name: str
    meta: dict  # the manifest entry
    function: object  # CUfunction
    module: object
    method: str  # "sm_80 SASS" or "compute_75 PTX JIT"


def device_arch() -> str:
    import torch

    major, minor = torch.cuda.get_device_capability()
    return f"sm_{major}{minor}"


def _ensure_context() -> None:
    import torch

    torch.cuda.init()
    torch.empty(1, device="cuda")  # makes torch's primary context current in this thread


def load_bundle(path: Path, names: list[str] | None = None, prefer: str = "auto") -> dict[str, LoadedKernel]:
    """prefer: auto (SASS if the GPU matches the bundle's arch, else PTX), sass, or ptx."""
    drv = driver()
    _ensure_context()
    manifest = read_manifest(path)
    arch = device_arch()
    loaded = {}
    for name, meta in manifest["kernels"].items():
        if names and name not in names:
            continue
        use_ptx = prefer == "ptx" or (prefer == "auto" and not _sass_runs(manifest["arch"], arch))
        blob = read_blob(path, meta["tensors"]["ptx" if use_ptx else "cubin"])
        if use_ptx:
            blob = blob + b"\0"  # the driver expects a NUL-terminated PTX image
        module = check(drv.cuModuleLoadData(blob), f"loading {name} ({'PTX' if use_ptx else 'cubin'})")
        function = check(drv.cuModuleGetFunction(module, name.encode()), f"finding {name}")
        smem = meta["launch"]["smem_bytes"]
        if smem > 48 * 1024:
            attr = drv.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
            check(drv.cuFuncSetAttribute(function, attr, smem), f"opting {name} into {smem} B of shared memory")
        ptx_target = meta["observed"]["ptx"][0] if meta["observed"]["ptx"] else "PTX"
        method = f"{ptx_target} PTX JIT" if use_ptx else f"{manifest['arch']} SASS"
        loaded[name] = LoadedKernel(name, meta, function, module, method)
    return loaded


def _sass_runs(bundle_arch: str, gpu_arch: str) -> bool:
    """SASS runs on the same major arch at an equal or higher minor (sm_80 SASS on sm_86, not on sm_90)."""
    b, g = int(bundle_arch[3:]), int(gpu_arch[3:])
    return b // 10 == g // 10 and g >= b
