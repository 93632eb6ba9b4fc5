"""What the generator takes from a Messages API reply: its text and the one fenced code block it asks for.

A reply that cannot be used (no text, a refusal, no fenced block, cut off at max_tokens) raises
Rejected: like a checker error, its message goes back to the model in the next user turn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# ```lang ... ``` with the closing fence on its own line (or at the very end)
_FENCE = re.compile(r"^```[ \t]*([A-Za-z0-9_+.-]*)[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
_OPEN = re.compile(r"^```[ \t]*([A-Za-z0-9_+.-]*)[ \t]*$", re.MULTILINE)


class Rejected(Exception):
    """A reply the generator cannot accept. `gate` says who found the problem; `message` goes back verbatim."""

    def __init__(self, gate: str, message: str, instruction: str = "") -> None:
        super().__init__(message)
        self.gate = gate  # "reply format", "parser", "checker", "interpreter", "nvcc", ...
        self.message = message
        self.instruction = instruction  # what to do about it, appended after the message


@dataclass(frozen=True)
class Reply:
    text: str  # the reply's text blocks joined (thinking and other blocks left out)
    stop_reason: str | None
    model: str
    input_tokens: int
    output_tokens: int
    cached: bool

    @classmethod
    def from_response(cls, response: dict[str, Any], cached: bool) -> Reply:
        """From a Messages API response as JSON (a live one dumped, or one from the cache)."""
        blocks = response.get("content") or []
        text = "\n".join(b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text")
        usage = response.get("usage") or {}
        return cls(text, response.get("stop_reason"), str(response.get("model", "")),
                   int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0), cached)

    def history_text(self) -> str:
        """The assistant turn to replay in the next request; the API refuses an empty one, so say what happened."""
        if self.text.strip():
            return self.text
        return f"(a reply with no text; stop_reason={self.stop_reason})"


def fenced_block(reply: Reply, langs: tuple[str, ...], what: str) -> str:
    """The body of the reply's last fenced block tagged with one of `langs` (an untagged one if it is the only block)."""
    lang = langs[0]
    if reply.stop_reason == "refusal":
        raise Rejected("reply format", "the reply stopped with stop_reason=refusal",
                       f"this is a request for {what} (GPU attention code for an open-source project); "
                       f"please answer it with one ```{lang} block")
    if not reply.text.strip():
        raise Rejected("reply format", f"the reply had no text (stop_reason={reply.stop_reason})",
                       f"reply with {what} as one ```{lang} fenced block")
    blocks = [(tag.lower(), body) for tag, body in _FENCE.findall(reply.text)]
    tagged = [body for tag, body in blocks if tag in langs]
    if tagged:
        return tagged[-1]
    if len(blocks) == 1 and not blocks[0][0]:
        return blocks[0][1]
    opened = [m.group(1).lower() for m in _OPEN.finditer(reply.text)]
    if reply.stop_reason == "max_tokens" and len(opened) % 2 == 1:
        raise Rejected("reply format", "the reply was cut off at max_tokens before its code block closed",
                       f"reply with {what} only, as one ```{lang} block, without commentary")
    found = ", ".join(f"```{t or '(untagged)'}" for t, _ in blocks) or "no fenced block"
    raise Rejected("reply format", f"the reply has no ```{lang} block (found: {found})",
                   f"reply with {what} as one fenced block that starts with ```{lang} and ends with ```")
