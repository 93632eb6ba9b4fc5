"""GPU target profiles: what each architecture offers an attention kernel.

Figures are per the CUDA programming guide's compute-capability tables; shared memory
is per thread block (the default without opt-in, and the opt-in maximum).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qimeng_serve.errors import UnknownTargetError

KB = 1024


@dataclass(frozen=True)
class Target:
    arch: str  # nvcc spelling: sm_75, sm_80, ...
    family: str
    smem_default: int  # bytes per block without opt-in
    smem_optin_max: int  # bytes per block with cudaFuncAttributeMaxDynamicSharedMemorySize
    smem_per_sm: int
    regs_per_sm: int = 65536
    max_regs_per_thread: int = 255
    max_threads_per_block: int = 1024
    # tensor-core MMA shapes (mnk) per operand dtype, for warp-level mma.sync
    mma: dict[str, tuple[str, ...]] = field(default_factory=dict)
    ldmatrix: bool = True
    cp_async: bool = False
    tma: bool = False
    gmma: bool = False
    compile_only: bool = False  # nvcc builds it; no validated kernel set yet
    sass_arch: str = ""  # the arch nvcc is given for SASS (sm_90a for wgmma/TMA)
    examples: tuple[str, ...] = ()

    @property
    def dtypes(self) -> tuple[str, ...]:
        """Input dtypes with tensor-core support on this target."""
        return tuple(self.mma)

    @property
    def compute_capability(self) -> tuple[int, int]:
        digits = self.arch.split("_")[1]
        return int(digits[:-1]), int(digits[-1])

    def mma_shapes(self, dtype: str) -> tuple[str, ...]:
        return self.mma.get(dtype, ())

    def copy_paths(self) -> tuple[str, ...]:
        """Legal `via=` values for Copy statements on this target."""
        paths = ["ldg", "stg", "sts", "lds"] + (["ldmatrix"] if self.ldmatrix else [])
        if self.cp_async:
            paths.append("cp.async")
        if self.tma:
            paths.append("tma")
        return tuple(paths)


_F16_SM75 = ("m16n8k8",)
_F16_SM80 = ("m16n8k16", "m16n8k8")
_FP8_SM89 = ("m16n8k32",)

TARGETS: dict[str, Target] = {
    t.arch: t
    for t in (
        Target("sm_75", "Turing", 48 * KB, 64 * KB, 64 * KB,
               mma={"f16": _F16_SM75}, cp_async=False, sass_arch="sm_75",
               examples=("Tesla T4", "Quadro RTX 8000", "GeForce RTX 2080 Ti")),
        Target("sm_80", "Ampere", 48 * KB, 163 * KB, 164 * KB,
               mma={"f16": _F16_SM80, "bf16": ("m16n8k16", "m16n8k8")}, cp_async=True, sass_arch="sm_80",
               examples=("A100", "A800", "A30")),
        Target("sm_86", "Ampere", 48 * KB, 99 * KB, 100 * KB,
               mma={"f16": _F16_SM80, "bf16": ("m16n8k16", "m16n8k8")}, cp_async=True, sass_arch="sm_86",
               max_threads_per_block=1024, examples=("A10", "A40", "GeForce RTX 3090")),
        Target("sm_89", "Ada", 48 * KB, 99 * KB, 100 * KB,
               mma={"f16": _F16_SM80, "bf16": ("m16n8k16", "m16n8k8"), "e4m3": _FP8_SM89}, cp_async=True,
               sass_arch="sm_89", examples=("L4", "L40S", "GeForce RTX 4090")),
        Target("sm_90", "Hopper", 48 * KB, 227 * KB, 228 * KB,
               mma={"f16": _F16_SM80, "bf16": ("m16n8k16", "m16n8k8"), "e4m3": _FP8_SM89}, cp_async=True,
               tma=True, gmma=True, sass_arch="sm_90a", examples=("H100", "H200", "H20")),
        Target("sm_100", "Blackwell", 48 * KB, 227 * KB, 228 * KB,
               mma={"f16": _F16_SM80, "bf16": ("m16n8k16", "m16n8k8"), "e4m3": _FP8_SM89}, cp_async=True,
               tma=True, compile_only=True, sass_arch="sm_100", examples=("B200", "GB200")),
        Target("sm_120", "Blackwell", 48 * KB, 99 * KB, 100 * KB,
               mma={"f16": _F16_SM80, "bf16": ("m16n8k16", "m16n8k8"), "e4m3": _FP8_SM89}, cp_async=True,
               tma=True, compile_only=True, sass_arch="sm_120", examples=("GeForce RTX 5090", "RTX PRO 6000")),
    )
}

# The kernel set `build --arch all` covers: every target with a validated recipe.
PRIMARY_ARCHS = tuple(a for a, t in TARGETS.items() if not t.compile_only)


def get_target(arch: str) -> Target:
    """Look a target up by nvcc name; accepts sm75 / sm_75 / 7.5 / sm_90a spellings."""
    key = normalize_arch(arch)
    if key not in TARGETS:
        known = ", ".join(TARGETS)
        raise UnknownTargetError(
            f"unknown GPU architecture '{arch}': qimeng-serve has profiles for {known}",
            fix="pass --arch with one of those (pre-Turing GPUs such as sm_61 have no tensor cores and are not supported)",
        )
    return TARGETS[key]


def normalize_arch(arch: str) -> str:
    a = arch.strip().lower()
    if a.replace(".", "").isdigit() and "." in a:  # "7.5"
        major, minor = a.split(".")
        return f"sm_{major}{minor}"
    if a.startswith("compute_"):
        a = "sm_" + a[len("compute_"):]
    if a.startswith("sm") and not a.startswith("sm_"):
        a = "sm_" + a[2:]
    return a.rstrip("af") if a.endswith(("a", "f")) and a[:-1].split("_")[-1].isdigit() else a
