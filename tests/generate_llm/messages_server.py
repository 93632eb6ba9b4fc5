"""A local HTTP server that speaks the Anthropic Messages API (`POST /v1/messages`), scripted per test.

Each test queues what the next requests get: a message (the API's JSON shape: id, type, role,
content blocks, model, stop_reason, usage), an API error (`{"type": "error", "error": {...}}`
with its status and headers such as `retry-after`), or a reply held back longer than the client's
timeout. Every request is recorded: its JSON body, headers and arrival time. The real `anthropic`
client talks to it through `base_url`.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
               429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}
_ids = itertools.count(1)


def message(text: str | None, *, model: str = "claude-opus-5-5", stop_reason: str = "end_turn",
            input_tokens: int = 1000, output_tokens: int = 200, thinking: str | None = None) -> dict[str, Any]:
    """A Messages API response body; text None gives an empty content list."""
    content: list[dict[str, Any]] = []
    if thinking is not None:
        content.append({"type": "thinking", "thinking": thinking, "signature": "c2lnbmF0dXJl"})
    if text is not None:
        content.append({"type": "text", "text": text})
    n = next(_ids)
    return {"id": f"msg_test{n:06d}", "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop_reason, "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}


@dataclass
class Scripted:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Recorded:
    body: dict[str, Any]
    headers: dict[str, str]
    at: float  # time.monotonic() on arrival

    def user_turns(self) -> list[str]:
        return [m["content"] if isinstance(m["content"], str) else json.dumps(m["content"])
                for m in self.body["messages"] if m["role"] == "user"]

    def last_user_turn(self) -> str:
        return self.user_turns()[-1]


class MessagesServer:
    def __init__(self) -> None:
        self.queue: list[Scripted] = []
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # ------------------------------------------------------------------ scripting
    def reply(self, text: str | None, **kw) -> dict[str, Any]:
        body = message(text, **kw)
        self.queue.append(Scripted(200, body))
        return body

    def error(self, status: int, message_text: str = "scripted failure", headers: dict[str, str] | None = None) -> None:
        body = {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message_text},
                "request_id": f"req_test{next(_ids):06d}"}
        self.queue.append(Scripted(status, body, dict(headers or {})))

    def slow_reply(self, text: str, delay_s: float) -> None:
        self.queue.append(Scripted(200, message(text), delay_s=delay_s))

    # ------------------------------------------------------------------ serving
    def start(self) -> MessagesServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()  # wakes a held-back reply
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                if self.path.split("?")[0] != "/v1/messages":
                    return self._send(404, {"type": "error", "error": {"type": "not_found_error",
                                                                       "message": f"no route {self.path}"}}, {})
                body = json.loads(raw)
                with server._lock:
                    server.requests.append(Recorded(body, {k.lower(): v for k, v in self.headers.items()},
                                                    time.monotonic()))
                    item = server.queue.pop(0) if server.queue else None
                if item is None:
                    return self._send(500, {"type": "error", "error": {
                        "type": "api_error", "message": "the test scripted no reply for this request"}},
                        {"x-should-retry": "false"})
                if item.delay_s and server._closing.wait(item.delay_s):
                    return
                answer = dict(item.body)
                if item.status == 200:
                    answer["model"] = body.get("model", answer["model"])
                self._send(item.status, answer, item.headers)

            def _send(self, status: int, payload: dict, headers: dict[str, str]) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.send_header("request-id", payload.get("request_id", f"req_test{next(_ids):06d}"))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (time-out test)
                    pass

        return Handler
