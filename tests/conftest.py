"""Shared test helpers: where the golden TL programs live."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GOLDEN_DIR = REPO / "kernels_src" / "tl"


def golden_paths() -> list[Path]:
    return sorted(GOLDEN_DIR.glob("*.tl"))


@pytest.fixture
def repo() -> Path:
    return REPO
