"""Stage 2 by the LLM: the CUDA reply must name the lowering's entries and compile with nvcc."""

from __future__ import annotations

import shutil

import pytest

from qimeng_serve.build import toolchain
from qimeng_serve.generate.llm_reply import Reply
from qimeng_serve.generate.llm_translate import accept_cuda, expected_entries
from qimeng_serve.lower.emit import lower
from tests.generate_llm.helpers import (
    GOLDEN,
    RIGHT_PROGRAM,
    RIGHT_SKETCH,
    SPEC,
    TARGET,
    fenced,
    generator,
)

ENTRY = "qm_paged_prefill_sm80_attn_f16_hd64"  # as the deterministic lowering names it


def _cuda_reply(source: str) -> Reply:
    return Reply(fenced(source, "cuda"), "end_turn", "claude-opus-5-5", 10, 10, cached=False)


@pytest.mark.nvcc
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc on PATH")
def test_translation_is_gated_by_entry_names_and_nvcc(messages_server, tmp_path):
    good = lower(GOLDEN, TARGET, SPEC).text  # a real CUDA source for this program
    misnamed = good.replace(ENTRY, "attention_kernel")
    broken = good.replace("#include <qimeng/lowering.cuh>", "#include <qimeng/attention.cuh>")  # no such header
    assert misnamed != good and broken != good
    for text in (fenced(RIGHT_SKETCH), fenced(RIGHT_PROGRAM), fenced(misnamed, "cuda"), fenced(broken, "cuda"),
                 fenced(good, "cuda")):
        messages_server.reply(text)

    result = generator(messages_server, tmp_path / "llm", translate=True).generate(SPEC, TARGET)

    opening = messages_server.requests[2].body["messages"][0]["content"]
    assert f"`{ENTRY}` (TL kernel `attn`): 128 threads per block" in opening
    assert "### qimeng/traits.cuh" in opening  # the building-block headers are sent
    assert "qm_dense_prefill_sm80_attn_f16_hd64" in opening  # the style example is another family
    assert ENTRY not in opening.split("## Example")[1]
    named = messages_server.requests[3].body["messages"][-1]["content"]
    assert "The entry check says:" in named and f"function named `{ENTRY}`" in named
    compiled = messages_server.requests[4].body["messages"][-1]["content"]
    assert "The nvcc says:" in compiled
    assert "fatal error: qimeng/attention.cuh: No such file or directory" in compiled
    cuda = result.record.details["cuda"]
    assert cuda["compiled"] is True and cuda["source"] == good.rstrip("\n") + "\n"
    assert list(cuda["resources"]) == [ENTRY] and cuda["validated_on_gpu"] is False
    assert [a.verdict.split(":")[0] for a in result.record.attempts if a.stage == "translate"] == [
        "entry check", "nvcc", "ok"]


def test_without_nvcc_the_source_is_returned_uncompiled_and_says_so(monkeypatch):
    def no_nvcc():
        raise toolchain.ToolchainError("nvcc not found (looked at QIMENG_NVCC, PATH, CUDA_HOME and /usr/local/cuda)")

    monkeypatch.setattr(toolchain, "find_toolchain", no_nvcc)
    entries = expected_entries(GOLDEN, SPEC, TARGET)
    assert [e["name"] for e in entries] == [ENTRY] and entries[0]["smem_bytes"] > 0

    record = accept_cuda(_cuda_reply(lower(GOLDEN, TARGET, SPEC).text), entries, TARGET)

    assert record["compiled"] is False
    assert record["compile_note"].startswith("not compiled here: nvcc not found")
