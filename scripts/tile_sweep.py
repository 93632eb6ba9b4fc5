"""Measure tile choices of a golden TL program on a GPU (the planner's --tune step, by hand for now).

  here (nvcc):  python scripts/tile_sweep.py build  -> registry-sweep/<variant>/sm_90/f16/*.safetensors
  GPU machine:  python3 scripts/tile_sweep.py time   -> TFLOPS per variant beside SDPA flash (FA2)

Variants rewrite the params of kernels_src/tl/dense_prefill_sm80.tl; each is checked, lowered and
compiled exactly as `qimeng-serve build` does, spills included in the report rather than rejected.
"""

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "registry-sweep"
VARIANTS = {  # name: (head_dim, BLOCK_M, BLOCK_N, WARPS)
    "d64_128x64_w8": (64, 128, 64, 8), "d64_128x64_w4": (64, 128, 64, 4), "d64_128x32_w4": (64, 128, 32, 4),
    "d128_128x64_w8": (128, 128, 64, 8), "d128_128x32_w4": (128, 128, 32, 4), "d128_64x64_w4": (128, 64, 64, 4),
    "d128_128x64_w4": (128, 128, 64, 4),  # spill-free since the building blocks' register diet (v0.6)
}


# name: param overrides of paged_decode_sm80.tl (D = 128); the shipped program is BLOCK_N 64, PIPE 2, SPLIT_KV 512
DECODE_VARIANTS = {
    "dec_bn64_p2_s512": {}, "dec_bn64_p2_s1024": {"SPLIT_KV": 1024},
    "dec_bn128_p1_s512": {"BLOCK_N": 128, "PIPE": 1}, "dec_bn128_p1_s1024": {"BLOCK_N": 128, "PIPE": 1, "SPLIT_KV": 1024},
}


def decode_text(overrides: dict[str, int]) -> str:
    text = (ROOT / "kernels_src/tl/paged_decode_sm80.tl").read_text()
    for name, value in overrides.items():  # the first (unguarded) params block only
        text = re.sub(rf"^(\s*){name} = \d+$", rf"\g<1>{name} = {value}", text, count=1, flags=re.M)
    return text


def variant_text(d: int, bm: int, bn: int, w: int) -> str:
    text = (ROOT / "kernels_src/tl/dense_prefill_sm80.tl").read_text()
    start, end = text.index("params {"), text.index("kernel ")
    return text[:start] + f"params {{\n  BLOCK_M = {bm}\n  BLOCK_N = {bn}\n  WARPS = {w}\n}}\n\n" + text[end:]


def build() -> None:
    sys.path.insert(0, str(ROOT))
    from qimeng_serve.build.bundle import write_bundle
    from qimeng_serve.build.nvcc import compile_source
    from qimeng_serve.build.toolchain import find_toolchain
    from qimeng_serve.lower.emit import lower
    from qimeng_serve.spec import AttentionSpec
    from qimeng_serve.targets import get_target
    from qimeng_serve.tl.parser import parse_tl

    tc, target = find_toolchain(), get_target("sm_90")
    jobs = [(n, AttentionSpec("dense_prefill", "f16", v[0]), variant_text(*v)) for n, v in VARIANTS.items()]
    jobs += [(n, AttentionSpec("paged_decode", "f16", 128, 16), decode_text(s)) for n, s in DECODE_VARIANTS.items()]
    only = sys.argv[2:] or None
    for name, spec, text in jobs:
        if only and not any(name.startswith(o) for o in only):
            continue
        src = lower(parse_tl(text), target, spec)
        cu = SWEEP / name / f"{src.entries[0].name}.cu"
        cu.parent.mkdir(parents=True, exist_ok=True)
        cu.write_text(src.text)
        res = compile_source(cu, target, tc)
        kernels, blobs = {}, {}
        for e in src.entries:  # one module: every entry shares the cubin
            r = res.resources[e.name]
            print(name, e.name, f"regs {r.registers} spill {r.spill_stores}/{r.spill_loads} B smem {e.smem_bytes}",
                  flush=True)
            kernels[e.name] = {"family": spec.op, "role": e.role, "spec": spec.to_dict(), "params": src.params,
                               "launch": {"threads": e.threads, "grid": e.grid, "smem_bytes": e.smem_bytes},
                               "resources": vars(r), "observed": {"sass": ["sm_90"], "ptx": ["compute_90"]},
                               "tensors": {"cubin": f"{e.name}.cubin", "ptx": f"{e.name}.ptx"}}
            blobs.update({f"{e.name}.cubin": res.cubin, f"{e.name}.ptx": res.ptx})
        manifest = {"schema": "qimeng-bundle/1", "arch": "sm_90", "dtype": "f16", "kernel_set": name,
                    "kernels": kernels}
        write_bundle(SWEEP / name / "sm_90" / "f16" / "sweep.safetensors", manifest, blobs)


