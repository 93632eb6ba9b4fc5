"""On-disk cache of Messages API replies, keyed by a hash of everything that decides the reply.

The key covers the model, the prompt version, the system prompt, the full message list,
max_tokens and temperature; a rerun of the same generation therefore makes no request and
rebuilds the identical program. Entries are plain JSON files (never pickle), written atomically,
so a crash leaves no half entry; an unreadable entry counts as a miss and is rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

CACHE_SCHEMA = 1


def request_key(request: dict[str, Any], prompt_version: str) -> str:
    """sha256 over the request as sent (model, system, messages, max_tokens, temperature) and the prompt version."""
    blob = json.dumps({"schema": CACHE_SCHEMA, "prompt_version": prompt_version, "request": request},
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class ReplyCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def load(self, key: str) -> dict[str, Any] | None:
        """The stored response (the Messages API JSON), or None on a miss or an unreadable entry."""
        path = self.path(key)
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or entry.get("key") != key or not isinstance(entry.get("response"), dict):
            return None
        return entry["response"]

    def store(self, key: str, request: dict[str, Any], response: dict[str, Any]) -> Path:
        """Write the entry: the response plus the request it answers (readable: what was sent, what came back)."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"schema": CACHE_SCHEMA, "key": key, "request": request, "response": response}
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(entry, f, indent=1, ensure_ascii=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path
