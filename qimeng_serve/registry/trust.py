"""Which Hub repos qimeng-serve loads GPU code from without being told twice.

Default: none. A repo is trusted when QIMENG_ALLOWED_REPOS lists it (comma-separated `org/name`,
or `org/*` for a whole organisation) or a lock file in use names it (a lock is an explicit, reviewed
pin). Anything else needs --allow-untrusted (QIMENG_ALLOW_UNTRUSTED=1 at serving time). Reading a
repo's index for `list` loads no code and needs no trust.
"""

from __future__ import annotations

import os

from qimeng_serve.registry.errors import UntrustedRepo


def allowed_patterns(lock_repo: str | None = None) -> list[str]:
    env = os.environ.get("QIMENG_ALLOWED_REPOS", "")
    patterns = [p.strip() for p in env.split(",") if p.strip()]
    if lock_repo:
        patterns.append(lock_repo)
    return patterns


def is_allowed(repo: str, patterns: list[str]) -> bool:
    org = repo.split("/")[0]
    return any(p == repo or p == f"{org}/*" for p in patterns)


def env_allows_untrusted() -> bool:
    return os.environ.get("QIMENG_ALLOW_UNTRUSTED", "").strip().lower() in ("1", "true", "yes")


def check_trusted(repo: str, *, lock_repo: str | None = None, allow_untrusted: bool = False) -> bool:
    """Raise UntrustedRepo unless the repo is allowed; returns True when it was let in only by the override."""
    patterns = allowed_patterns(lock_repo)
    if is_allowed(repo, patterns):
        return False
    if allow_untrusted:
        return True
    listed = os.environ.get("QIMENG_ALLOWED_REPOS", "")
    raise UntrustedRepo(
        f"{repo} is not in the allow-list of repos qimeng-serve loads GPU code from "
        f"(QIMENG_ALLOWED_REPOS={listed or '(empty)'})",
        fix=f"if you trust its publisher: export QIMENG_ALLOWED_REPOS={repo} (or pass --allow-untrusted once "
            "and pin what you got with --write-lock)")
