"""CUDA-graph capture of qimeng kernels on a GPU: capture once, refill the static inputs with fresh
random data, replay, compare with the fp32 reference (python3 scripts/check_graphs.py [registry])."""

import math
import sys
from pathlib import Path

import torch

from qimeng_serve.build.bundle import bundle_filename
from qimeng_serve.runtime.loader import device_arch
from qimeng_serve.runtime.ops import KernelSet
from qimeng_serve.validate import _gather, _paged_inputs, reference, rel_l2

reg = Path(sys.argv[1] if len(sys.argv) > 1 else "registry")
arch = device_arch()
ks = KernelSet(reg / arch / "f16" / bundle_filename(arch, "f16", "default"), prefer="sass")
gen = torch.Generator(device="cuda").manual_seed(1)
d, group, seqs = 128, 4, [(1, 1000), (1, 4099), (1, 17)]
q, kc, vc, table, cu, seqlens = _paged_inputs(seqs, 2, group, d, torch.float16, gen)
ws = ks.decode_workspace(q.shape[0], q.shape[1], d, 4099, q.device)
out = torch.full_like(q, float("nan"))
args = (q, kc, vc, table, cu, seqlens, 1, 4099)
ks.paged_decode(*args, workspace=ws, out=out)  # warm-up outside the capture
torch.cuda.synchronize()
graph = torch.cuda.CUDAGraph()
stream = torch.cuda.Stream()
with torch.cuda.stream(stream), torch.cuda.graph(graph, stream=stream):
    ks.paged_decode(*args, workspace=ws, out=out)
worst = 0.0
for trial in range(3):
    for t in (q, kc, vc):  # fresh inputs in the captured buffers
        t.copy_(torch.randn(t.shape, generator=gen, device="cuda").to(t.dtype))
    out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    refs = [reference(q[cu[b]:cu[b + 1]].permute(1, 0, 2), _gather(kc, table[b], lk), _gather(vc, table[b], lk),
                      causal=True, scale=1 / math.sqrt(d)) for b, (_, lk) in enumerate(seqs)]
    outs = [out[cu[b]:cu[b + 1]].permute(1, 0, 2) for b in range(len(seqs))]
    err = rel_l2(torch.cat([o.flatten() for o in outs]), torch.cat([r.flatten() for r in refs]))
    worst = max(worst, err)
    print(f"replay {trial}: rel. L2 {err:.2e}", flush=True)
print(f"CUDA graph decode (split + combine) on {torch.cuda.get_device_name()}: "
      f"{'passed' if worst < 2e-3 else 'FAILED'} (worst rel. L2 {worst:.2e})")
sys.exit(0 if worst < 2e-3 else 1)
