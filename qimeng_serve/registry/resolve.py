"""The one call serving code makes: which verified bundle file serves this GPU, dtype, head size and ops.

Where the bundle comes from (arguments first, then the environment):
- a Hub repo (`repo` / QIMENG_REPO), or a lock file (`lock` / QIMENG_LOCK) with no local registry named:
  the index and the one matching bundle are fetched at one commit through the HF cache;
- otherwise a local registry (`registry` / QIMENG_REGISTRY / the default one); a lock given too then
  pins the hashes the local files must have.
Either way the file's sha256 is checked against the index (and the lock) before its path is returned.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from qimeng_serve.registry.errors import (
    NoMatchingArtifact,
)
from qimeng_serve.registry.hub import HubReader
from qimeng_serve.registry.index import read_index
from qimeng_serve.registry.layout import INDEX_FILE, arch_of
from qimeng_serve.registry.lock import (
    Lock,
    check_lock_repo,
    check_locked_entry,
    read_lock,
)
from qimeng_serve.registry.select import Selection, build_hint, select_bundle
from qimeng_serve.registry.trust import check_trusted, env_allows_untrusted
from qimeng_serve.registry.verify import require_file

log = logging.getLogger("qimeng_serve.registry")

__all__ = ["NoMatchingArtifact", "ResolvedArtifact", "resolve_artifact"]


@dataclass
class ResolvedArtifact:
    bundle_path: Path  # verified against the index's (and the lock's) sha256
    entry: dict  # the bundle's index entry
    source: str  # "local registry /x" or "hub org/name@<sha>"
    selection: Selection
    warnings: list[str] = field(default_factory=list)  # e.g. the Hub was unreachable and the cache served


def resolve_artifact(capability: tuple[int, int], dtype: str, head_dim: int, ops: Sequence[str], *,
                     registry: Path | None = None, repo: str | None = None, revision: str | None = None,
                     lock: Path | None = None, endpoint: str | None = None, kernel_set: str = "default",
                     allow_untrusted: bool | None = None, cache_dir: Path | None = None,
                     timeout: float | None = None) -> ResolvedArtifact:
    """Find, fetch if needed, and verify the bundle for a GPU of `capability` (e.g. (8, 6)).

    Raises NoMatchingArtifact (every candidate with its rejection reason), ChecksumMismatch,
    HubUnavailable, UntrustedRepo or LockMismatch, all QimengError with a `fix`.
    """
    env = os.environ
    lock_path = lock or (Path(env["QIMENG_LOCK"]) if env.get("QIMENG_LOCK") else None)
    repo = repo or env.get("QIMENG_REPO") or None
    revision = revision or env.get("QIMENG_REVISION") or None
    registry_named = registry or (Path(env["QIMENG_REGISTRY"]) if env.get("QIMENG_REGISTRY") else None)
    pinned = read_lock(lock_path) if lock_path else None
    if pinned is not None and (repo or not registry_named):
        check_lock_repo(pinned, repo, revision, lock_path)
        repo = pinned.repo
    if repo:
        if allow_untrusted is None:
            allow_untrusted = env_allows_untrusted()
        result = _from_hub(capability, dtype, head_dim, ops, kernel_set, repo, revision, pinned, endpoint,
                           allow_untrusted, cache_dir, timeout)
    else:
        from qimeng_serve.env import default_registry

        result = _from_local(capability, dtype, head_dim, ops, kernel_set, registry_named or default_registry(), pinned)
    for w in result.warnings:
        log.warning(w)
    log.info("qimeng-serve kernels: %s from %s (%s)", result.entry["path"], result.source, result.selection.how)
    return result


def _no_match(selection: Selection, source: str, head_dim: int) -> NoMatchingArtifact:
    arch = arch_of(selection.capability)
    return NoMatchingArtifact(
        f"no kernel bundle in {source} serves this GPU:\n{selection.explain()}",
        fix=f"build {build_hint(selection.capability)} for {arch} and publish or pull it, point at a registry that "
            f"has it, or check that the model's dtype and head size ({head_dim}) are built")


def _from_local(capability, dtype, head_dim, ops, kernel_set, registry: Path, pinned: Lock | None) -> ResolvedArtifact:
    source = f"local registry {registry}"
    index = read_index(registry / INDEX_FILE, source=source)
    selection = select_bundle(index, capability, dtype, head_dim, ops, kernel_set)
    if selection.entry is None:
        raise _no_match(selection, source, head_dim)
    entry = selection.entry
    check_locked_entry(pinned, entry)
    require_file(registry / entry["path"], entry["sha256"], entry["size"], what=f"{entry['path']} in {source}",
                 fix=f"rebuild it (`qimeng-serve build --arch {entry['arch']}`) or pull it again "
                     f"(`qimeng-serve pull ... --registry {registry}`)")
    return ResolvedArtifact(registry / entry["path"], entry, source, selection)


def _from_hub(capability, dtype, head_dim, ops, kernel_set, repo, revision, pinned: Lock | None, endpoint,
              allow_untrusted, cache_dir, timeout) -> ResolvedArtifact:
    warnings = []
    if check_trusted(repo, lock_repo=pinned.repo if pinned else None, allow_untrusted=allow_untrusted):
        warnings.append(f"{repo} is not in QIMENG_ALLOWED_REPOS; loading it because untrusted repos were allowed")
    reader = HubReader(repo, endpoint=endpoint, cache_dir=cache_dir, timeout=timeout)
    commit = pinned.commit if pinned else reader.resolve(revision)
    index_path = reader.fetch(INDEX_FILE, commit, sha256=pinned.files.get(INDEX_FILE) if pinned else None)
    source = f"hub {repo}@{commit}"
    index = read_index(index_path, source=source)
    selection = select_bundle(index, capability, dtype, head_dim, ops, kernel_set)
    if selection.entry is None:
        raise _no_match(selection, source, head_dim)
    entry = selection.entry
    check_locked_entry(pinned, entry)
    path = reader.fetch(entry["path"], commit, sha256=entry["sha256"], size=entry["size"])
    if reader.cache_only:
        source += " (from the HF cache)"
    return ResolvedArtifact(path, entry, source, selection, warnings + reader.warnings)

