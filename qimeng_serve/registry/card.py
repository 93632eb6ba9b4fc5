"""The registry card (README.md): a table of the kernels, their validation and speed, from the index.

The template is `registry/card.md.tmpl`. A README.md someone wrote by hand (no marker line) is never
overwritten: the checkout's own `registry/README.md` documents the folder instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from string import Template

from qimeng_serve.registry.index import INDEX_SCHEMA, SCHEMA_DIR
from qimeng_serve.registry.layout import CARD_FILE

MARKER = "<!-- qimeng-registry-card"
TEMPLATE = SCHEMA_DIR / "card.md.tmpl"


def render_card(index: dict, title: str, repo: str = "ORG/NAME") -> str:
    template = Template(TEMPLATE.read_text())
    return template.substitute(title=title, repo=repo, kernel_table=kernel_table(index),
                               bundle_count=len(index["bundles"]), schema=INDEX_SCHEMA)


def kernel_table(index: dict) -> str:
    rows = ["| arch | dtype | kernel set | head sizes | ops | SASS / PTX | validation | speed | size | sha256 |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for e in sorted(index["bundles"], key=lambda e: e["path"]):
        targets = " ".join(e["sass"]) + " / " + " ".join(e["ptx"])
        rows.append(f"| {e['arch']} | {e['dtype']} | {e['kernel_set']} | {', '.join(map(str, e['head_dims']))} | "
                    f"{', '.join(e['ops'])} | {targets} | {validation_text(e['validation'])} | "
                    f"{speed_text(e['benchmark'])} | {size_text(e['size'])} | `{e['sha256'][:12]}` |")
    if not index["bundles"]:
        rows.append("| (none yet) | | | | | | | | | |")
    return "\n".join(rows)


def size_text(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"


def validation_text(v: dict) -> str:
    if v["status"] == "not run":
        return "not validated"
    where = f" on {', '.join(v['devices'])}" if v.get("devices") else ""
    return f"{v['status']} {v['passed']}/{v['total']}{where}"


def speed_text(b: dict) -> str:
    if b["status"] != "measured":
        return "not measured"
    parts = []
    if b.get("prefill_tflops"):
        parts.append(f"{b['prefill_tflops']:g} TFLOPS")
    if b.get("prefill_vs_fa2"):
        lo, hi = b["prefill_vs_fa2"]
        parts.append(f"{lo:.2f}-{hi:.2f}x FA2")
    if b.get("decode_gbps"):
        parts.append(f"decode {b['decode_gbps']:g} GB/s")
    where = f" ({', '.join(b['devices'])})" if b.get("devices") else ""
    return (", ".join(parts) or "measured") + where


def is_generated(path: Path) -> bool:
    return path.is_file() and MARKER in path.read_text(errors="replace")


def write_card(registry: Path, index: dict, title: str | None = None, repo: str = "ORG/NAME") -> Path | None:
    """Write README.md unless a hand-written one is there; returns the path written, or None."""
    path = registry / CARD_FILE
    if path.exists() and not is_generated(path):
        return None
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render_card(index, title or f"qimeng-serve kernel registry: {registry.resolve().name}", repo))
    os.replace(tmp, path)
    return path
