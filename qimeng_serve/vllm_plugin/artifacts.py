"""Which kernel bundle serves this process, resolved once: GPU capability, dtype, head size, soft-cap.

The registry (local folder or Hub repo, from QIMENG_REGISTRY / QIMENG_REPO / QIMENG_REVISION /
QIMENG_LOCK) is read through `qimeng_serve.registry.resolve`, which verifies the file's sha256.
What the builder and the forward pass need from the bundle (split size, decode rows, soft-cap) comes
from its manifest, so it is known without a GPU; the kernels themselves load on first use.

QIMENG_CAPABILITY=7.5 makes the plugin serve the bundle a GPU of that capability would get: on a
newer GPU the sm_75 kernels then run through their PTX (how Turing kernels are checked on a Hopper
card), and without a GPU it lets the plugin's start-up logic be inspected.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from qimeng_serve.errors import QimengError

log = logging.getLogger("vllm.qimeng")

OPS = ("paged_prefill", "paged_decode")  # what serving needs; decode kernels are used when present
DEFAULT_KERNEL_SET = "default"
MIN_CAPABILITY = (7, 5)  # the kernels are built on mma.sync + ldmatrix: Turing and newer
BF16_CAPABILITY = (8, 0)
_CAPABILITY_RE = re.compile(r"^(?:sm_?)?(\d+)(?:\.(\d+))?$")


def kernel_set_for(softcap: float) -> str:
    """The kernel set compiled for a logits soft-cap: `default`, or `softcap50` for a cap of 50.

    Same naming as qimeng_serve.build.kernel_set.kernel_set_name, which this does not import
    because that module pulls in the TL toolchain, which a serving machine need not have.
    """
    return DEFAULT_KERNEL_SET if not softcap else f"softcap{float(softcap):g}"


def parse_capability(text: str) -> tuple[int, int]:
    """"7.5", "75" or "sm_75" -> (7, 5)."""
    m = _CAPABILITY_RE.match(text.strip().lower())
    if not m:
        raise QimengError(f"'{text}' is not a compute capability", fix="write it like 7.5, 8.0 or 9.0")
    if m.group(2) is not None:
        return int(m.group(1)), int(m.group(2))
    digits = m.group(1)
    if len(digits) < 2:
        raise QimengError(f"'{text}' is not a compute capability", fix="write it like 7.5, 8.0 or 9.0")
    return int(digits[:-1]), int(digits[-1])


def device_capability(device=None, reported=None) -> tuple[int, int]:
    """QIMENG_CAPABILITY if set, else the capability vLLM reported, else the CUDA device's."""
    override = os.environ.get("QIMENG_CAPABILITY")
    if override:
        return parse_capability(override)
    if reported is not None:
        return int(reported[0]), int(reported[1])
    import torch

    if not torch.cuda.is_available():
        raise QimengError("the qimeng attention backend found no CUDA GPU",
                          fix="run vLLM on an NVIDIA GPU, or set QIMENG_CAPABILITY=X.Y to see what a GPU of "
                              "that kind would load")
    index = device.index if device is not None and getattr(device, "index", None) is not None else None
    major, minor = torch.cuda.get_device_capability(index)
    return int(major), int(minor)


def dtype_name(dtype) -> str:
    """torch.float16 / "float16" / "half" -> "f16"."""
    from qimeng_serve.registry.select import normalize_dtype

    return normalize_dtype(dtype)


@dataclass(frozen=True)
class KernelPlan:
    """What the launches need to know about one head size of a bundle, read from its manifest."""

    head_dim: int
    dtype: str
    softcap: float
    decode_split: int | None  # kv tokens per split of the split-KV decode kernel; None = no decode kernel
    decode_rows: int | None  # rows of the decode tile (GQA group x query tokens must fit)

    @classmethod
    def from_manifest(cls, manifest: dict, head_dim: int, source: str) -> KernelPlan:
        kernels = [k for k in manifest["kernels"].values() if k["spec"]["head_dim"] == head_dim]
        # the portable kernel of a (family, role) speaks for it where an sm90a one sits beside it
        roles = {(k["family"], k["role"]): k for k in sorted(kernels, key=lambda k: k.get("variant") != "sm90a")}
        if ("paged_prefill", "attn") not in roles:
            have = sorted({k["spec"]["head_dim"] for k in manifest["kernels"].values() if k["family"] == "paged_prefill"})
            raise QimengError(f"{source} has no paged prefill kernel for head size {head_dim} "
                              f"(it has head sizes {', '.join(map(str, have)) or 'none'})",
                              fix=f"build it: qimeng-serve build --arch {manifest['arch']}")
        split = roles.get(("paged_decode", "split"))
        decode_ok = split is not None and ("paged_decode", "combine") in roles
        params = split.get("params", {}) if decode_ok else {}
        softcap = max(float(k["spec"].get("softcap", 0.0)) for k in kernels)
        return cls(head_dim, manifest["dtype"], softcap,
                   int(params["SPLIT_KV"]) if decode_ok and "SPLIT_KV" in params else None,
                   int(params["BLOCK_M"]) if decode_ok and "BLOCK_M" in params else None)

    @property
    def has_decode(self) -> bool:
        return self.decode_split is not None and self.decode_rows is not None

    def decode_fits(self, gqa_group: int) -> bool:
        """The decode kernel packs GQA group x 1 query token into its rows; larger groups use prefill."""
        return self.has_decode and gqa_group <= self.decode_rows

    def decode_workspace_shapes(self, total_q: int, heads_q: int, max_seqlen_k: int):
        """Shapes of (o_partial, lse), as KernelSet.decode_workspace allocates them."""
        n = max(1, math.ceil(max_seqlen_k / self.decode_split))
        return (n, total_q, heads_q, self.head_dim), (n, total_q, heads_q)


