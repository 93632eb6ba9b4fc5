"""index.json: every bundle of a registry with what it holds, where it runs and its sha256.

`build`, `validate`, `bench` and `pull` keep it current; `verify`, `publish`, `pull`, `select` and
the vLLM plugin read it. An index read from anywhere is checked against `registry/index.schema.json`
before use: it names the files we download and the hashes we trust.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

from qimeng_serve.build.bundle import read_manifest, sha256_file
from qimeng_serve.env import REPO_ROOT
from qimeng_serve.registry.errors import IndexInvalid
from qimeng_serve.registry.layout import BUNDLE_GLOB, INDEX_FILE, parse_bundle_path

INDEX_SCHEMA = "qimeng-registry/1"
SCHEMA_DIR = REPO_ROOT / "registry"
REGENERATE = ("a local registry: `qimeng-serve index --registry DIR` rewrites it from the bundles; "
              "a Hub repo: its publisher has to publish again")


def bundle_entry(registry: Path, path: Path) -> dict:
    """The index entry of one bundle file, from its manifest and bytes."""
    m = read_manifest(path)
    kernels = list(m["kernels"].values())
    return {
        "path": path.relative_to(registry).as_posix(),
        "arch": m["arch"],
        "dtype": m["dtype"],
        "kernel_set": m["kernel_set"],
        "head_dims": sorted({k["spec"]["head_dim"] for k in kernels}),
        "ops": sorted({k["family"] for k in kernels}),
        "sass": sorted({a for k in kernels for a in k["observed"]["sass"]}),
        "ptx": sorted({a for k in kernels for a in k["observed"]["ptx"]}),
        "size": path.stat().st_size,
        "sha256": sha256_file(path),
        "validation": validation_summary(kernels),
        "benchmark": benchmark_summary(kernels),
    }


def validation_summary(kernels: list[dict]) -> dict:
    done = [k["validation"] for k in kernels if k.get("validation")]
    passed = sum(v.get("status") == "passed" for v in done)
    if not done:
        status = "not run"
    elif passed < len(done):
        status = "failed"
    elif len(done) < len(kernels):
        status = "partial"  # some kernels never ran (e.g. a partial rebuild after validation)
    else:
        status = "passed"
    out = {"status": status, "passed": passed, "total": len(kernels),
           "devices": sorted({v["device"] for v in done if v.get("device")})}
    if done and done[0].get("method"):
        out["method"] = done[0]["method"]
    return out


def benchmark_summary(kernels: list[dict]) -> dict:
    runs = [k["benchmark"] for k in kernels if k.get("benchmark")]
    rows = [r for b in runs for r in b.get("rows", [])]
    if not rows:
        return {"status": "not run"}
    prefill = [r for r in rows if r.get("unit") == "TFLOPS" and r.get("ours")]
    ratios = [r["ours"] / r["fa2"] for r in prefill if r.get("fa2")]
    decode = [r["ours"] for r in rows if r.get("unit") == "GB/s" and r.get("ours")]
    return {
        "status": "measured",
        "devices": sorted({b["device"] for b in runs if b.get("device")}),
        "prefill_tflops": round(max(r["ours"] for r in prefill), 2) if prefill else None,
        "prefill_vs_fa2": [round(min(ratios), 3), round(max(ratios), 3)] if ratios else None,
        "decode_gbps": round(max(decode), 1) if decode else None,
    }


def scan_index(registry: Path) -> dict:
    """An index of the bundle files present in a local registry."""
    bundles = sorted(registry.glob(BUNDLE_GLOB))
    return {"schema": INDEX_SCHEMA, "bundles": [bundle_entry(registry, b) for b in bundles]}


def update_index(registry: Path) -> Path:
    """Rewrite index.json (and a generated card) from the bundles present; `build` calls this."""
    from qimeng_serve.registry.card import write_card

    index = scan_index(registry)
    path = write_index(registry, index)
    write_card(registry, index)
    return path


def write_index(registry: Path, index: dict) -> Path:
    validate_index(index, source="the index about to be written")
    index = {"schema": INDEX_SCHEMA, "bundles": sorted(index["bundles"], key=lambda e: e["path"])}
    path = registry / INDEX_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)  # readers never see half an index
    return path


def read_index(path: Path, source: str | None = None) -> dict:
    """Load and check an index file; `source` names it in errors (a Hub repo, a folder)."""
    where = source or str(path)
    if not path.is_file():
        raise IndexInvalid(f"{where} has no {INDEX_FILE}",
                           fix="build kernels into it (`qimeng-serve build --arch sm_XX`) or pull them "
                               "(`qimeng-serve pull --repo ORG/NAME --arch sm_XX`)")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexInvalid(f"{where}: {INDEX_FILE} is not valid JSON ({exc})",
                           fix=REGENERATE) from None
    validate_index(data, where)
    return data


def validate_index(data: object, source: str) -> None:
    if isinstance(data, dict) and data.get("schema") != INDEX_SCHEMA and isinstance(data.get("schema"), str):
        raise IndexInvalid(f"{source}: index schema '{data['schema']}', this qimeng-serve reads {INDEX_SCHEMA}",
                           fix="use the qimeng-serve version that wrote it; " + REGENERATE)
    errors = sorted(_validator("index.schema.json").iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise IndexInvalid(f"{source}: {INDEX_FILE} does not follow {INDEX_SCHEMA} at {where}: {e.message}"
                           + (f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""),
                           fix=REGENERATE)
    seen = set()
    for entry in data["bundles"]:
        key = parse_bundle_path(entry["path"])
        if key is None or (key.arch, key.dtype, key.kernel_set) != (entry["arch"], entry["dtype"], entry["kernel_set"]):
            raise IndexInvalid(f"{source}: entry {entry['path']} does not match its arch/dtype/kernel_set fields "
                               f"({entry['arch']}, {entry['dtype']}, {entry['kernel_set']})",
                               fix=REGENERATE)
        if entry["path"] in seen:
            raise IndexInvalid(f"{source}: {entry['path']} is listed twice", fix=REGENERATE)
        seen.add(entry["path"])


@cache
def _validator(name: str):
    import jsonschema

    schema = json.loads((SCHEMA_DIR / name).read_text())
    return jsonschema.Draft202012Validator(schema)


def merge_entries(index: dict, entries: list[dict]) -> dict:
    """The index with `entries` added, replacing any of the same path."""
    by_path = {e["path"]: e for e in index["bundles"]}
    by_path.update({e["path"]: e for e in entries})
    return {"schema": INDEX_SCHEMA, "bundles": [by_path[p] for p in sorted(by_path)]}


def empty_index() -> dict:
    return {"schema": INDEX_SCHEMA, "bundles": []}
