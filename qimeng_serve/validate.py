"""`qimeng-serve validate` (needs a GPU): every kernel of a bundle against an fp32 reference.

Adversarial by design: fresh random inputs per check, the output poisoned with NaN before each
launch, lengths that are not tile multiples, GQA ratios 1/4/8, shuffled block tables, mixed
batches, causal offsets as in chunked prefill. sm_75 / sm_80 code runs on newer GPUs through
its PTX (JIT), and the manifest says exactly that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from qimeng_serve.build.bundle import read_manifest, write_manifest
from qimeng_serve.runtime.ops import CallDoesNotFit, KernelSet

LENGTHS = (1, 17, 127, 128, 129, 1000, 4099)
GROUPS = (1, 4, 8)
TOLERANCE = {"f16": 2e-3, "bf16": 1.6e-2}  # relative L2 error against fp32 (bf16 keeps 8 mantissa bits)
PAGE = 16


@dataclass
class Check:
    kernel: str
    case: str
    rel_l2: float
    ok: bool


@dataclass
class ValidationReport:
    bundle: Path
    device: str
    checks: list[Check] = field(default_factory=list)
    methods: dict[str, str] = field(default_factory=dict)  # kernel -> "compute_75 PTX JIT" / "sm_90 SASS"
    skipped: dict[str, str] = field(default_factory=dict)  # kernels this GPU does not load -> why (sm90a off 9.0)

    def method_of(self, kernel: str) -> str:
        return self.methods.get(kernel, "")


def reference(q, k, v, *, causal: bool, scale: float, window: int = 0, softcap: float = 0.0):
    """fp32 attention of one sequence: q [Hq, Lq, D], k/v [Hkv, Lk, D]; queries are the last Lq keys."""
    import torch

    hq, lq, _ = q.shape
    hkv, lk, _ = k.shape
    k = k.float().repeat_interleave(hq // hkv, 0)
    v = v.float().repeat_interleave(hq // hkv, 0)
    s = torch.einsum("hqd,hkd->hqk", q.float(), k) * scale
    if softcap:
        s = softcap * torch.tanh(s / softcap)
    i = torch.arange(lq, device=q.device)[:, None] + (lk - lq)
    j = torch.arange(lk, device=q.device)[None, :]
    visible = torch.ones(lq, lk, dtype=torch.bool, device=q.device)
    if causal:
        visible &= j <= i
    if window:
        visible &= j > i - window
    s = s.masked_fill(~visible, float("-inf"))
    p = torch.softmax(s, dim=-1).nan_to_num(0.0)  # a row with no visible key gives 0
    return torch.einsum("hqk,hkd->hqd", p, v)


def rel_l2(out, ref) -> float:
    import torch

    out = out.float()
    if not torch.isfinite(out).all():
        return math.inf
    return float((out - ref).norm() / ref.norm().clamp_min(1e-12))


def _dtype(name: str):
    import torch

    return {"f16": torch.float16, "bf16": torch.bfloat16}[name]


def _paged_inputs(seqs, hkv: int, group: int, d: int, dtype, gen):
    """A mixed batch in vLLM's paged layout with a shuffled block table and spare blocks."""
    import torch

    dev = "cuda"
    blocks_per_seq = [math.ceil(lk / PAGE) for _, lk in seqs]
    total_blocks = sum(blocks_per_seq) + 7
    k_cache = torch.randn(total_blocks, PAGE, hkv, d, generator=gen, device=dev).to(dtype)
    v_cache = torch.randn(total_blocks, PAGE, hkv, d, generator=gen, device=dev).to(dtype)
    perm = torch.randperm(total_blocks, generator=gen, device=dev).to(torch.int32)
    table = torch.zeros(len(seqs), max(blocks_per_seq), dtype=torch.int32, device=dev)
    at = 0
    for b, n in enumerate(blocks_per_seq):
        table[b, :n] = perm[at:at + n]
        at += n
    lq = [q for q, _ in seqs]
    cu = torch.tensor([0] + list(_cumsum(lq)), dtype=torch.int32, device=dev)
    q = torch.randn(sum(lq), hkv * group, d, generator=gen, device=dev).to(dtype)
    seqlens_k = torch.tensor([lk for _, lk in seqs], dtype=torch.int32, device=dev)
    return q, k_cache, v_cache, table, cu, seqlens_k


