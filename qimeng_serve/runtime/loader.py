"""Load a bundle's kernels into the current CUDA context with cuda-python (no torch C++ extension).

Each kernel is loaded from its SASS cubin when the GPU can run it, else from its PTX, which the
driver JIT-compiles (how sm_75 / sm_80 code is exercised on newer GPUs); `method` says which.

An sm_90 bundle also holds Hopper kernels (manifest `"variant": "sm90a"`): sm_90a SASS only, no PTX,
which runs on exactly compute capability 9.0. They are loaded there and skipped anywhere else (and
with prefer="ptx"), with the reason in the `skipped` dict the caller passes; the portable kernels
beside them (compute_90 PTX) serve every other GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from qimeng_serve.build.bundle import read_blob, read_manifest
from qimeng_serve.errors import QimengError

SM90A = "sm90a"  # the manifest `variant` of the Hopper kernels
SM90A_CAPABILITY = (9, 0)  # sm_90a SASS runs on exactly this GPU (H100 / H200 / GH200), no other


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


def is_sm90a(meta: dict) -> bool:
    """A Hopper kernel (sm_90a SASS, the two-parameter ABI) rather than a portable one."""
    return meta.get("variant") == SM90A


def sm90a_skip_reason(meta: dict, capability: tuple[int, int], prefer: str = "auto", enabled: bool = True) -> str:
    """'' when load_bundle may load this manifest entry on a GPU of `capability`, else why it is skipped.
    Portable kernels are never skipped here; an sm90a kernel needs exactly compute capability 9.0 and
    is never loaded from PTX (it has none: compute_90a PTX runs on no other GPU)."""
    if not is_sm90a(meta):
        return ""
    if not enabled:
        return "sm90a kernels are switched off (QIMENG_NO_SM90A=1)"
    if prefer == "ptx":
        return "sm90a kernels carry sm_90a SASS only, no PTX (prefer=ptx)"
    cap = (int(capability[0]), int(capability[1]))
    if cap != SM90A_CAPABILITY:
        return (f"sm_90a SASS runs only on compute capability 9.0; this GPU is {cap[0]}.{cap[1]} "
                "(the portable kernel serves it)")
    return ""


@cache
def num_sms(device_index: int | None = None) -> int:
    """The GPU's multiprocessor count (launch formulas of persistent kernels name it `num_sms`)."""
    import torch

    return _multiprocessors(torch.cuda.current_device() if device_index is None else device_index)


@cache
def _multiprocessors(index: int) -> int:
    """Asked of the driver once per GPU: every launch's sizes carry it."""
    import torch

    return torch.cuda.get_device_properties(index).multi_processor_count


def load_bundle(path: Path, names: list[str] | None = None, prefer: str = "auto", *,
                skipped: dict[str, str] | None = None, sm90a: bool = True) -> dict[str, LoadedKernel]:
    """prefer: auto (SASS if the GPU matches the bundle's arch, else PTX), sass, or ptx. Kernels this
    GPU cannot run (sm90a ones off compute capability 9.0, or all of them when sm90a=False) are left
    out and, when `skipped` is given, recorded there as name -> reason."""
    import torch

    drv = driver()
    _ensure_context()
    manifest = read_manifest(path)
    arch = device_arch()
    capability = tuple(torch.cuda.get_device_capability())
    loaded = {}
    for name, meta in manifest["kernels"].items():
        if names and name not in names:
            continue
        why = sm90a_skip_reason(meta, capability, prefer, sm90a)
        if why:
            if skipped is not None:
                skipped[name] = why
            continue
        if is_sm90a(meta):
            loaded[name] = _load_sm90a(path, name, meta)
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


def _load_sm90a(path: Path, name: str, meta: dict) -> LoadedKernel:
    """An sm90a entry from its cubin (never PTX), opted into its shared memory."""
    drv = driver()
    module = check(drv.cuModuleLoadData(read_blob(path, meta["tensors"]["cubin"])), f"loading {name} (sm_90a cubin)")
    function = check(drv.cuModuleGetFunction(module, name.encode()), f"finding {name}")
    smem = meta["launch"]["smem_bytes"]
    if smem > 48 * 1024:
        attr = drv.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
        check(drv.cuFuncSetAttribute(function, attr, smem), f"opting {name} into {smem} B of shared memory")
    return LoadedKernel(name, meta, function, module, "sm_90a SASS")


def _sass_runs(bundle_arch: str, gpu_arch: str) -> bool:
    """SASS runs on the same major arch at an equal or higher minor (sm_80 SASS on sm_86, not on sm_90)."""
    b, g = int(bundle_arch[3:]), int(gpu_arch[3:])
    return b // 10 == g // 10 and g >= b
