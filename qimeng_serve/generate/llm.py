"""Stage 1 by an LLM through the `anthropic` SDK: the paper's two calls, each gated and repaired.

Call 1 asks for the TL *sketch* (statements only); the reply is parsed and checked in sketch form.
Call 2 gives the checked sketch and asks for the params and `with` options; the result is checked
as a program and run in the CPU interpreter against the float64 reference. Two calls, because one
call tends to drop the Reshape between the GEMMs. Every rejection (parser, checker, interpreter,
a malformed reply) goes back verbatim, a bounded number of times. With `translate`, a third call
writes the CUDA (stage 2) for the accepted program. Replies are cached on disk: a rerun sends
nothing and rebuilds the same program. See docs/llm-generator.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qimeng_serve.errors import QimengError
from qimeng_serve.generate import llm_gates
from qimeng_serve.generate.base import Attempt, GeneratedProgram, GenerationRecord
from qimeng_serve.generate.llm_client import LLMClient, LLMSettings
from qimeng_serve.generate.llm_conversation import converse
from qimeng_serve.generate.llm_cost import Ledger
from qimeng_serve.generate.llm_gates import InterpreterCheck
from qimeng_serve.generate.llm_prompts import (
    PROMPT_VERSION,
    params_request,
    sketch_form,
    sketch_request,
    system_prompt,
)
from qimeng_serve.generate.llm_reply import Reply, fenced_block
from qimeng_serve.spec import AttentionSpec
from qimeng_serve.targets import Target
from qimeng_serve.tl.printer import print_tl

DEFAULT_RETRIES_PER_CALL = 3  # repair turns after the first reply of each call
TL_TAGS = ("tl",)


class LLMGenerator:
    name = "llm"

    def __init__(self, settings: LLMSettings, *, translate: bool = False, console=None,
                 retries_per_call: int = DEFAULT_RETRIES_PER_CALL, check: InterpreterCheck | None = None) -> None:
        if retries_per_call < 0:
            raise QimengError(f"retries per call {retries_per_call} is negative", fix="use 0 or more")
        self.settings = settings
        self.translate = translate
        self.console = console
        self.retries_per_call = retries_per_call
        self.check = check or InterpreterCheck()

    @classmethod
    def from_options(cls, *, model: str | None = None, api_key: str | None = None, base_url: str | None = None,
                     cache_dir: Path | None = None, max_retries: int | None = None, translate: bool = False,
                     console=None, timeout: float | None = None, retries_per_call: int | None = None,
                     **_other_generators_options: Any) -> LLMGenerator:
        """Built from CLI options; None falls back to the environment (docs/llm-generator.md), then defaults.

        max_retries and timeout go to the anthropic client (transport retries of 429 / 5xx, seconds per
        request); retries_per_call bounds the repair turns after a rejected reply. Options meant for
        another generator are ignored."""
        settings = LLMSettings.resolve(model=model, api_key=api_key, base_url=base_url, cache_dir=cache_dir,
                                       max_retries=max_retries, timeout=timeout)
        retries = DEFAULT_RETRIES_PER_CALL if retries_per_call is None else retries_per_call
        return cls(settings, translate=translate, console=console, retries_per_call=retries)

    # ------------------------------------------------------------------ the workflow
    def generate(self, spec: AttentionSpec, target: Target) -> GeneratedProgram:
        spec.validate_for(target)
        ledger = Ledger()
        attempts: list[Attempt] = []
        client = LLMClient(self.settings, PROMPT_VERSION, ledger, on_event=self._say)
        system = system_prompt()
        self._say(f"LLM stage 1 for {spec.key()} on {target.arch} with {self.settings.model}")

        try:
            program, details = self._stage1(client, system, spec, target, attempts)
            if self.translate:
                details["cuda"] = self._translate(client, system, program, spec, target, attempts)
        finally:
            if ledger.calls:  # also when it gives up: the user sees what was spent
                self._say(ledger.summary())
        details["usage"] = ledger.to_dict()
        text = print_tl(program)
        return GeneratedProgram(
            spec=spec, target=target.arch, sketch_text=print_tl(sketch_form(program)), program=program, text=text,
            record=GenerationRecord("llm", details, tuple(attempts)),
            name=f"llm:{spec.op}:{target.arch}:{spec.dtype}:hd{spec.head_dim}")

    def _stage1(self, client: LLMClient, system: str, spec: AttentionSpec, target: Target,
                attempts: list[Attempt]):
        """Call 1 (sketch) then call 2 (params and options); the accepted program and its details."""

        def accept_sketch(reply: Reply):
            return llm_gates.check_sketch(fenced_block(reply, TL_TAGS, "the TL sketch"), spec, target)

        sketch = converse(client, stage="sketch", system=system, opening=sketch_request(spec, target),
                          accept=accept_sketch, retries=self.retries_per_call, attempts=attempts, say=self._say)
        runs: list[dict] = []

        def accept_program(reply: Reply):
            text = fenced_block(reply, TL_TAGS, "the full TL program")
            program = llm_gates.check_program(text, spec, target)
            runs.append(llm_gates.interpret(program, text, spec, self.check))
            return program

        program = converse(client, stage="params", system=system,
                           opening=params_request(spec, target, print_tl(sketch)), accept=accept_program,
                           retries=self.retries_per_call, attempts=attempts, say=self._say)
        details: dict[str, Any] = {"model": self.settings.model, "prompt_version": PROMPT_VERSION,
                                   "interpreter": runs[-1]}
        return program, details

    def _translate(self, client: LLMClient, system: str, program, spec: AttentionSpec, target: Target,
                   attempts: list[Attempt]) -> dict[str, Any]:
        from qimeng_serve.generate import llm_translate

        entries = llm_translate.expected_entries(program, spec, target)
        opening = llm_translate.opening_request(print_tl(program), program, spec, target, entries)
        return converse(client, stage="translate", system=system, opening=opening,
                        accept=lambda reply: llm_translate.accept_cuda(reply, entries, target),
                        retries=self.retries_per_call, attempts=attempts, say=self._say)

    def _say(self, message: str) -> None:
        if self.console is not None:
            self.console.print(message, markup=False, highlight=False)
