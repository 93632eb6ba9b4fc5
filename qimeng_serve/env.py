"""Every QIMENG_* variable and default path, in one place."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_ROOT.parent


def default_registry() -> Path:
    """QIMENG_REGISTRY, else the checkout's registry/ folder, else a per-user data folder."""
    env = os.environ.get("QIMENG_REGISTRY")
    if env:
        return Path(env)
    if (REPO_ROOT / "registry" / "README.md").is_file() and (REPO_ROOT / "pyproject.toml").is_file():
        return REPO_ROOT / "registry"
    data = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return data / "qimeng-serve" / "registry"


def sm90a_enabled() -> bool:
    """False when QIMENG_NO_SM90A is set (1/true/yes): KernelSet then ignores the Hopper (sm90a)
    kernels of a bundle and runs the portable ones (A/B comparisons, a safety valve)."""
    return os.environ.get("QIMENG_NO_SM90A", "").strip().lower() not in ("1", "true", "yes", "on")
