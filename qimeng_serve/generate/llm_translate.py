"""Stage 2 by the LLM (optional): a checked TL program -> CUDA C++ on the qimeng building blocks.

The reply passes the gates the deterministic lowering's output passes on a machine without a GPU:
one `extern "C" __global__` entry per TL kernel, named as the lowering names it (the runtime looks
entries up by name), and a clean nvcc compile for the target (through the build cache) whose ptxas
report lists those entries. Where nvcc is missing the source is returned uncompiled, and says so.
Correctness on a GPU is `qimeng-serve validate`'s job, as for every kernel.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from pathlib import Path
from typing import Any

from qimeng_serve.errors import QimengError
from qimeng_serve.generate.llm_prompts import (
    EXAMPLE_FAMILY,
    GOLDEN_DIR,
    translate_request,
)
from qimeng_serve.generate.llm_reply import Rejected, Reply, fenced_block
from qimeng_serve.spec import AttentionSpec
from qimeng_serve.targets import Target
from qimeng_serve.tl import ast
from qimeng_serve.tl.parser import parse_tl_file

CUDA_TAGS = ("cuda", "cu", "cpp", "c++")


def expected_entries(program: ast.Program, spec: AttentionSpec, target: Target) -> list[dict[str, Any]]:
    """The entries the runtime will look up and how it launches them: from the deterministic lowering
    of the same program when it lowers, else names and threads only (shared memory then unknown)."""
    from qimeng_serve.lower.emit import entry_name, lower
    from qimeng_serve.tl.interpreter import resolve_params

    try:
        return [{"name": e.name, "tl_kernel": e.tl_kernel, "threads": e.threads, "smem_bytes": e.smem_bytes,
                 "grid": e.grid} for e in lower(program, target, spec).entries]
    except QimengError:
        warps = int(resolve_params(program, spec).get("WARPS", 4))
        return [{"name": entry_name(program, k, spec), "tl_kernel": k.name, "threads": warps * 32,
                 "smem_bytes": None, "grid": None} for k in program.kernels]


def opening_request(program_text: str, program: ast.Program, spec: AttentionSpec, target: Target,
                    entries: list[dict[str, Any]]) -> str:
    from qimeng_serve.build.nvcc import nvcc_flags
    from qimeng_serve.lower.emit import lower

    family = EXAMPLE_FAMILY[spec.op]
    path = next((p for p in sorted(GOLDEN_DIR.glob(f"{family}_*.tl")) if target.arch in parse_tl_file(p).targets), None)
    if path is None:
        raise QimengError(f"no golden {family} program declares {target.arch}: no stage-2 example to show the LLM",
                          fix="use the deterministic lowering (leave out --translate) for this target")
    example_spec = AttentionSpec(family, spec.dtype, spec.head_dim, 16 if family == "paged_decode" else 1, True)
    example_cuda = lower(parse_tl_file(path), target, example_spec, source_name=str(path)).text
    lines = []
    for e in entries:
        smem = f"{e['smem_bytes']} bytes of dynamic shared memory" if e["smem_bytes"] is not None else \
            "dynamic shared memory as the building blocks need"
        lines.append(f"  - `{e['name']}` (TL kernel `{e['tl_kernel']}`): {e['threads']} threads per block, {smem}")
    return translate_request(spec, target, program_text, "\n".join(lines), " ".join(nvcc_flags(target)), example_cuda)


def accept_cuda(reply: Reply, entries: list[dict[str, Any]], target: Target) -> dict[str, Any]:
    """Gate a translation reply; the record of the accepted source (small: no binaries)."""
    source = fenced_block(reply, CUDA_TAGS, "the CUDA C++ source")
    names = [e["name"] for e in entries]
    missing = [n for n in names if not re.search(r'extern\s+"C"\s+__global__\b[^;{]*\b' + re.escape(n) + r"\s*\(", source)]
    if missing:
        raise Rejected("entry check", "the source defines no `extern \"C\" __global__` function named "
                       + ", ".join(f"`{n}`" for n in missing) + " (the runtime looks entries up by these names)",
                       "define every entry exactly as named and reply with the whole source")
    record: dict[str, Any] = {"sha256": hashlib.sha256(source.encode()).hexdigest(), "entries": entries,
                              "source": source, "validated_on_gpu": False,
                              "note": "GPU correctness of this source is checked by `qimeng-serve validate`"}
    compiled = _compile(source, target, names)
    record.update(compiled)
    return record


def _compile(source: str, target: Target, names: list[str]) -> dict[str, Any]:
    from qimeng_serve.build import cache
    from qimeng_serve.build.nvcc import CompileError, compile_source, nvcc_flags
    from qimeng_serve.build.toolchain import ToolchainError, find_toolchain

    try:
        toolchain = find_toolchain()
    except ToolchainError as exc:
        return {"compiled": False, "compile_note": f"not compiled here: {exc.message}"}
    flags = nvcc_flags(target)
    key = cache.build_key(source, target.arch, flags, toolchain.fingerprint(),
                          cache.headers_digest(toolchain.kernels_include))
    result = cache.load(key)
    if result is None:
        with tempfile.TemporaryDirectory(prefix="qimeng-llm-") as tmp:
            cu = Path(tmp) / f"{names[0]}.cu"
            cu.write_text(source)
            try:
                result = compile_source(cu, target, toolchain)
            except CompileError as exc:
                raise Rejected("nvcc", exc.message.replace(str(cu), f"{names[0]}.cu"),
                               "fix the compile errors and reply with the whole source") from None
        cache.store(key, result)
    absent = [n for n in names if n not in result.resources]
    if absent:
        raise Rejected("nvcc", "the compiled cubin has no entry function " + ", ".join(f"`{n}`" for n in absent)
                       + f" (ptxas compiled: {', '.join(sorted(result.resources)) or 'none'})",
                       "make every entry an `extern \"C\" __global__` function that is compiled, not only declared")
    return {"compiled": True, "nvcc": toolchain.nvcc_version, "nvcc_flags": flags,
            "resources": {n: {"registers": r.registers, "spill_bytes": r.spill_stores + r.spill_loads}
                          for n, r in result.resources.items()}}
