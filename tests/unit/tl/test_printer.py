"""Printer: parse(print(p)) == p for every program in the repo, and golden files are canonical."""

import re
from pathlib import Path

import pytest

from qimeng_serve.tl.parser import parse_tl
from qimeng_serve.tl.printer import print_tl
from tests.conftest import REPO, golden_paths
from tests.unit.tl.test_parser import MINIMAL


def _doc_programs() -> list[str]:
    """TL programs quoted in docs/tl.md (fenced blocks that start with `program`)."""
    text = (REPO / "docs" / "tl.md").read_text()
    return [b for b in re.findall(r"```\n(.*?)```", text, re.S) if b.startswith("program ")]


def test_docs_hold_a_worked_example():
    assert _doc_programs(), "docs/tl.md lost its worked example"


@pytest.mark.parametrize("source", [MINIMAL, *_doc_programs()] + [p.read_text() for p in golden_paths()])
def test_round_trip(source):
    program = parse_tl(source)
    text = print_tl(program)
    assert parse_tl(text) == program
    assert print_tl(parse_tl(text)) == text  # printing is idempotent


@pytest.mark.parametrize("path", golden_paths(), ids=lambda p: p.name)
def test_golden_files_are_canonical(path: Path):
    assert print_tl(parse_tl(path.read_text())) == path.read_text(), f"run: qimeng-serve tl fmt --write {path}"


def test_spacing_does_not_change_meaning():
    dense = "kernel k grid(i:1){let x=(1+2)*3 Compute y+=gemm(a,b.T)with mma=m16n8k8}"
    spaced = "kernel k grid ( i : 1 ) {\n  let x = ( 1 + 2 ) * 3\n  Compute y += gemm( a , b.T ) with mma = m16n8k8\n}"
    assert parse_tl(dense) == parse_tl(spaced)
    assert "let x = (1 + 2) * 3" in print_tl(parse_tl(dense))


def test_equality_is_semantic_not_positional():
    a = parse_tl("kernel k grid (i : 1) { let x = 1 }")
    b = parse_tl("\n\n   kernel k grid (i : 1) {\n let x = 1\n}")
    c = parse_tl("kernel k grid (i : 1) { let x = 2 }")
    assert a == b and a != c
