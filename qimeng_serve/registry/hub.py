"""Reading a Hub registry through the Hugging Face cache: one commit, only the files asked for.

A revision (branch or tag) is resolved to a commit sha once; every file is then fetched at that sha,
so a publish landing mid-pull cannot mix two registries. The files land in the normal HF cache
(HF_HOME / HF_HUB_CACHE), which is what makes a later start-up work offline.

When the Hub cannot be reached (connection refused, time-out, 5xx) the revision is looked up in the
cache's refs instead, with a warning, and nothing more is asked of the network. HF_HUB_OFFLINE=1
goes to the cache directly. What the cache lacks then is a HubUnavailable error naming the file and
how to get it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from qimeng_serve.registry.errors import ChecksumMismatch, HubUnavailable, RegistryError
from qimeng_serve.registry.verify import file_problem

REPO_TYPE = "model"
DEFAULT_TIMEOUT_S = 10.0
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def hub_timeout() -> float:
    """Seconds to wait for the Hub before falling back to the cache (QIMENG_HUB_TIMEOUT)."""
    try:
        return float(os.environ.get("QIMENG_HUB_TIMEOUT", DEFAULT_TIMEOUT_S))
    except ValueError:
        return DEFAULT_TIMEOUT_S


def is_commit(revision: str | None) -> bool:
    return bool(revision and COMMIT_RE.match(revision))


def get_from_here_fix(repo: str) -> str:
    return (f"on a machine that reaches the Hub run `qimeng-serve pull --repo {repo} --arch sm_XX --registry DIR` "
            "and serve from that folder (QIMENG_REGISTRY=DIR), or copy its HF cache (HF_HOME) here")


class HubReader:
    """Read-only access to one Hub repo through the HF cache, with fallback to the cache."""

    def __init__(self, repo: str, *, endpoint: str | None = None, cache_dir: Path | str | None = None,
                 timeout: float | None = None, token: str | bool | None = None) -> None:
        from huggingface_hub import HfApi, constants

        self.repo = repo
        self.endpoint = endpoint
        self.cache_dir = Path(cache_dir or constants.HF_HUB_CACHE)
        self.timeout = timeout if timeout is not None else hub_timeout()
        self.api = HfApi(endpoint=endpoint, token=token)
        self.cache_only: str | None = None  # why the network is not used any more ("HF_HUB_OFFLINE=1", an error)
        self.warnings: list[str] = []

    @property
    def where(self) -> str:
        return self.endpoint or self.api.endpoint

    # ------------------------------------------------------------------ revision -> commit
    def resolve(self, revision: str | None) -> str:
        """The commit sha a branch, tag or sha names now (or, offline, the one the cache last saw)."""
        import httpx2
        from huggingface_hub import constants
        from huggingface_hub.errors import (
            HfHubHTTPError,
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        rev = revision or "main"
        if is_commit(rev):
            return rev
        if constants.is_offline_mode():
            self.cache_only = "HF_HUB_OFFLINE=1"
            return self._cached_commit(rev)
        try:
            info = self.api.repo_info(self.repo, revision=rev, repo_type=REPO_TYPE, timeout=self.timeout)
        except RepositoryNotFoundError:
            raise RegistryError(f"no Hub repo {self.repo} at {self.where} (or it is private and the token cannot read it)",
                                fix="check the name, or log in: `hf auth login` / HF_TOKEN") from None
        except RevisionNotFoundError:
            raise RegistryError(f"{self.repo} has no branch or tag '{rev}'",
                                fix=f"list them with `qimeng-serve list --repo {self.repo}`, or pass a commit sha") from None
        except (httpx2.TransportError, OfflineModeIsEnabled) as exc:
            return self._fall_back(rev, exc)
        except HfHubHTTPError as exc:
            if exc.response is not None and exc.response.status_code >= 500:
                return self._fall_back(rev, exc)
            raise RegistryError(f"the Hub refused {self.repo}@{rev}: {_first_line(exc)}",
                                fix="check the token's permissions (`hf auth whoami`)") from None
        self._remember_ref(rev, info.sha)
        return info.sha

    def _fall_back(self, rev: str, exc: Exception) -> str:
        self.cache_only = f"{type(exc).__name__}: {_first_line(exc)}"
        sha = self._cached_commit(rev)
        self.warnings.append(f"the Hub at {self.where} cannot be reached ({self.cache_only}); using the cached "
                             f"{self.repo}@{rev} = {sha[:12]} from {self.cache_dir}")
        return sha

    def _cached_commit(self, rev: str) -> str:
        from huggingface_hub.errors import RevisionResolutionError

        try:
            return self.api.resolve_revision(self.repo, revision=rev, repo_type=REPO_TYPE, cache_dir=self.cache_dir,
                                             local_files_only=True).resolved
        except RevisionResolutionError:
            raise HubUnavailable(f"cannot reach the Hub for {self.repo}@{rev} ({self.cache_only}) and the HF cache "
                                 f"({self.cache_dir}) has never seen that revision",
                                 fix=get_from_here_fix(self.repo)) from None

    def _remember_ref(self, rev: str, sha: str) -> None:
        """Record rev -> sha in the cache's refs/ (the HF cache layout), so an offline start finds it."""
        from huggingface_hub.file_download import repo_folder_name

        ref = self.cache_dir / repo_folder_name(repo_id=self.repo, repo_type=REPO_TYPE) / "refs" / rev
        try:
            ref.parent.mkdir(parents=True, exist_ok=True)
            tmp = ref.with_name(ref.name + ".tmp")
            tmp.write_text(sha)
            os.replace(tmp, ref)
        except OSError as exc:  # a read-only cache still serves this run
            self.warnings.append(f"could not record {rev} -> {sha[:12]} in the HF cache ({exc})")

    # ------------------------------------------------------------------ files
    def fetch(self, path: str, commit: str, *, sha256: str | None = None, size: int | None = None) -> Path:
        """One file of the repo at `commit`, from the cache or the Hub; checked when sha256 is given.

        A file cached at that commit is used without any request (a commit never changes). A file that
        fails the check is removed from the cache before ChecksumMismatch is raised, so a tampered or
        truncated copy is never picked up again.
        """
        local = self._download(path, commit, local_only=self.cache_only is not None)
        if sha256 is not None:
            problem = file_problem(local, sha256, size)
            if problem is not None:
                self.evict(local)
                raise ChecksumMismatch(
                    f"refusing {self.repo}@{commit[:12]}:{path}: {problem}; the copy was deleted from the HF cache",
                    fix="pull it again; if it repeats, the repo or the network path serves altered files: "
                        "do not use it, tell its publisher")
        return local

    def _download(self, path: str, commit: str, *, local_only: bool) -> Path:
        import httpx2
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import (
            HfHubHTTPError,
            LocalEntryNotFoundError,
            OfflineModeIsEnabled,
            RemoteEntryNotFoundError,
        )

        try:
            return Path(hf_hub_download(self.repo, path, revision=commit, repo_type=REPO_TYPE, cache_dir=self.cache_dir,
                                        endpoint=self.endpoint, etag_timeout=self.timeout, local_files_only=local_only))
        except RemoteEntryNotFoundError:
            raise RegistryError(f"{self.repo}@{commit[:12]} has no {path}",
                                fix="the index and the repo disagree: ask its publisher to re-publish") from None
        except (LocalEntryNotFoundError, OfflineModeIsEnabled, httpx2.TransportError, HfHubHTTPError) as exc:
            why = self.cache_only or f"{type(exc).__name__}: {_first_line(exc)}"
            raise HubUnavailable(f"{self.repo}@{commit[:12]}:{path} is not in the HF cache ({self.cache_dir}) and "
                                 f"cannot be downloaded ({why})", fix=get_from_here_fix(self.repo)) from None

    @staticmethod
    def evict(local: Path) -> None:
        """Delete a cached file: the snapshot link and the blob it points at."""
        blob = local.resolve()
        for p in (local, blob):
            try:
                p.unlink()
            except FileNotFoundError:
                pass


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
