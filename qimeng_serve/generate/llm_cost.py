"""Token and cost accounting for the LLM generator: one price table, one ledger per generation.

Costs are estimates: list prices per million tokens from Anthropic's model pages (read 2026-11),
multiplied by the `usage` each response reports. Thinking tokens are billed as output tokens and
are already inside `usage.output_tokens`. Batch, priority-tier and prompt-cache prices are not
modelled (the generator uses none of them). A model missing from the table gets no price: its
cost is reported as unknown, never as $0.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Price:
    """USD per million tokens; `long_*` apply to prompts over `long_from` input tokens, where a model has them."""

    input: float
    output: float
    long_input: float | None = None
    long_output: float | None = None
    long_from: int = 100_000

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        long = self.long_input is not None and input_tokens > self.long_from
        per_in = self.long_input if long else self.input
        per_out = self.long_output if long and self.long_output is not None else self.output
        return (input_tokens * per_in + output_tokens * per_out) / 1e6


# Claude API list prices (USD / MTok), from platform.claude.com model pages as of 2026-11.
PRICES: dict[str, Price] = {
    "claude-opus-5-5": Price(4.0, 20.0),
    "claude-sonnet-5-5": Price(2.0, 10.0),
    "claude-haiku-5-5": Price(0.10, 0.50, long_input=0.50, long_output=2.50),
    "claude-fable-5-1": Price(10.0, 50.0),
    "claude-fable-5": Price(10.0, 50.0),
    "claude-opus-5": Price(5.0, 25.0),
    "claude-sonnet-5": Price(2.0, 10.0),
    "claude-haiku-4-5": Price(1.0, 5.0),
}


def price_of(model: str) -> Price | None:
    """The table's price for a model id; a dated snapshot id (claude-haiku-4-5-20251001) takes its alias's."""
    if model in PRICES:
        return PRICES[model]
    alias, _, date = model.rpartition("-")
    if len(date) == 8 and date.isdigit():
        return PRICES.get(alias)
    return None


@dataclass
class CallUsage:
    """One Messages API call of a generation."""

    label: str  # e.g. "sketch 1", "params 2", "translate 1"
    model: str
    input_tokens: int
    output_tokens: int
    cached: bool  # answered from the reply cache: no request, nothing spent this run
    stop_reason: str | None = None

    @property
    def cost_usd(self) -> float | None:
        if self.cached:
            return 0.0
        price = price_of(self.model)
        return None if price is None else price.cost(self.input_tokens, self.output_tokens)

    def to_dict(self) -> dict:
        return {"label": self.label, "model": self.model, "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens, "cached": self.cached, "stop_reason": self.stop_reason,
                "cost_usd": _round(self.cost_usd)}


@dataclass
class Ledger:
    """Every call of one generation; totals count only requests made in this run (cache hits cost nothing)."""

    calls: list[CallUsage] = field(default_factory=list)

    def add(self, call: CallUsage) -> None:
        self.calls.append(call)

    @property
    def requests(self) -> list[CallUsage]:
        return [c for c in self.calls if not c.cached]

    @property
    def input_tokens(self) -> int:
        return sum(c.input_tokens for c in self.requests)

    @property
    def output_tokens(self) -> int:
        return sum(c.output_tokens for c in self.requests)

    @property
    def cost_usd(self) -> float | None:
        """None when some request's model has no price in the table."""
        costs = [c.cost_usd for c in self.requests]
        return None if any(c is None for c in costs) else sum(costs)  # type: ignore[misc]

    def to_dict(self) -> dict:
        return {
            "requests": len(self.requests),
            "cached_replies": len(self.calls) - len(self.requests),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": _round(self.cost_usd),
            "cost_note": "estimate: list prices per MTok (qimeng_serve/generate/llm_cost.py) x reported usage",
            "calls": [c.to_dict() for c in self.calls],
        }

    def summary(self) -> str:
        cost = self.cost_usd
        money = "cost unknown (no price on file for this model)" if cost is None else f"~${cost:.4f} (estimate)"
        cached = len(self.calls) - len(self.requests)
        return (f"LLM usage: {len(self.requests)} request(s), {cached} reply(ies) from the cache; "
                f"{self.input_tokens:,} input + {self.output_tokens:,} output tokens; {money}")


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 6)
