"""`qimeng-serve doctor`: what the vLLM plugin would do on this machine, before vLLM starts.

Registered on `qimeng_serve.cli.app` by an import at the end of cli.py. It reports the GPU (or its
absence), the driver and CUDA versions, the installed vLLM and the backend name to type there, the
registry the plugin would read, and the bundle it would load for each dtype and head size (or why
none fits). It goes through the same code the plugin runs at start-up (vllm_plugin.artifacts).
"""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from qimeng_serve.cli import app, err, out, user_errors
from qimeng_serve.errors import QimengError

HEAD_SIZES = (64, 128, 256)


@app.command()
@user_errors
def doctor(
    capability: Annotated[str | None, typer.Option(
        "--capability", help="Ask for another GPU: its compute capability, e.g. 7.5 (T4), 8.6, 9.0.")] = None,
    dtype: Annotated[str | None, typer.Option(
        "--dtype", help="Only this dtype: f16 or bf16 (default: both where the GPU has them).")] = None,
    head_dim: Annotated[int | None, typer.Option(
        "--head-dim", help="Only this head size (default: 64, 128 and 256).")] = None,
) -> None:
    """Show what `--attention-backend qimeng` would load here: GPU, vLLM, registry, kernel bundle.

    Exit status 1 when --head-dim is given and no bundle serves that head size on this GPU.
    """
    from qimeng_serve.vllm_plugin import artifacts

    asked = artifacts.parse_capability(capability) if capability else None  # bad input fails before any output
    if dtype and artifacts.dtype_name(dtype) not in ("f16", "bf16"):
        raise QimengError(f"unknown dtype '{dtype}' for the plugin", fix="use f16 or bf16")
    cap = _gpu_section(asked)
    _vllm_section()
    _registry_section()
    if cap is None:
        _say("kernels: no GPU to match; pass --capability X.Y to see what a GPU of that kind would load")
        return
    dtypes = [artifacts.dtype_name(dtype)] if dtype else ["f16"] + (["bf16"] if cap >= artifacts.BF16_CAPABILITY else [])
    heads = [head_dim] if head_dim else list(HEAD_SIZES)
    table = Table(title=f"kernels the plugin would load on sm_{cap[0]}{cap[1]}")
    for col in ("dtype", "head size", "bundle", "runs as", "decode", "sm90a"):
        table.add_column(col, overflow="fold")
    failures, sources = [], set()
    for dt in dtypes:
        for hd in heads:
            try:
                a = artifacts.serving_artifact(cap, dt, hd)
            except QimengError as exc:
                failures.append((dt, hd, exc))
                table.add_row(dt, str(hd), "[red]none[/red] (below: why)", "", "", "")
                continue
            sources.add(a.source)
            decode = f"split-KV, {a.plan.decode_split} keys/split" if a.plan.has_decode else "through prefill"
            table.add_row(dt, str(hd), escape(a.bundle_path.name), a.how, decode, escape(_sm90a_text(a, cap)))
    out.print(table)
    for source in sorted(sources):
        _say(f"bundles from {source}")
    for dt, hd, exc in failures:
        _say(f"\n{dt}, head size {hd}: {exc.message}")
        if exc.fix:
            _say(f"fix: {exc.fix}")
    if head_dim and failures:
        raise typer.Exit(1)


def _sm90a_text(artifact, cap: tuple[int, int]) -> str:
    """The bundle's Hopper (sm90a) kernels that serving uses (paged ops) for this head size, and
    whether a GPU of `cap` loads them (runtime.loader.sm90a_skip_reason, as KernelSet does)."""
    from qimeng_serve.build.bundle import read_manifest
    from qimeng_serve.env import sm90a_enabled
    from qimeng_serve.runtime.loader import is_sm90a, sm90a_skip_reason
    from qimeng_serve.vllm_plugin.artifacts import OPS

    fast = [m for m in read_manifest(artifact.bundle_path)["kernels"].values()
            if is_sm90a(m) and m["family"] in OPS and m["spec"]["head_dim"] == artifact.plan.head_dim]
    if not fast:
        return "-"
    families = ", ".join(sorted({m["family"] for m in fast}))
    why = sm90a_skip_reason(fast[0], cap, enabled=sm90a_enabled())
    return f"{families}: skipped ({why})" if why else f"{families}: used where a call fits"


