"""Compile a lowered Hopper source for sm_90a and read its SASS, without touching the sm_80+ build path.

wgmma and setmaxnreg exist only on the arch-specific target, so these kernels are built with
`-gencode=arch=compute_90a,code=sm_90a` (the `-arch=sm_90a` shorthand also runs a plain sm_90 pass
that rejects them on some nvcc versions). compute_90a PTX runs on no other GPU, so the cubin is the
artifact; the PTX is kept for the record only.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

from qimeng_serve.build.nvcc import BASE_FLAGS, CompileResult, run_nvcc
from qimeng_serve.build.toolchain import Toolchain, ToolchainError
from qimeng_serve.lower.emit import CudaSource

# --use_fast_math: exp2f becomes one MUFU.EX2 (not a range check and two multiplies around it) and
# 1 / l an approximate reciprocal; -11% instructions in the kernel, rel. L2 error unchanged in validation
SM90A_FLAGS = (*BASE_FLAGS, "--use_fast_math", "-gencode=arch=compute_90a,code=sm_90a")
SASS_TIMEOUT_S = 120
# SASS that shows the Hopper path is real: warpgroup MMAs, TMA loads, register reallocation
HOPPER_OPCODES = ("HGMMA", "UTMALDG", "USETMAXREG")


def nvcc_flags_sm90a() -> list[str]:
    return list(SM90A_FLAGS)


def compile_sm90(source: CudaSource, toolchain: Toolchain, keep_dir: Path | None = None) -> CompileResult:
    """nvcc the generated text for sm_90a: cubin, PTX, and the ptxas report per entry."""
    with tempfile.TemporaryDirectory(prefix="qimeng-sm90-") as tmp:
        name = source.entries[0].name if source.entries else "kernel"
        cu = (keep_dir or Path(tmp)) / f"{name}.cu"
        cu.parent.mkdir(parents=True, exist_ok=True)
        cu.write_text(source.text)
        return run_nvcc(cu, list(SM90A_FLAGS), toolchain, "sm_90a",
                        fix="the sm90 lowering or a building block in kernels_src/include/qimeng/sm90 is at fault")


def sass_text(cubin: bytes, toolchain: Toolchain) -> str:
    """`cuobjdump -sass` of a cubin; cuobjdump disassembles through nvdisasm, found next to it."""
    if toolchain.cuobjdump is None:
        raise ToolchainError("cuobjdump not found", fix="pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm")
    env = dict(os.environ)
    env["PATH"] = f"{toolchain.cuobjdump.parent}{os.pathsep}{env.get('PATH', '')}"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        proc = subprocess.run([str(toolchain.cuobjdump), "-sass", f.name], capture_output=True, text=True,
                              timeout=SASS_TIMEOUT_S, env=env)
    if proc.returncode != 0:
        raise ToolchainError(f"cuobjdump -sass failed: {proc.stderr.strip()[-300:]}",
                             fix="pip install nvidia-cuda-nvdisasm (cuobjdump needs nvdisasm for SASS)")
    return proc.stdout


def sass_opcode(instruction: str) -> str:
    """An instruction's opcode without its predicate and modifiers: `@!P0 R2UR UR21, R17` -> R2UR."""
    words = instruction.split()
    op = words[1] if words and words[0].startswith("@") and len(words) > 1 else (words[0] if words else "")
    return op.split(".")[0]


def opcode_counts(sass: str, opcodes=HOPPER_OPCODES) -> dict[str, int]:
    """How often each opcode (any variant: HGMMA.64x128x16.F32.BF16 counts as HGMMA) appears."""
    return {op: len(re.findall(rf"\b{op}\b", sass)) for op in opcodes}


# ------------------------------------------------------------------ a directory of sm_90a kernels
INDEX = "index.json"
# The Hopper dense prefill programs and what to build them for (None: every dtype / head size asked
# for): the plain schedule, and two schedules the GPU check times against it in bf16: the consumer
# warpgroups in ping-pong, and the softmax overlapped with the GEMMs (D <= 128: at D = 256 the second
# score tile it keeps live spills).
GOLDEN_SM90 = (
    ("dense_prefill_sm90.tl", None, None),
    ("dense_prefill_sm90_pingpong.tl", ("bf16",), None),
    ("dense_prefill_sm90_overlap.tl", ("bf16",), (64, 128)),
    ("dense_prefill_sm90_fa3.tl", None, None),
    ("paged_prefill_sm90_pagetma.tl", None, None),
)


