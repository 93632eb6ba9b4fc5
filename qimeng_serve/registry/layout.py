"""Where things sit in a registry, local or on the Hub, and how paths and arch names parse.

A bundle's path alone says what it is: `sm_80/f16/qimeng-default-sm_80-f16.safetensors` is the
`default` kernel set for sm_80 in f16. Paths that do not parse are not registry files, which also
keeps a hostile index from naming `../` or absolute paths.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qimeng_serve.build.bundle import bundle_filename

INDEX_FILE = "index.json"
CARD_FILE = "README.md"
LOCK_FILE = "qimeng.lock"
# every bundle the registry manages lives under sm_*/; publish deletes stale ones only there
BUNDLE_GLOB = "sm_*/*/*.safetensors"

_ARCH = r"sm_\d+[af]?"
_BUNDLE_RE = re.compile(
    rf"^(?P<arch>{_ARCH})/(?P<dtype>[a-z0-9]+)/qimeng-(?P<set>[A-Za-z0-9][A-Za-z0-9.+_]*)-(?P=arch)-(?P=dtype)\.safetensors$"
)
_CODE_RE = re.compile(r"^(?P<kind>sm|compute)_(?P<major>\d+)(?P<minor>\d)(?P<suffix>[af]?)$")


@dataclass(frozen=True)
class BundleKey:
    arch: str
    dtype: str
    kernel_set: str

    @property
    def path(self) -> str:
        return bundle_path(self.arch, self.dtype, self.kernel_set)


def bundle_path(arch: str, dtype: str, kernel_set: str) -> str:
    return f"{arch}/{dtype}/{bundle_filename(arch, dtype, kernel_set)}"


def parse_bundle_path(path: str) -> BundleKey | None:
    m = _BUNDLE_RE.match(path)
    return BundleKey(m["arch"], m["dtype"], m["set"]) if m else None


def is_managed(path: str) -> bool:
    """Files publish owns in a Hub repo: the index, the card and bundles. Anything else is left alone."""
    return path in (INDEX_FILE, CARD_FILE) or parse_bundle_path(path) is not None


@dataclass(frozen=True)
class CodeTarget:
    """One binary target of a bundle: SASS `sm_80` / `sm_90a`, or PTX `compute_80`."""

    kind: str  # "sm" (SASS) or "compute" (PTX)
    major: int
    minor: int
    suffix: str  # "", "a" (this exact arch only) or "f" (this family)

    @property
    def capability(self) -> tuple[int, int]:
        return self.major, self.minor


def parse_code_target(name: str) -> CodeTarget | None:
    m = _CODE_RE.match(name.strip().lower())
    if not m:
        return None
    return CodeTarget(m["kind"], int(m["major"]), int(m["minor"]), m["suffix"])


def parse_capability(text: str) -> tuple[int, int]:
    """`sm_86`, `sm86`, `86`, `8.6` or `compute_86` -> (8, 6)."""
    from qimeng_serve.registry.errors import RegistryError

    t = text.strip().lower()
    if re.fullmatch(r"\d+\.\d", t):
        major, minor = t.split(".")
        return int(major), int(minor)
    m = re.fullmatch(r"(?:sm_?|compute_)?(\d+)(\d)[af]?", t)
    if not m:
        raise RegistryError(f"'{text}' is not a GPU architecture", fix="write it as sm_86 (or 8.6)")
    return int(m[1]), int(m[2])


def arch_of(capability: tuple[int, int]) -> str:
    return f"sm_{capability[0]}{capability[1]}"
