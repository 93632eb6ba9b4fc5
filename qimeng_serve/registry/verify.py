"""Files against the index (and a lock): size and sha256, and the manifest against its entry.

A mismatch is never "probably fine": the bytes are GPU code, so anything that differs from what was
validated and published is refused before it is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from qimeng_serve.build.bundle import BundleError, read_manifest, sha256_file
from qimeng_serve.registry.errors import ChecksumMismatch
from qimeng_serve.registry.layout import BUNDLE_GLOB


def file_problem(path: Path, sha256: str, size: int | None = None) -> str | None:
    """Why `path` is not the file the index describes, or None when it is."""
    if not path.is_file():
        return "missing"
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        return f"size {actual_size} B, the index says {size} B"
    actual = sha256_file(path)
    if actual != sha256:
        return f"sha256 {actual}, expected {sha256}"
    return None


def require_file(path: Path, sha256: str, size: int | None, what: str, fix: str) -> None:
    """Raise ChecksumMismatch unless `path` has this size and sha256."""
    problem = file_problem(path, sha256, size)
    if problem is not None:
        raise ChecksumMismatch(f"refusing {what}: {problem}", fix=fix)


@dataclass
class VerifyReport:
    checked: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, what is wrong)
    unlisted: list[str] = field(default_factory=list)  # bundle files the index does not name

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_registry(registry: Path, index: dict, lock_files: dict[str, str] | None = None) -> VerifyReport:
    """Check every bundle the index lists; with `lock_files`, also against the lock's hashes."""
    report = VerifyReport()
    for entry in index["bundles"]:
        path = registry / entry["path"]
        report.checked.append(entry["path"])
        problem = file_problem(path, entry["sha256"], entry["size"])
        if problem is None:
            problem = _manifest_problem(path, entry)
        if problem is None and lock_files is not None:
            locked = lock_files.get(entry["path"])
            if locked is None:
                problem = "not in the lock file"
            elif locked != entry["sha256"]:
                problem = f"the lock pins sha256 {locked}, the index says {entry['sha256']}"
        if problem is not None:
            report.problems.append((entry["path"], problem))
    listed = {e["path"] for e in index["bundles"]}
    report.unlisted = sorted(p.relative_to(registry).as_posix() for p in registry.glob(BUNDLE_GLOB)
                             if p.relative_to(registry).as_posix() not in listed)
    return report


def _manifest_problem(path: Path, entry: dict) -> str | None:
    try:
        m = read_manifest(path)
    except BundleError as exc:
        return exc.message
    got = (m.get("arch"), m.get("dtype"), m.get("kernel_set"))
    want = (entry["arch"], entry["dtype"], entry["kernel_set"])
    if got != want:
        return f"its manifest says {'/'.join(map(str, got))}, the index says {'/'.join(want)}"
    return None