def _say(text: str) -> None:
    out.print(text, markup=False, highlight=False, soft_wrap=True)


def _gpu_section(asked: tuple[int, int] | None) -> tuple[int, int] | None:
    from qimeng_serve.vllm_plugin import artifacts

    gpu = _cuda_gpu()
    if gpu:
        name, cap = gpu
        _say(f"GPU: {name}, compute capability {cap[0]}.{cap[1]} (sm_{cap[0]}{cap[1]})")
    else:
        _say("GPU: no CUDA GPU visible to torch")
        cap = None
    _say(f"driver: {_driver_version()}; torch {_torch_versions()}")
    if asked or os.environ.get("QIMENG_CAPABILITY"):
        cap = asked or artifacts.parse_capability(os.environ["QIMENG_CAPABILITY"])
        where = "--capability" if asked else "QIMENG_CAPABILITY"
        _say(f"matching kernels for compute capability {cap[0]}.{cap[1]} (from {where})")
    return cap


def _cuda_gpu() -> tuple[str, tuple[int, int]] | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(), tuple(torch.cuda.get_device_capability())


def _driver_version() -> str:
    try:
        from cuda.bindings import driver as drv

        err_init, = drv.cuInit(0)
        if err_init != drv.CUresult.CUDA_SUCCESS:
            return "no CUDA driver"
        _, version = drv.cuDriverGetVersion()
        return f"CUDA driver API {version // 1000}.{version % 1000 // 10}"
    except (ImportError, OSError, RuntimeError):  # no cuda-python, or no libcuda: no usable driver here
        return "no CUDA driver"


def _torch_versions() -> str:
    import torch

    return f"{torch.__version__} (CUDA {torch.version.cuda or 'none: a CPU build'})"


def _vllm_section() -> None:
    from importlib.metadata import PackageNotFoundError, entry_points, version

    try:
        v = version("vllm")
    except PackageNotFoundError:
        _say("vLLM: not installed (pip install vllm); the plugin is used from inside vLLM")
        return
    err.print("importing vLLM to read its backend registry...", markup=False)
    from qimeng_serve.vllm_plugin import registration

    try:
        typed = registration.cli_name()
    except (ImportError, AttributeError) as exc:  # a vLLM that does not import here is still worth reporting
        _say(f"vLLM: {v} (its attention registry does not import here: {exc})")
        return
    slot = "a new backend name" if typed == "qimeng" else "the CUSTOM slot (this vLLM cannot add names)"
    _say(f"vLLM: {v}; type --attention-backend {typed} ({slot})")
    ours = [e for e in entry_points(group="vllm.general_plugins") if e.value.startswith("qimeng_serve.")]
    if not ours:
        _say("  the plugin's entry points are not installed: reinstall qimeng-serve (pip install -e .)")


def _registry_section() -> None:
    from qimeng_serve.env import default_registry

    env = os.environ
    if env.get("QIMENG_REPO") or (env.get("QIMENG_LOCK") and not env.get("QIMENG_REGISTRY")):
        repo = env.get("QIMENG_REPO") or f"the repo pinned in {env['QIMENG_LOCK']}"
        rev = f"@{env['QIMENG_REVISION']}" if env.get("QIMENG_REVISION") else ""
        _say(f"registry: Hub {repo}{rev} (QIMENG_REPO), through the HF cache")
    else:
        where = "QIMENG_REGISTRY" if env.get("QIMENG_REGISTRY") else "the default"
        _say(f"registry: local {default_registry()} ({where})")
    if env.get("QIMENG_LOCK"):
        _say(f"lock: {env['QIMENG_LOCK']} (QIMENG_LOCK)")
