"""Register use of the attention building blocks: compile a fixed set of kernels, print ptxas's report.

  python scripts/regs_sweep.py                      # every variant, every arch it declares
  python scripts/regs_sweep.py --arch sm_90 d128    # variants whose name starts with d128, sm_90 only
  python scripts/regs_sweep.py --sass --json out.json

Each variant is a golden TL program of kernels_src/tl/ (optionally with its tiles rewritten), lowered
and compiled exactly as `qimeng-serve build` does (same nvcc flags, no build cache). No GPU is needed:
the figures are ptxas's registers and spill bytes, and with --sass the spill instructions (LDL/STL)
and tensor-core MMAs counted in the cubin, so a change to a header in kernels_src/include/qimeng/ can
be judged before any GPU run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qimeng_serve.build.nvcc import compile_source
from qimeng_serve.build.toolchain import find_toolchain
from qimeng_serve.lower.emit import lower
from qimeng_serve.spec import AttentionSpec
from qimeng_serve.targets import get_target
from qimeng_serve.tl.parser import parse_tl

TL = ROOT / "kernels_src" / "tl"
SM80 = ("sm_90", "sm_80")
SM75 = ("sm_75",)


@dataclass(frozen=True)
class Variant:
    name: str
    program: str  # file in kernels_src/tl/
    op: str
    dtype: str
    head_dim: int
    archs: tuple[str, ...]
    tiles: dict[str, int] = field(default_factory=dict)  # params to force; empty = the program as shipped
    group: int = 1
    defines: dict[str, int] = field(default_factory=dict)  # macros set before the building blocks


def _dense(name: str, dtype: str, d: int, bm: int, bn: int, w: int, **defines: int) -> Variant:
    return Variant(name, "dense_prefill_sm80.tl", "dense_prefill", dtype, d, SM80,
                   {"BLOCK_M": bm, "BLOCK_N": bn, "WARPS": w}, defines=defines)


VARIANTS = [
    # the tile this work is after (FA2's at D = 128) and its neighbours
    _dense("d128_128x64_w4_f16", "f16", 128, 128, 64, 4),
    _dense("d128_128x64_w4_bf16", "bf16", 128, 128, 64, 4),
    # the same without the basic-block fence before O += P V (traits.cuh, kFencePV): the schedule to
    # time against the fenced one
    _dense("d128_128x64_w4_f16_nofence", "f16", 128, 128, 64, 4, QM_FENCE_PV_ABOVE=1000),
    _dense("d128_128x32_w4_f16", "f16", 128, 128, 32, 4),
    _dense("d128_128x32_w4_bf16", "bf16", 128, 128, 32, 4),
    _dense("d64_128x64_w4_f16", "f16", 64, 128, 64, 4),
    _dense("d256_64x32_w4_f16", "f16", 256, 64, 32, 4),
    # the shipped programs
    Variant("paged_prefill_d128_f16", "paged_prefill_sm80.tl", "paged_prefill", "f16", 128, SM80, group=4),
    Variant("paged_decode_d128_f16", "paged_decode_sm80.tl", "paged_decode", "f16", 128, SM80, group=4),
    Variant("sm75_dense_d128_f16", "dense_prefill_sm75.tl", "dense_prefill", "f16", 128, SM75),
    Variant("sm75_paged_prefill_d128_f16", "paged_prefill_sm75.tl", "paged_prefill", "f16", 128, SM75, group=4),
    Variant("sm75_decode_d128_f16", "paged_decode_sm75.tl", "paged_decode", "f16", 128, SM75, group=4),
]

_PARAMS_BLOCK = re.compile(r"^params\b[^{]*\{.*?^\}\n*", re.MULTILINE | re.DOTALL)


def program_text(v: Variant) -> str:
    """The TL program; with forced tiles, its params blocks are replaced by one block of those."""
    text = (TL / v.program).read_text()
    if not v.tiles:
        return text
    blocks = list(_PARAMS_BLOCK.finditer(text))
    base = blocks[0].group(0)
    for name, value in v.tiles.items():
        base, n = re.subn(rf"^(\s*){name} = .*$", rf"\g<1>{name} = {value}", base, count=1, flags=re.MULTILINE)
        if not n:
            base = base.replace("{\n", f"{{\n  {name} = {value}\n", 1)
    for b in reversed(blocks):
        text = text[:b.start()] + text[b.end():]
    return text[:blocks[0].start()] + base + text[blocks[0].start():]


@dataclass
class Row:
    variant: str
    arch: str
    kernel: str
    registers: int
    spill_stores: int
    spill_loads: int
    stack: int
    seconds: float
    sass: dict[str, int] = field(default_factory=dict)


def sass_counts(cubin: bytes, cuobjdump: Path) -> dict[str, dict[str, int]]:
    """Per kernel: HMMA, LDSM, LDL and STL instructions in the cubin's SASS."""
    # cuobjdump -sass runs nvdisasm from PATH (the nvidia-cuda-nvdisasm wheel puts it beside cuobjdump)
    env = dict(os.environ, PATH=os.pathsep.join([str(cuobjdump.parent), os.environ.get("PATH", "")]))
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        proc = subprocess.run([str(cuobjdump), "-sass", f.name], check=False, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"cuobjdump -sass failed: {proc.stderr.strip()}\n"
                         "fix: pip install nvidia-cuda-nvdisasm (or put nvdisasm on PATH), or drop --sass")
    text = proc.stdout
    out: dict[str, dict[str, int]] = {}
    for chunk in re.split(r"\n\s*Function : ", text)[1:]:
        name = chunk.split("\n", 1)[0].strip()
        out[name] = {op: len(re.findall(rf"\b{op}\b", chunk)) for op in ("HMMA", "LDSM", "LDL", "STL")}
    return out


