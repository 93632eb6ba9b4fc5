"""`qimeng-serve pull`: the bundles one GPU architecture needs, from a Hub repo into a local registry.

Only the index and the chosen bundles are downloaded (into the HF cache, at one commit); each is
checked against the index (and the lock) and only then copied into the local registry layout, so a
bad file never reaches the folder a server loads from. The local index.json and card are updated
to list what the folder now holds. `--write-lock` pins the commit and every file's sha256.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from qimeng_serve.build.bundle import sha256_file
from qimeng_serve.registry.card import size_text, write_card
from qimeng_serve.registry.errors import (
    ChecksumMismatch,
    IndexInvalid,
    NoMatchingArtifact,
    RegistryError,
)
from qimeng_serve.registry.hub import HubReader
from qimeng_serve.registry.index import (
    empty_index,
    merge_entries,
    read_index,
    scan_index,
    write_index,
)
from qimeng_serve.registry.layout import INDEX_FILE, arch_of, parse_capability
from qimeng_serve.registry.lock import (
    Lock,
    check_lock_repo,
    check_locked_entry,
    lock_for,
    read_lock,
    write_lock,
)
from qimeng_serve.registry.select import build_hint, select_for_gpu
from qimeng_serve.registry.trust import check_trusted
from qimeng_serve.registry.verify import file_problem


@dataclass
class PulledBundle:
    entry: dict
    how: str  # how the asked-for GPU runs it: "sm_80 SASS", "compute_80 PTX JIT"
    dest: Path
    already_there: bool


@dataclass
class PullResult:
    repo: str
    commit: str
    registry: Path
    bundles: list[PulledBundle]
    rejected: list[tuple[dict, str]]
    lock_path: Path | None
    from_cache: bool
    warnings: list[str] = field(default_factory=list)


def pull(repo: str | None, archs: Sequence[str], *, registry: Path, revision: str | None = None,
         lock: Path | None = None, write_lock_to: Path | None = None, dtypes: Sequence[str] | None = None,
         kernel_sets: Sequence[str] | None = None, endpoint: str | None = None, allow_untrusted: bool = False,
         cache_dir: Path | None = None, timeout: float | None = None,
         on_step: Callable[[str], None] | None = None) -> PullResult:
    step = on_step or (lambda _msg: None)
    pinned: Lock | None = read_lock(lock) if lock else None
    if pinned is not None:
        check_lock_repo(pinned, repo, revision, lock)
        repo = pinned.repo
    if not repo:
        raise RegistryError("pull needs a repo", fix="pass --repo ORG/NAME (or --lock qimeng.lock)")
    warnings = []
    if check_trusted(repo, lock_repo=pinned.repo if pinned else None, allow_untrusted=allow_untrusted):
        warnings.append(f"{repo} is not in QIMENG_ALLOWED_REPOS; pulled because of --allow-untrusted")
    reader = HubReader(repo, endpoint=endpoint, cache_dir=cache_dir, timeout=timeout)
    commit = pinned.commit if pinned is not None else reader.resolve(revision)
    step(f"{repo}@{revision or (pinned.revision if pinned else 'main')} = {commit}")
    index_path = reader.fetch(INDEX_FILE, commit, sha256=pinned.files.get(INDEX_FILE) if pinned else None)
    index = read_index(index_path, source=f"hub {repo}@{commit[:12]}")

    chosen: dict[str, tuple[dict, str]] = {}
    rejected: list[tuple[dict, str]] = []
    for arch in archs:
        capability = parse_capability(arch)
        picks, lost = select_for_gpu(index, capability, dtypes, kernel_sets)
        if not picks:
            lines = "\n".join(f"  {e['path']}: {why}" for e, why in lost) or "  (the index lists no bundles)"
            asked = "".join([f", dtype {'/'.join(dtypes)}" if dtypes else "",
                             f", kernel set {'/'.join(kernel_sets)}" if kernel_sets else ""])
            raise NoMatchingArtifact(f"{repo}@{commit[:12]} has no bundle an {arch_of(capability)} GPU runs{asked}:\n{lines}",
                                     fix=f"publish one built with {build_hint(capability)}, or pull another --arch")
        for entry, how in picks:
            chosen.setdefault(entry["path"], (entry, how))
        rejected += lost

    local = _local_index(registry, warnings)
    pulled = []
    for path, (entry, how) in sorted(chosen.items()):
        check_locked_entry(pinned, entry)
        step(f"fetching {path} ({size_text(entry['size'])}, {how})")
        src = reader.fetch(path, commit, sha256=entry["sha256"], size=entry["size"])
        dest, already = install_file(src, registry / path, entry["sha256"])
        pulled.append(PulledBundle(entry, how, dest, already))

    merged = merge_entries(local, [b.entry for b in pulled])
    write_index(registry, merged)
    write_card(registry, merged)
    lock_path = None
    if write_lock_to is not None:
        rev = revision or (pinned.revision if pinned else "main")
        lock_path = write_lock(write_lock_to, lock_for(repo, rev, commit, index, sha256_file(index_path)))
    return PullResult(repo, commit, registry, pulled, rejected, lock_path, reader.cache_only is not None,
                      warnings + reader.warnings)


def _local_index(registry: Path, warnings: list[str]) -> dict:
    """The index of the folder pulled into; one that no longer reads is rebuilt from its bundles."""
    path = registry / INDEX_FILE
    if not path.is_file():
        return empty_index()
    try:
        return read_index(path, source=f"local registry {registry}")
    except IndexInvalid as exc:
        warnings.append(f"{exc.message}; rebuilt it from the bundles in {registry}")
        return scan_index(registry)


def install_file(src: Path, dest: Path, sha256: str) -> tuple[Path, bool]:
    """Copy a verified file into place atomically, checking the copy too; (dest, it was already there)."""
    if dest.is_file() and file_problem(dest, sha256) is None:
        return dest, True
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out, 1 << 20)
        os.chmod(tmp, 0o644)
        problem = file_problem(tmp, sha256)
        if problem is not None:  # the source changed under us: never leave it in the registry
            raise ChecksumMismatch(f"refusing {dest}: the copy has {problem}", fix="pull again")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest, False
