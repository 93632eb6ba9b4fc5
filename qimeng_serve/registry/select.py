"""Which bundle a GPU runs: a pure function of the index and the request, with a reason for every no.

Rules (CUDA's binary compatibility):
- SASS `sm_XY` runs on a GPU of the same major X and minor >= Y (sm_80 SASS runs on sm_86, never on
  sm_90 or sm_75). `sm_XYa` SASS runs on exactly sm_XY; `sm_XYf` on the same major with minor >= Y.
- PTX `compute_XY` is JIT-compiled by the driver on any GPU >= X.Y. `compute_XYa` PTX only on exactly
  sm_XY, `compute_XYf` only within major X.
- SASS beats PTX (no JIT at start-up, the code ptxas tuned for that arch); then the closest arch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from qimeng_serve.registry.layout import arch_of, parse_code_target

DTYPE_ALIASES = {
    "f16": "f16", "fp16": "f16", "float16": "f16", "half": "f16", "torch.float16": "f16",
    "bf16": "bf16", "bfloat16": "bf16", "torch.bfloat16": "bf16",
}


def normalize_dtype(dtype: object) -> str:
    """`torch.float16`, "float16", "half" -> "f16"; unknown names pass through unchanged."""
    text = str(dtype).strip().lower()
    return DTYPE_ALIASES.get(text, text)


@dataclass
class Selection:
    """The chosen index entry (or None), how the GPU runs it, and why every other bundle was not taken."""

    entry: dict | None
    how: str  # "sm_80 SASS" or "compute_80 PTX JIT"; "" when nothing fits
    rejections: list[tuple[dict, str]] = field(default_factory=list)
    capability: tuple[int, int] = (0, 0)
    request: str = ""

    def __bool__(self) -> bool:
        return self.entry is not None

    def explain(self) -> str:
        gpu = f"GPU {arch_of(self.capability)} (compute capability {self.capability[0]}.{self.capability[1]})"
        lines = []
        if self.entry is not None:
            lines.append(f"{gpu}, {self.request}: {self.entry['path']} runs as {self.how}")
        else:
            lines.append(f"{gpu}, {self.request}: no bundle fits")
        if self.rejections:
            lines.append("candidates not taken:" if self.entry is not None else "candidates:")
            lines += [f"  {e['path']}: {reason}" for e, reason in self.rejections]
        elif self.entry is None:
            lines.append("  (the registry has no bundles)")
        return "\n".join(lines)


def code_paths(entry: dict, capability: tuple[int, int]) -> tuple[list[tuple[tuple, str]], list[str]]:
    """Every way this GPU can run the bundle's binaries (rank, how), and why each other target cannot."""
    major, minor = capability
    gpu = arch_of(capability)
    ways, why = [], []
    for name in entry.get("sass", []):
        t = parse_code_target(name)
        if t is None or t.kind != "sm":
            why.append(f"SASS {name} is not an arch name")
        elif t.major != major:
            why.append(f"SASS {name} is for another major (the GPU is {gpu})")
        elif t.suffix == "a" and t.minor != minor:
            why.append(f"SASS {name} runs only on exactly sm_{t.major}{t.minor} (the GPU is {gpu})")
        elif t.minor > minor:
            why.append(f"SASS {name} needs minor >= {t.minor} (the GPU is {gpu})")
        else:
            ways.append(((1, t.major, t.minor), f"{name} SASS"))
    for name in entry.get("ptx", []):
        t = parse_code_target(name)
        if t is None or t.kind != "compute":
            why.append(f"PTX {name} is not a compute target")
        elif t.suffix == "a" and t.capability != capability:
            why.append(f"PTX {name} JIT-compiles only for exactly sm_{t.major}{t.minor} (the GPU is {gpu})")
        elif t.suffix == "f" and t.major != major:
            why.append(f"PTX {name} JIT-compiles only within major {t.major} (the GPU is {gpu})")
        elif t.capability > capability:
            why.append(f"PTX {name} is newer than the GPU ({gpu})")
        else:
            ways.append(((0, t.major, t.minor), f"{name} PTX JIT"))
    if not entry.get("sass") and not entry.get("ptx"):
        why.append("no SASS or PTX targets recorded")
    return ways, why