def _cumsum(xs):
    total = 0
    for x in xs:
        total += x
        yield total


def _gather(cache, table_row, lk: int):
    """K or V of one sequence as [Hkv, Lk, D] through its block table row."""
    idx = table_row[: math.ceil(lk / PAGE)].long()
    return cache[idx].flatten(0, 1)[:lk].permute(1, 0, 2)


def _check_paged(ks: KernelSet, family: str, d: int, group: int, seqs, causal: bool, window: int, gen) -> float:
    import torch

    dtype = _dtype(ks.dtype)
    hkv = 2
    q, kc, vc, table, cu, seqlens_k = _paged_inputs(seqs, hkv, group, d, dtype, gen)
    out = torch.full_like(q, float("nan"))  # poison: every element must be written
    scale = 1.0 / math.sqrt(d)
    args = (q, kc, vc, table, cu, seqlens_k, max(s[0] for s in seqs), max(s[1] for s in seqs))
    fn = ks.paged_prefill if family == "paged_prefill" else ks.paged_decode
    fn(*args, causal=causal, softmax_scale=scale, window=window, softcap=ks.softcap, out=out)
    torch.cuda.synchronize()
    outs, refs = [], []
    for b, (lq, lk) in enumerate(seqs):
        qb = q[cu[b]:cu[b + 1]].permute(1, 0, 2)
        refs.append(reference(qb, _gather(kc, table[b], lk), _gather(vc, table[b], lk), causal=causal, scale=scale,
                              window=window, softcap=ks.softcap))
        outs.append(out[cu[b]:cu[b + 1]].permute(1, 0, 2))
    return rel_l2(torch.cat([o.flatten() for o in outs]), torch.cat([r.flatten() for r in refs]))


def key_ramp(k):
    """K's rows scaled from 16 (the first key) down to 1 (the last): each row's score maximum then keeps
    rising as a kernel walks the keys from the last block down, by a few log2 units a block, to about 90.
    It reaches every branch of a kernel's running-max update (and of a lazy O rescale, rescale=lazy),
    which N(0, 1) scores leave after the first block."""
    import torch

    lk = k.shape[-2]
    return k * torch.linspace(16.0, 1.0, lk, device=k.device).view(*([1] * (k.dim() - 2)), lk, 1)


def _check_dense(ks: KernelSet, d: int, group: int, lq: int, lk: int, causal: bool, gen, ramp: bool = False) -> float:
    import torch

    dtype = _dtype(ks.dtype)
    b, hkv = 2, 2
    q = torch.randn(b, hkv * group, lq, d, generator=gen, device="cuda").to(dtype)
    k = torch.randn(b, hkv, lk, d, generator=gen, device="cuda")
    k = (key_ramp(k) if ramp else k).to(dtype)
    v = torch.randn(b, hkv, lk, d, generator=gen, device="cuda").to(dtype)
    out = torch.full_like(q, float("nan"))
    scale = 1.0 / math.sqrt(d)
    ks.dense_prefill(q, k, v, causal=causal, softmax_scale=scale, softcap=ks.softcap, out=out)
    torch.cuda.synchronize()
    ref = torch.stack([reference(q[i], k[i], v[i], causal=causal, scale=scale, softcap=ks.softcap) for i in range(b)])
    return rel_l2(out, ref)