def time_variants() -> None:
    import torch
    from torch.nn.attention import SDPBackend

    sys.path.insert(0, str(ROOT))
    from qimeng_serve.bench import Timer, _sdpa, _tflops
    from qimeng_serve.runtime.ops import KernelSet
    from qimeng_serve.validate import validate_bundle

    timer, rows = Timer(runs=20), []
    from qimeng_serve.bench import bench_decode

    roof = {"matmul_bf16_tflops": 1e9, "copy_gbps": 1e9, "read_gbps": 1e9}  # relative figures only here
    # every decode variant that was built, baselines copied in from older revisions included
    for name in sorted(d.name for d in SWEEP.glob("dec_*") if d.is_dir()):
        bundle = SWEEP / name / "sm_90" / "f16" / "sweep.safetensors"
        report = validate_bundle(bundle, write=False, prefer="sass")  # a variant that is wrong is not timed
        bad = [c for c in report.checks if not c.ok]
        print(f"{name:16s} validation: {len(report.checks) - len(bad)}/{len(report.checks)} checks passed, "
              f"worst rel. L2 {max(c.rel_l2 for c in report.checks):.2e}", flush=True)
        if bad:
            rows.append((name, "failed validation", [vars(c) for c in bad]))
            continue
        ks = KernelSet(bundle, prefer="sass")
        for ctx in (8192, 32768, 131072):
            r = bench_decode(ks, timer, "f16", ctx, roof)
            rows.append((name, ctx, r.ours, r.sdpa))
            print(f"{name:16s} ctx={ctx:6d} ours {r.ours:6.0f} GB/s  dense SDPA {r.sdpa:6.0f}  {r.ours / r.sdpa:.2f}x  "
                  f"({torch.cuda.get_device_name()})", flush=True)
    for name in VARIANTS:
        if not (SWEEP / name).is_dir():
            continue
        ks = KernelSet(SWEEP / name / "sm_90" / "f16" / "sweep.safetensors", prefer="sass")
        d = VARIANTS[name][0]
        for l in (4096, 16384):
            for causal in (False, True):
                b, h = 16384 // l, 2048 // d
                q, k, v = (torch.randn(b, h, l, d, dtype=torch.float16, device="cuda") for _ in range(3))
                out = torch.empty_like(q)
                ours = timer.median_ms(lambda: ks.dense_prefill(q, k, v, causal=causal, out=out))
                fa2 = timer.median_ms(_sdpa(SDPBackend.FLASH_ATTENTION, q, k, v, causal))
                row = (name, l, causal, _tflops(b, h, l, l, d, causal, ours), _tflops(b, h, l, l, d, causal, fa2))
                rows.append(row)
                print(f"{name:16s} L={l:5d} {'causal' if causal else 'full  '} ours {row[3]:6.1f}  FA2 {row[4]:6.1f}  "
                      f"{row[3] / row[4]:.2f}x  ({torch.cuda.get_device_name()})", flush=True)
    Path(sys.argv[2] if len(sys.argv) > 2 else "tile_sweep.json").write_text(json.dumps(rows))


if __name__ == "__main__":
    build() if sys.argv[1] == "build" else time_variants()