def build_sm90_kernels(out_dir: Path, *, dtypes=("f16", "bf16"), head_dims=(64, 128, 256), softcap: float = 0.0,
                       toolchain: Toolchain | None = None, programs=None, progress=None,
                       defines: dict[str, str] | None = None) -> dict:
    """Lower and compile each Hopper dense prefill program (kernels_src/tl, GOLDEN_SM90 by default)
    for each dtype x head size into out_dir: `<entry>.cubin`, `<entry>.cu` and `index.json` (launch
    metadata, ptxas report, SASS opcode counts). programs: (TL file, dtypes, head sizes) triples, None
    meaning all of `dtypes` / `head_dims`.

    Causal or not, GQA ratio and lengths are run-time arguments, so one kernel per dtype x head size,
    a second one (`<program>_full`, "tuned_mask": "full") where the program tunes its params to
    calls without a causal mask (kernel_set.mask_specialised), and a third (`<program>_long`,
    "min_seqlen_k") where it tunes them to long key sequences (kernel_set.length_specialised), as
    `qimeng-serve build` makes.
    defines: macros set before the building blocks are included (diagnostic builds only, e.g. the
    persistent scheduler's QM_SM90_L2_GROUP_BYTES); recorded in the index."""
    import json
    from dataclasses import replace

    from qimeng_serve.build.kernel_set import (
        LONG_KEYS,
        length_specialised,
        long_program,
        mask_specialised,
        mask_suffix,
        renamed,
        tuned_mask,
    )
    from qimeng_serve.build.toolchain import KERNELS_INCLUDE, find_toolchain
    from qimeng_serve.spec import AttentionSpec
    from qimeng_serve.targets import get_target
    from qimeng_serve.tl.parser import parse_tl_file

    toolchain = toolchain or find_toolchain()
    tl_dir = KERNELS_INCLUDE.parent / "tl"
    jobs = []
    for path, kinds, dims in programs or GOLDEN_SM90:
        kinds = [x for x in dtypes if kinds is None or x in kinds]
        dims = [x for x in head_dims if dims is None or x in dims]
        jobs.append((Path(path) if Path(path).is_absolute() else tl_dir / path, kinds, dims))
    target = get_target("sm_90")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    index = {"schema": "qimeng-sm90a-kernels/1", "arch": "sm_90a", "kernels": {}}
    for path, kinds, dims in jobs:
        program = parse_tl_file(path)
        for dtype, d in ((dt, hd) for dt in kinds for hd in dims):
            causal = AttentionSpec(program.op or "dense_prefill", dtype, d, 1, True, softcap=softcap)
            specs = [causal, replace(causal, causal=False)] if mask_specialised(program, causal) else [causal]
            for spec in specs:
                tuned = program if spec.causal else renamed(program, f"{program.name}{mask_suffix(False)}")
                _build_one(tuned, path, spec, target, toolchain, out_dir, index, defines, progress, tuned_mask(spec))
            if length_specialised(program, causal):
                _build_one(renamed(long_program(program), f"{program.name}_long"), path, causal, target, toolchain,
                           out_dir, index, defines, progress, tuned_mask(causal, LONG_KEYS), LONG_KEYS)
    (out_dir / INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return index


def _build_one(program, path: Path, spec, target, toolchain, out_dir: Path, index: dict, defines, progress,
               mask: str, min_seqlen_k: int = 0) -> None:
    """One kernel of build_sm90_kernels: lowered, compiled, its cubin written and its index entry added."""
    import hashlib
    from dataclasses import replace

    from qimeng_serve.lower.emit_sm90 import lower_sm90

    dtype, d, softcap = spec.dtype, spec.head_dim, spec.softcap
    source = lower_sm90(program, target, spec, source_name=str(path))
    if defines:
        head = "".join(f"#define {k} {v}\n" for k, v in defines.items())
        source = replace(source, text=head + source.text,
                         sha256=hashlib.sha256((head + source.text).encode()).hexdigest())
    result = compile_sm90(source, toolchain, keep_dir=out_dir)
    entry = source.entries[0]
    res = result.resources.get(entry.name)
    (out_dir / f"{entry.name}.cubin").write_bytes(result.cubin)
    index["kernels"][entry.name] = {
        "program": path.name, "dtype": dtype, "head_dim": d, "softcap": softcap, "threads": entry.threads, "grid": entry.grid,
        "smem_bytes": entry.smem_bytes, "abi": entry.abi, "tensor_maps": entry.tensor_maps,
        **({"split_tail": entry.split_tail} if entry.split_tail else {}),
        "params": source.params, "tl_sha256": source.tl_sha256, "source_sha256": source.sha256,
        "tuned_mask": mask, **({"min_seqlen_k": min_seqlen_k} if min_seqlen_k else {}),
        "nvcc_flags": result.flags, **({"defines": dict(defines)} if defines else {}),
        "ptxas": None if res is None else {"registers": res.registers, "stack": res.stack,
                                          "spill_stores": res.spill_stores, "spill_loads": res.spill_loads},
        "sass": opcode_counts(sass_text(result.cubin, toolchain)) if toolchain.cuobjdump else {},
    }
    if progress:
        progress(entry.name, index["kernels"][entry.name])