def cases(family: str):
    """(name, callable(ks, d, gen) -> rel_l2) for one family."""
    out = []
    for group in GROUPS:
        if family == "dense_prefill":
            for length in LENGTHS:
                for causal in (True, False):
                    out.append((f"L={length} g={group} {'causal' if causal else 'full'}",
                                lambda ks, d, gen, L=length, g=group, c=causal: _check_dense(ks, d, g, L, L, c, gen)))
            out.append((f"Lq=100 Lk=1000 g={group} causal", lambda ks, d, gen, g=group: _check_dense(ks, d, g, 100, 1000, True, gen)))
            if group == 4:  # a row maximum that keeps rising through the walk (key_ramp)
                out.append(("L=4099 g=4 full ramp", lambda ks, d, gen: _check_dense(ks, d, 4, 4099, 4099, False, gen, True)))
                out.append(("L=2000 g=4 causal ramp", lambda ks, d, gen: _check_dense(ks, d, 4, 2000, 2000, True, gen, True)))
        elif family == "paged_prefill":
            mixed = [(1, 1), (17, 17), (127, 300), (128, 128), (129, 1000), (1000, 1000), (60, 4099)]
            out.append((f"mixed batch g={group} causal", lambda ks, d, gen, g=group, s=mixed: _check_paged(ks, "paged_prefill", d, g, s, True, 0, gen)))
            out.append((f"mixed batch g={group} window 64", lambda ks, d, gen, g=group, s=mixed: _check_paged(ks, "paged_prefill", d, g, s, True, 64, gen)))
            long = [(4099, 4099)]
            out.append((f"L=4099 g={group} full", lambda ks, d, gen, g=group, s=long: _check_paged(ks, "paged_prefill", d, g, s, False, 0, gen)))
        else:
            seqs = [(1, lk) for lk in LENGTHS]
            out.append((f"decode ctx {LENGTHS} g={group}", lambda ks, d, gen, g=group, s=seqs: _check_paged(ks, "paged_decode", d, g, s, True, 0, gen)))
            if group <= 8:
                two = [(2, 17), (2, 1000), (1, 4099)]
                out.append((f"decode 2 tokens g={group}", lambda ks, d, gen, g=group, s=two: _check_paged(ks, "paged_decode", d, g, s, True, 0, gen)))
    return out


def validate_bundle(bundle: Path, *, seed: int = 0, write: bool = True, prefer: str = "auto",
                    on_kernel=None) -> ValidationReport:
    import torch

    ks = KernelSet(bundle, prefer=prefer)
    device = torch.cuda.get_device_name()
    report = ValidationReport(bundle, device, methods={n: k.method for n, k in ks.kernels.items()},
                              skipped=dict(ks.skipped))
    gen = torch.Generator(device="cuda").manual_seed(seed)
    tol = TOLERANCE[ks.dtype]
    results: dict[str, list[Check]] = {}
    for name, kernel in ks.kernels.items():
        if kernel.meta["role"] == "combine":
            continue  # exercised by every decode check through its split kernel
        family, d = kernel.meta["family"], kernel.meta["spec"]["head_dim"]
        for case, fn in cases(family):
            # each kernel by name: an sm_90 bundle holds a portable and an sm90a kernel of the same
            # family and head size, and KernelSet.find alone would only ever reach one of them
            try:
                with ks.pinned(name):
                    err = fn(ks, d, gen)
            except CallDoesNotFit as exc:  # the kernel never ran this case: it cannot pass it
                case, err = f"{case} (does not fit: {exc.message})", math.inf
            check = Check(name, case, err, err <= tol)
            report.checks.append(check)
            results.setdefault(name, []).append(check)
        if on_kernel:
            on_kernel(name, kernel.method, results[name])
    if write:
        _record(bundle, ks, results, device, tol)
    return report


def _record(bundle: Path, ks: KernelSet, results: dict[str, list[Check]], device: str, tol: float) -> None:
    manifest = read_manifest(bundle)
    for name, meta in manifest["kernels"].items():
        checks = results.get(name)
        if checks is None and meta["role"] == "combine":
            split = next(n for n, m in manifest["kernels"].items() if m["role"] == "split"
                         and m["spec"]["head_dim"] == meta["spec"]["head_dim"])
            checks = results.get(split)
        if not checks:
            continue
        method = ks.kernels[name].method
        manifest["kernels"][name]["validation"] = {
            "status": "passed" if all(c.ok for c in checks) else "failed",
            "device": device,
            "method": f"validated via {method} on {device}",
            "checks": len(checks),
            "failed": [c.case for c in checks if not c.ok],
            "max_rel_l2": min(max(c.rel_l2 for c in checks), 1e30),  # inf (NaN output) stays valid JSON
            "tolerance": tol,
        }
    write_manifest(bundle, manifest)
