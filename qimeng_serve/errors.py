"""Errors that reach the user: what went wrong, then how to fix it.

Library code raises these and never prints or exits; `cli.py` turns them into
`error: ...` / `fix: ...` on stderr and exit status 2. Anything else is a bug.
"""

from __future__ import annotations

from dataclasses import dataclass


class QimengError(Exception):
    """A user-facing failure with a one-line message and a one-line fix."""

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return self.message if not self.fix else f"{self.message} (fix: {self.fix})"


class UnknownTargetError(QimengError):
    """An architecture name that has no profile."""


class SpecError(QimengError):
    """An AttentionSpec that cannot be built for the asked target."""


@dataclass(frozen=True)
class Span:
    """Where a TL construct sits in its source: 1-based line and column."""

    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.line}:{self.column}"


class TLError(QimengError):
    """A TL parse, check or run failure pointing at source."""

    def __init__(self, message: str, span: Span | None = None, fix: str = "", source_name: str = "<tl>") -> None:
        super().__init__(message, fix)
        self.span = span
        self.source_name = source_name

    def location(self) -> str:
        return f"{self.source_name}:{self.span}" if self.span else self.source_name

    def render(self, source: str | None = None) -> str:
        """Triton-style: `file:line:col: error: message`, the line, a caret, then the fix."""
        out = [f"{self.location()}: error: {self.message}"]
        if source is not None and self.span is not None:
            lines = source.splitlines()
            if 0 < self.span.line <= len(lines):
                out.append("    " + lines[self.span.line - 1])
                out.append("    " + " " * (self.span.column - 1) + "^")
        if self.fix:
            out.append(f"fix: {self.fix}")
        return "\n".join(out)


class TLSyntaxError(TLError):
    """The text is not TL."""


class TLCheckError(TLError):
    """A TL program violates a rule of the language or of its target; carries every diagnostic."""

    def __init__(self, diagnostics: list, source_name: str = "<tl>") -> None:
        first = diagnostics[0]
        super().__init__(first.message, first.span, first.fix, source_name)
        self.diagnostics = diagnostics

    def render(self, source: str | None = None) -> str:
        """Every diagnostic, not only the first: an LLM repairing the program needs them all."""
        return "\n".join(d.render(self.source_name) for d in self.diagnostics)

    def __str__(self) -> str:
        return self.render()


class TLRuntimeError(TLError):
    """The interpreter could not execute a statement (shape mismatch, unknown name...)."""