def compile_variant(v: Variant, arch: str, tc, want_sass: bool, workdir: Path) -> list[Row]:
    target = get_target(arch)
    spec = AttentionSpec(v.op, v.dtype, v.head_dim, v.group)
    src = lower(parse_tl(program_text(v)), target, spec)
    cu = workdir / f"{v.name}_{arch}.cu"
    cu.write_text("".join(f"#define {k} {val}\n" for k, val in v.defines.items()) + src.text)
    t0 = time.monotonic()
    res = compile_source(cu, target, tc)
    dt = time.monotonic() - t0
    sass = sass_counts(res.cubin, tc.cuobjdump) if want_sass and tc.cuobjdump else {}
    return [Row(v.name, arch, e.name, r.registers, r.spill_stores, r.spill_loads, r.stack, dt, sass.get(e.name, {}))
            for e in src.entries if e.name in res.resources for r in [res.resources[e.name]]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("only", nargs="*", help="variant name prefixes (default: all)")
    ap.add_argument("--arch", action="append", help="only these archs (repeatable; default: each variant's own)")
    ap.add_argument("--sass", action="store_true", help="also count HMMA/LDSM/LDL/STL in the SASS (needs cuobjdump)")
    ap.add_argument("--jobs", type=int, default=2, help="nvcc runs in parallel (default 2)")
    ap.add_argument("--json", type=Path, help="write the rows here as JSON")
    ap.add_argument("--keep", type=Path, help="keep the generated .cu files in this folder")
    ap.add_argument("--include", type=Path, help="take the building blocks from DIR/qimeng/ instead of kernels_src/include "
                                                 "(to compare an edited copy of the headers against the checkout)")
    ap.add_argument("--list", action="store_true", help="list the variants and exit")
    args = ap.parse_args(argv)
    if args.list:
        for v in VARIANTS:
            print(f"{v.name:30s} {v.program:24s} {','.join(v.archs):12s} {v.tiles or 'as shipped'} {v.defines or ''}")
        return 0
    jobs = [(v, a) for v in VARIANTS if not args.only or any(v.name.startswith(o) for o in args.only)
            for a in v.archs if not args.arch or a in args.arch]
    if not jobs:
        print("no variant matches; --list shows them", file=sys.stderr)
        return 2
    tc = find_toolchain()
    if args.include:
        if not (args.include / "qimeng" / "qimeng.cuh").is_file():
            print(f"error: no qimeng/qimeng.cuh under {args.include}", file=sys.stderr)
            return 2
        tc = dataclasses.replace(tc, kernels_include=args.include.resolve())
    with tempfile.TemporaryDirectory(prefix="regs-sweep-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        print(f"compiling {len(jobs)} kernels ({args.jobs} at a time) ...", file=sys.stderr, flush=True)
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            futures = [pool.submit(compile_variant, v, a, tc, args.sass, workdir) for v, a in jobs]
            rows: list[Row] = []
            for f in futures:
                rows += f.result()
                r = rows[-1]
                print(f"  {r.variant} {r.arch}: {r.seconds:.0f} s", file=sys.stderr, flush=True)
    head = f"| {'variant':30s} | arch  | kernel  | regs | spill st/ld B | stack B |"
    if args.sass:
        head += " HMMA | LDSM | LDL | STL |"
    print(head)
    print("|" + "|".join("---" for _ in range(head.count("|") - 1)) + "|")
    for r in rows:
        line = (f"| {r.variant:30s} | {r.arch} | {r.kernel.rsplit('_', 3)[-3]:7s} | {r.registers:4d} | "
                f"{r.spill_stores:>5d} / {r.spill_loads:<5d} | {r.stack:7d} |")
        if args.sass:
            line += "".join(f" {r.sass.get(op, 0):4d} |" for op in ("HMMA", "LDSM", "LDL", "STL"))
        print(line)
    if args.json:
        args.json.write_text(json.dumps([vars(r) for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
