"""The generator's one door to the Messages API: the real `anthropic` client, the reply cache, the ledger.

The SDK does the transport work: 429 / 5xx / 529 / connection errors are retried `max_retries`
times, honouring `retry-after`. What still fails becomes a QimengError that says what to do.
A request whose reply is in the cache is never sent, so a cached rerun needs no key and no network.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qimeng_serve.errors import QimengError
from qimeng_serve.generate.llm_cache import ReplyCache, request_key
from qimeng_serve.generate.llm_cost import CallUsage, Ledger
from qimeng_serve.generate.llm_reply import Reply

# The model the docs recommend for most work as of 2026-11 (claude-sonnet-5-5 costs half as much).
DEFAULT_MODEL = "claude-opus-5-5"
DEFAULT_MAX_RETRIES = 4  # transport retries inside the SDK (429, 5xx, 529, connection errors)
DEFAULT_TIMEOUT_S = 600.0  # per request; thinking on current models can take minutes
# Thinking counts toward max_tokens on current models: leave room for it and the whole TL / CUDA file.
DEFAULT_MAX_TOKENS = 16_000
OFFLINE_HINT = "the offline default is --generator planner"


def default_cache_dir() -> Path:
    """QIMENG_LLM_CACHE, else the qimeng-serve cache folder's llm/ (QIMENG_CACHE_DIR or ~/.cache/qimeng-serve)."""
    env = os.environ.get("QIMENG_LLM_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("QIMENG_CACHE_DIR")
    root = Path(base) if base else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "qimeng-serve"
    return root / "llm"


@dataclass(frozen=True)
class LLMSettings:
    model: str
    api_key: str | None
    base_url: str | None  # None: the SDK's default endpoint
    cache_dir: Path
    max_retries: int
    timeout_s: float
    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float | None = None  # None: not sent (current Claude models refuse sampling parameters)

    @classmethod
    def resolve(cls, *, model: str | None = None, api_key: str | None = None, base_url: str | None = None,
                cache_dir: Path | str | None = None, max_retries: int | None = None, timeout: float | None = None,
                max_tokens: int | None = None, temperature: float | None = None) -> LLMSettings:
        """Arguments first, then ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL, QIMENG_LLM_MODEL, QIMENG_LLM_CACHE,
        QIMENG_LLM_MAX_RETRIES and QIMENG_LLM_TIMEOUT, then the defaults."""
        retries = max_retries if max_retries is not None else _env_number("QIMENG_LLM_MAX_RETRIES", int, DEFAULT_MAX_RETRIES)
        timeout_s = timeout if timeout is not None else _env_number("QIMENG_LLM_TIMEOUT", float, DEFAULT_TIMEOUT_S)
        if retries < 0:
            raise QimengError(f"max_retries {retries} is negative", fix="use 0 (no retries) or more")
        if timeout_s <= 0:
            raise QimengError(f"timeout {timeout_s} s is not positive", fix="give the seconds a request may take, e.g. 600")
        tokens = max_tokens if max_tokens is not None else DEFAULT_MAX_TOKENS
        if tokens < 1:
            raise QimengError(f"max_tokens {tokens} must be at least 1", fix=f"use e.g. {DEFAULT_MAX_TOKENS}")
        return cls(
            model=model or os.environ.get("QIMENG_LLM_MODEL") or DEFAULT_MODEL,
            api_key=api_key or os.environ.get("ANTHROPIC_API_KEY") or None,
            base_url=base_url or os.environ.get("ANTHROPIC_BASE_URL") or None,
            cache_dir=Path(cache_dir).expanduser() if cache_dir else default_cache_dir(),
            max_retries=retries, timeout_s=float(timeout_s), max_tokens=tokens, temperature=temperature,
        )


def _env_number(name: str, kind: type, default):
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise QimengError(f"{name}={raw!r} is not a number", fix=f"set {name} to a number, or unset it") from None


class LLMClient:
    """Sends one Messages API request at a time (or answers it from the cache) and books its usage."""

    def __init__(self, settings: LLMSettings, prompt_version: str, ledger: Ledger,
                 on_event: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.prompt_version = prompt_version
        self.ledger = ledger
        self.cache = ReplyCache(settings.cache_dir)
        self._on_event = on_event or (lambda _msg: None)
        self._sdk = None  # made at the first request that the cache cannot answer

    def ask(self, system: str, messages: list[dict[str, Any]], label: str) -> Reply:
        s = self.settings
        request: dict[str, Any] = {"model": s.model, "max_tokens": s.max_tokens, "system": system,
                                   "messages": messages}
        if s.temperature is not None:
            request["temperature"] = s.temperature
        key = request_key(request, self.prompt_version)
        stored = self.cache.load(key)
        if stored is not None:
            reply = Reply.from_response(stored, cached=True)
            self._on_event(f"{label}: reply from the cache")
        else:
            self._on_event(f"{label}: asking {s.model} ...")
            response = self._send(request)
            self.cache.store(key, request, response)
            reply = Reply.from_response(response, cached=False)
            self._on_event(f"{label}: {reply.input_tokens:,} input + {reply.output_tokens:,} output tokens "
                           f"(stop_reason {reply.stop_reason})")
        self.ledger.add(CallUsage(label, reply.model or s.model, reply.input_tokens, reply.output_tokens,
                                  reply.cached, reply.stop_reason))
        return reply

    # ------------------------------------------------------------------ transport
    def _client(self):
        if self._sdk is None:
            s = self.settings
            if not s.api_key:
                raise QimengError("no Anthropic API key for the LLM generator",
                                  fix=f"set ANTHROPIC_API_KEY or pass --api-key; {OFFLINE_HINT}")
            import anthropic

            self._sdk = anthropic.Anthropic(api_key=s.api_key, base_url=s.base_url, max_retries=s.max_retries,
                                            timeout=s.timeout_s)
        return self._sdk

    def _send(self, request: dict[str, Any]) -> dict[str, Any]:
        import anthropic

        client = self._client()
        where = self.settings.base_url or "api.anthropic.com"
        tries = f"{self.settings.max_retries + 1} tr{'y' if self.settings.max_retries == 0 else 'ies'}"
        try:
            message = client.messages.create(**request)
        except anthropic.APITimeoutError:
            raise QimengError(f"the Messages API at {where} did not answer within {self.settings.timeout_s:g} s "
                              f"({tries})",
                              fix=f"retry later or raise QIMENG_LLM_TIMEOUT; {OFFLINE_HINT}") from None
        except anthropic.APIConnectionError as exc:
            raise QimengError(f"cannot reach the Messages API at {where}: {exc}",
                              fix=f"check the network and ANTHROPIC_BASE_URL; {OFFLINE_HINT}") from None
        except anthropic.AuthenticationError as exc:
            raise QimengError(f"the Messages API refused the API key: {_api_message(exc)}",
                              fix="set ANTHROPIC_API_KEY (or --api-key) to a valid key") from None
        except anthropic.PermissionDeniedError as exc:
            raise QimengError(f"the API key may not use {request['model']}: {_api_message(exc)}",
                              fix="choose a model your key can use with --model or QIMENG_LLM_MODEL") from None
        except anthropic.NotFoundError as exc:
            raise QimengError(f"the Messages API does not know model {request['model']!r}: {_api_message(exc)}",
                              fix=f"set --model or QIMENG_LLM_MODEL to a current model id, e.g. {DEFAULT_MODEL}") from None
        except anthropic.RateLimitError as exc:
            raise QimengError(f"rate-limited by the Messages API after {tries}: {_api_message(exc)}",
                              fix="wait and rerun (replies received so far are cached), or raise QIMENG_LLM_MAX_RETRIES") from None
        except anthropic.InternalServerError as exc:
            raise QimengError(f"the Messages API failed with HTTP {exc.status_code} after {tries}: {_api_message(exc)}",
                              fix=f"rerun later (replies received so far are cached); {OFFLINE_HINT}") from None
        except anthropic.APIStatusError as exc:
            raise QimengError(f"the Messages API refused the request (HTTP {exc.status_code}): {_api_message(exc)}",
                              fix="check --model / QIMENG_LLM_MODEL and the request size; "
                                  "the qimeng-serve LLM docs list what is sent (docs/llm-generator.md)") from None
        return message.model_dump(mode="json")


def _api_message(exc) -> str:
    """The `error.message` of an API error body, else the SDK's text."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    return str(exc)
