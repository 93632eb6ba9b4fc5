"""Replies the scripted server gives: real TL derived from the golden programs, right and wrong."""

from __future__ import annotations

from pathlib import Path

from qimeng_serve.generate.llm import LLMGenerator
from qimeng_serve.generate.llm_prompts import sketch_form
from qimeng_serve.spec import AttentionSpec
from qimeng_serve.targets import get_target
from qimeng_serve.tl.parser import parse_tl_file
from qimeng_serve.tl.printer import print_tl
from tests.conftest import GOLDEN_DIR

SPEC = AttentionSpec("paged_prefill", "f16", 64, gqa_group=4, causal=True)
TARGET = get_target("sm_80")
GOLDEN_PATH = GOLDEN_DIR / "paged_prefill_sm80.tl"
GOLDEN = parse_tl_file(GOLDEN_PATH)
RIGHT_PROGRAM = GOLDEN_PATH.read_text()
RIGHT_SKETCH = print_tl(sketch_form(GOLDEN))
# the mistake the paper saw with one call: the Reshape between the two GEMMs dropped
WRONG_SKETCH = RIGHT_SKETCH.replace("  Reshape P <- S\n", "").replace("gemm(P, sV)", "gemm(S, sV)")
# passes every checker rule, computes the wrong thing: alpha = 2^(m_new - m) grows instead of shrinking
WRONG_RESCALE_PROGRAM = RIGHT_PROGRAM.replace("Compute alpha = exp2(m - finite(m_new))",
                                              "Compute alpha = exp2(finite(m_new) - m)")
assert WRONG_SKETCH != RIGHT_SKETCH and WRONG_RESCALE_PROGRAM != RIGHT_PROGRAM


def fenced(body: str, lang: str = "tl", before: str = "Here is the file.") -> str:
    return f"{before}\n\n```{lang}\n{body.rstrip()}\n```\n"


def generator(server, cache_dir: Path, **options) -> LLMGenerator:
    """The generator as the CLI builds it, pointed at the scripted server."""
    options.setdefault("api_key", "sk-test-key")
    options.setdefault("max_retries", 2)
    options.setdefault("timeout", 30.0)
    return LLMGenerator.from_options(base_url=server.url, cache_dir=cache_dir, **options)
