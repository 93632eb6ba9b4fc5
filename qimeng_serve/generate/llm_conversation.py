"""One LLM call of the workflow as a short conversation: ask, gate the reply, feed the gate's message back.

A reply the gate rejects stays in the conversation (as the assistant turn) and the gate's message
follows verbatim in the next user turn, up to `retries` times. Then the generator gives up with the
last message and the number of attempts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from qimeng_serve.errors import QimengError
from qimeng_serve.generate.base import Attempt
from qimeng_serve.generate.llm_client import OFFLINE_HINT, LLMClient
from qimeng_serve.generate.llm_prompts import repair_request
from qimeng_serve.generate.llm_reply import Rejected, Reply

T = TypeVar("T")


def converse(client: LLMClient, *, stage: str, system: str, opening: str, accept: Callable[[Reply], T],
             retries: int, attempts: list[Attempt], say: Callable[[str], None]) -> T:
    """The value `accept` makes of the first reply it takes; QimengError after 1 + retries rejected replies."""
    messages: list[dict] = [{"role": "user", "content": opening}]
    total = max(retries, 0) + 1
    for n in range(1, total + 1):
        reply = client.ask(system, messages, label=f"{stage} {n}")
        try:
            value = accept(reply)
        except Rejected as exc:
            rejected = exc
            attempts.append(Attempt(stage, f"LLM reply {n}", f"{rejected.gate}: {rejected.message}"))
            first_line = (rejected.message.strip().splitlines() or [""])[0]
            say(f"{stage} reply {n}/{total}: rejected by the {rejected.gate}: {first_line}")
            messages += [{"role": "assistant", "content": reply.history_text()},
                         {"role": "user", "content": repair_request(rejected.gate, rejected.message,
                                                                    rejected.instruction)}]
            continue
        attempts.append(Attempt(stage, f"LLM reply {n}", "ok"))
        say(f"{stage} reply {n}/{total}: accepted")
        return value
    raise QimengError(
        f"the LLM gave no acceptable {stage} in {total} attempt(s); the last reply was rejected by the "
        f"{rejected.gate}:\n{rejected.message}",
        fix=f"rerun with more retries or another --model (replies so far are cached); {OFFLINE_HINT}")