def fit(entry: dict, capability: tuple[int, int], dtype: str, head_dim: int | None, ops: Sequence[str],
        kernel_set: str | None) -> tuple[tuple | None, str, str]:
    """(rank, how, "") when the entry serves the request on this GPU, else (None, "", reasons)."""
    reasons = []
    if kernel_set is not None and entry["kernel_set"] != kernel_set:
        reasons.append(f"kernel set {entry['kernel_set']} (want {kernel_set})")
    if entry["dtype"] != dtype:
        reasons.append(f"wrong dtype {entry['dtype']} (want {dtype})")
    if head_dim is not None and head_dim not in entry["head_dims"]:
        reasons.append(f"head size {head_dim} missing (has {', '.join(map(str, entry['head_dims']))})")
    missing = [op for op in ops if op not in entry["ops"]]
    if missing:
        reasons.append(f"op {', '.join(missing)} missing (has {', '.join(entry['ops'])})")
    validation = entry.get("validation", {})
    if validation.get("status") == "failed":
        reasons.append(f"validation failed ({validation.get('passed')}/{validation.get('total')} kernels passed)")
    ways, why = code_paths(entry, capability)
    if not ways:
        reasons.append("; ".join(why))
    if reasons:
        return None, "", "; ".join(reasons)
    rank, how = max(ways)
    # equal code paths: a validated bundle before one never run
    return (*rank, validation.get("status") == "passed"), how, ""


def select_bundle(index: dict, capability: tuple[int, int], dtype: str, head_dim: int, ops: Sequence[str],
                  kernel_set: str = "default") -> Selection:
    """The best bundle of `index` for a GPU of `capability` (e.g. (8, 6)), dtype, head size and ops."""
    capability = (int(capability[0]), int(capability[1]))
    dtype = normalize_dtype(dtype)
    ops = list(ops)
    request = f"dtype {dtype}, head size {head_dim}, ops {', '.join(ops) or '(any)'}, kernel set {kernel_set}"
    scored, rejections = [], []
    for entry in index.get("bundles", []):
        rank, how, reason = fit(entry, capability, dtype, head_dim, ops, kernel_set)
        if rank is None:
            rejections.append((entry, reason))
        else:
            scored.append((rank, entry["path"], entry, how))
    if not scored:
        return Selection(None, "", rejections, capability, request)
    scored.sort(key=lambda s: (s[0], s[1]), reverse=True)
    _, _, best, how = scored[0]
    rejections += [(e, f"runs as {h}, but {how} is preferred") for _, _, e, h in scored[1:]]
    return Selection(best, how, rejections, capability, request)


def select_for_gpu(index: dict, capability: tuple[int, int], dtypes: Sequence[str] | None = None,
                   kernel_sets: Sequence[str] | None = None) -> tuple[list[tuple[dict, str]], list[tuple[dict, str]]]:
    """What `pull --arch` fetches: per (dtype, kernel set), the one bundle this GPU would run best.

    Returns (chosen [(entry, how)], rejected [(entry, reason)]).
    """
    wanted_dtypes = {normalize_dtype(d) for d in dtypes} if dtypes else None
    groups: dict[tuple[str, str], list[dict]] = {}
    rejected = []
    for entry in index.get("bundles", []):
        if wanted_dtypes is not None and entry["dtype"] not in wanted_dtypes:
            rejected.append((entry, f"dtype {entry['dtype']} not asked for"))
        elif kernel_sets is not None and entry["kernel_set"] not in kernel_sets:
            rejected.append((entry, f"kernel set {entry['kernel_set']} not asked for"))
        else:
            groups.setdefault((entry["dtype"], entry["kernel_set"]), []).append(entry)
    chosen = []
    for (dtype, kernel_set), entries in sorted(groups.items()):
        sel = select_bundle({"bundles": entries}, capability, dtype, None, [], kernel_set)
        if sel.entry is not None:
            chosen.append((sel.entry, sel.how))
        rejected += sel.rejections
    return chosen, rejected


def build_hint(capability: tuple[int, int]) -> str:
    """What to build so a GPU of this capability gets a bundle: its own arch, or one whose code it runs."""
    from qimeng_serve.targets import TARGETS

    arch = arch_of(capability)
    buildable = sorted((t.compute_capability, t.arch) for t in TARGETS.values() if not t.compile_only)
    if any(a == arch for _, a in buildable):
        return f"`qimeng-serve build --arch {arch}`"
    same_major = [a for cap, a in buildable if cap[0] == capability[0] and cap <= capability]
    if same_major:
        return f"`qimeng-serve build --arch {same_major[-1]}` ({arch} runs its SASS)"
    older = [a for cap, a in buildable if cap <= capability]
    if older:
        return f"`qimeng-serve build --arch {older[-1]}` (its PTX JIT-compiles on {arch})"
    return f"nothing: qimeng-serve supports {buildable[0][1]} and newer GPUs (`qimeng-serve targets`)"
