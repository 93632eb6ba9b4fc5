"""qimeng.lock: one Hub registry pinned to a commit, every file of it to a sha256.

Branches move and tags can be re-pointed; a commit sha cannot. `pull --write-lock` records the
commit a revision resolved to and the sha256 of index.json and of every bundle that index lists
(not only the ones pulled, so the same lock serves every GPU of a fleet). `pull --lock` and
QIMENG_LOCK then fetch exactly that commit and refuse any file whose hash differs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from qimeng_serve import __version__
from qimeng_serve.registry.errors import ChecksumMismatch, LockMismatch
from qimeng_serve.registry.index import _validator

LOCK_SCHEMA = "qimeng-lock/1"


@dataclass
class Lock:
    repo: str
    revision: str
    commit: str
    files: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"schema": LOCK_SCHEMA, "repo": self.repo, "repo_type": "model", "revision": self.revision,
                "commit": self.commit, "files": dict(sorted(self.files.items())),
                "created_by": f"qimeng-serve {__version__}"}


def lock_for(repo: str, revision: str, commit: str, index: dict, index_sha256: str) -> Lock:
    files = {"index.json": index_sha256}
    files.update({e["path"]: e["sha256"] for e in index["bundles"]})
    return Lock(repo, revision, commit, files)


def write_lock(path: Path, lock: Lock) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(lock.to_json(), indent=2) + "\n")
    os.replace(tmp, path)
    return path


def read_lock(path: Path) -> Lock:
    if not path.is_file():
        raise LockMismatch(f"no lock file at {path}",
                           fix="write one with `qimeng-serve pull --repo ORG/NAME --arch sm_XX --write-lock qimeng.lock`")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LockMismatch(f"{path} is not valid JSON ({exc})", fix="write it again with `pull --write-lock`") from None
    errors = list(_validator("lock.schema.json").iter_errors(data))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise LockMismatch(f"{path} is not a {LOCK_SCHEMA} lock file: {where}: {e.message}",
                           fix="write it again with `qimeng-serve pull --write-lock`")
    return Lock(data["repo"], data["revision"], data["commit"], dict(data["files"]))


def check_lock_repo(lock: Lock, repo: str | None, revision: str | None, lock_path: Path) -> None:
    """A lock and explicit --repo / --revision that disagree are a mistake worth stopping for."""
    if repo is not None and repo != lock.repo:
        raise LockMismatch(f"{lock_path} pins {lock.repo}, not {repo}",
                           fix=f"drop --repo (the lock names the repo), or write a new lock for {repo}")
    if revision is not None and revision not in (lock.revision, lock.commit):
        raise LockMismatch(f"{lock_path} pins {lock.repo}@{lock.commit[:12]} ({lock.revision}), not revision {revision}",
                           fix="drop --revision to use the lock, or re-lock: `qimeng-serve pull ... --revision "
                               f"{revision} --write-lock {lock_path}`")


def check_locked_entry(pinned: Lock | None, entry: dict) -> None:
    """The index entry about to be fetched must be in the lock, with the same sha256."""
    if pinned is None:
        return
    locked = pinned.files.get(entry["path"])
    if locked is None:
        raise LockMismatch(f"the lock for {pinned.repo}@{pinned.commit[:12]} has no {entry['path']}",
                           fix="re-lock against a commit that has it: `qimeng-serve pull --repo "
                               f"{pinned.repo} --arch {entry['arch']} --write-lock FILE`")
    if locked != entry["sha256"]:
        raise ChecksumMismatch(f"refusing {entry['path']}: the index says sha256 {entry['sha256']}, the lock pins {locked}",
                               fix="the registry changed since the lock was written: re-lock after reviewing it, "
                                   "or restore the locked files")
