"""Registry failures a user can act on; each says what is wrong and how to fix it."""

from __future__ import annotations

from qimeng_serve.errors import QimengError


class RegistryError(QimengError):
    """A registry (local folder or Hub repo) that cannot be used as it is."""


class IndexInvalid(RegistryError):
    """index.json is missing, not JSON, or does not follow its schema."""


class ChecksumMismatch(RegistryError):
    """A file whose sha256 or size differs from the index or the lock: never loaded."""


class NoMatchingArtifact(RegistryError):
    """No bundle in the registry runs on this GPU with this dtype, head size and ops."""


class HubUnavailable(RegistryError):
    """The Hub cannot be reached (or HF_HUB_OFFLINE is set) and the cache lacks what is needed."""


class PublishRefused(RegistryError):
    """A publish stopped before uploading: unvalidated or mismatching bundles, a taken tag."""


class PublishConflict(RegistryError):
    """The branch moved between reading its head and committing: someone else published."""


class UntrustedRepo(RegistryError):
    """A repo outside QIMENG_ALLOWED_REPOS and the lock, without --allow-untrusted."""


class LockMismatch(RegistryError):
    """A lock file that does not match the repo, revision or files asked for."""