@dataclass
class ServingArtifact:
    """The resolved, verified bundle for one (capability, dtype, head size, kernel set)."""

    capability: tuple[int, int]
    kernel_set: str
    plan: KernelPlan
    bundle_path: Path
    source: str
    how: str
    selection_text: str
    _kernel_set_obj: object = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def describe(self) -> str:
        return (f"{self.bundle_path.name} ({self.how}) from {self.source}, head size {self.plan.head_dim}, "
                f"decode {'split-KV ' + str(self.plan.decode_split) if self.plan.has_decode else 'via prefill'}")

    def kernels(self):
        """The loaded KernelSet (cubins or PTX through cuda-python); loaded once, on first use."""
        if self._kernel_set_obj is None:
            with self._lock:
                if self._kernel_set_obj is None:
                    from qimeng_serve.runtime.ops import KernelSet

                    ks = KernelSet(self.bundle_path)
                    methods = sorted({k.method for k in ks.kernels.values()})
                    log.info("qimeng-serve: loaded %d kernels of %s as %s", len(ks.kernels), self.bundle_path.name,
                             ", ".join(methods))
                    self._kernel_set_obj = ks
        return self._kernel_set_obj


_CACHE: dict[tuple, ServingArtifact] = {}
_CACHE_LOCK = threading.Lock()


def serving_artifact(capability: tuple[int, int], dtype, head_dim: int,
                     kernel_set: str = DEFAULT_KERNEL_SET) -> ServingArtifact:
    """Resolve (and fetch, and verify) the bundle once per process; later calls return the same object.

    Raises QimengError (NoMatchingArtifact lists every bundle of the registry and why it was not taken).
    """
    capability = (int(capability[0]), int(capability[1]))
    dtype = dtype_name(dtype)
    key = (capability, dtype, int(head_dim), kernel_set, _registry_env())
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        from qimeng_serve.build.bundle import read_manifest
        from qimeng_serve.registry.resolve import resolve_artifact

        _check_gpu(capability, dtype)
        resolved = resolve_artifact(capability, dtype, int(head_dim), OPS, kernel_set=kernel_set)
        manifest = read_manifest(resolved.bundle_path)
        plan = KernelPlan.from_manifest(manifest, int(head_dim), resolved.entry["path"])
        artifact = ServingArtifact(capability, kernel_set, plan, Path(resolved.bundle_path), resolved.source,
                                   resolved.selection.how, resolved.selection.explain())
        log.info("qimeng-serve: serving attention with %s", artifact.describe())
        _CACHE[key] = artifact
        return artifact


def unsupported_reason(capability: tuple[int, int], dtype, head_dim: int) -> str | None:
    """None when a bundle serves this combination, else one line saying why not (the full list is logged)."""
    try:
        serving_artifact(capability, dtype, head_dim)
    except QimengError as exc:
        log.error("qimeng-serve: %s\nfix: %s", exc.message, exc.fix)
        first, *rest = exc.message.splitlines()
        detail = " | ".join(line.strip() for line in rest if line.strip())
        return f"qimeng: {first}" + (f" [{detail}]" if detail else "") + (f" (fix: {exc.fix})" if exc.fix else "")
    return None


def clear_cache() -> None:
    """Forget resolved artifacts (tests, or after the registry changed)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _check_gpu(capability: tuple[int, int], dtype: str) -> None:
    gpu = f"sm_{capability[0]}{capability[1]}"
    if capability < MIN_CAPABILITY:
        raise QimengError(f"the GPU is {gpu}; qimeng kernels need compute capability 7.5 (Turing) or newer",
                          fix="use another attention backend on this GPU")
    if dtype == "bf16" and capability < BF16_CAPABILITY:
        raise QimengError(f"bf16 needs compute capability 8.0 or newer; the GPU is {gpu}",
                          fix="serve the model in float16 (vllm serve ... --dtype float16)")
    if dtype not in ("f16", "bf16"):
        raise QimengError(f"qimeng kernels run in f16 or bf16, not {dtype}",
                          fix="serve the model in float16 or bfloat16 (--dtype)")


def _registry_env() -> tuple:
    """The variables that choose the registry: a changed one must not reuse another registry's answer."""
    return tuple(os.environ.get(v, "") for v in ("QIMENG_REGISTRY", "QIMENG_REPO", "QIMENG_REVISION", "QIMENG_LOCK"))
