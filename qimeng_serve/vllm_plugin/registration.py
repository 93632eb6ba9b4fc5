"""Registration with vLLM's attention-backend registry, by feature detection (never by version).

vLLM with `AttentionBackendEnum.register` (0.27 and later) gets a new member QIMENG, so users type
`--attention-backend qimeng`. Older vLLM (0.26) has a fixed enum: the backend takes its CUSTOM
slot, and users type `--attention-backend CUSTOM`. `registered_name()` tells which, and the
backend's `get_name()` returns it, because vLLM looks the layer's backend up by that name.

Two entry points call this (pyproject.toml):
- `vllm.general_plugins` -> `register`: the documented route, run once in every vLLM process.
- `vllm.platform_plugins` -> `platform_hook`: registers too and returns None ("not my platform").
  A spawned worker unpickles its config, which holds the QIMENG member, *before* it loads the
  general plugins; resolving the platform (which runs this hook) happens first, so the member
  exists in time.
"""

from __future__ import annotations

import functools
import logging

from qimeng_serve.vllm_plugin import BACKEND_CLASS_PATH, BACKEND_NAME

# a child of vLLM's logger, so these lines appear in vLLM's own log output and format
log = logging.getLogger("vllm.qimeng")

CUSTOM = "CUSTOM"


def _registry():
    from vllm.v1.attention.backends import registry

    return registry


def supports_named_backends() -> bool:
    """True when this vLLM can add a backend name (QIMENG); False means the CUSTOM slot."""
    return hasattr(_registry().AttentionBackendEnum, "register")


def register() -> None:
    """Register the backend with vLLM. Idempotent: every vLLM process may call it more than once."""
    registry = _registry()
    enum = registry.AttentionBackendEnum
    if hasattr(enum, "register"):
        if BACKEND_NAME not in enum.__members__:
            # always with the class path: a bare name stores "", which aliases TORCH_SDPA's value
            registry.register_backend(BACKEND_NAME, BACKEND_CLASS_PATH)
        return
    custom = enum.CUSTOM
    taken_by = registry._ATTN_OVERRIDES.get(custom)
    if taken_by not in (None, BACKEND_CLASS_PATH):
        _warn_custom_taken(taken_by)
        return
    registry.register_backend(custom, BACKEND_CLASS_PATH)


@functools.cache
def _warn_custom_taken(taken_by: str) -> None:
    log.warning("qimeng-serve: the CUSTOM attention backend is already %s; leaving it, so "
                "`--attention-backend CUSTOM` will not select qimeng", taken_by)


def platform_hook() -> None:
    """`vllm.platform_plugins` entry: register, then return None, which tells vLLM "not a platform"."""
    try:
        register()
    except Exception as exc:  # noqa: BLE001  (vLLM would swallow it silently; say what happened instead)
        log.warning("qimeng-serve: attention backend registration from the platform hook failed: %s", exc)


def registered_name() -> str:
    """The enum member vLLM knows this backend by: QIMENG, or CUSTOM on vLLM without named backends."""
    register()  # idempotent; makes the answer true even in a process that has not loaded plugins yet
    return BACKEND_NAME if supports_named_backends() else CUSTOM


def cli_name() -> str:
    """What a user types after --attention-backend on this vLLM."""
    return "qimeng" if supports_named_backends() else CUSTOM
