#!/usr/bin/env python
"""Experiment (not shipped): O stored through the tile's last K slot by bulk tensor stores, at D 128
without a mask, keeping three K/V stages.

The register store of O holds a consumer warpgroup ~1 us per tile with the tensor cores idle
(perf-notes "sixteenth run"). Session 9's bulk store (STORE_TMA) shortened that (1.02 -> 0.80 us in the
trace, -2% kernel time in Nsight Compute) but its O tile took the third K/V stage, and the kernel timed
level. Here the O tile is the tile's last K slot instead: the consumers keep that slot from the
producer after the tile's last S GEMM, each warpgroup writes its 64 normalised rows into it (stmatrix,
the slot viewed as sQ's layout: both are [128, 128] in the same swizzled chunks), one thread issues the
stores and waits until they have read the slot, and the warpgroup then hands the slot back. The
producer needs that slot again only for the next tile's third K tile.

Built from the shipped program lowered without a mask (the `_full` kernel), then edited:

    python scripts/experiments/build_oslot.py --out .device/oslot

Measured (perf-notes "sixteenth run", run 7): +1-1.5% at 1k, +0-0.5% at 2k-4k, -1.7% at 8k. Validation
failed from its first case (L = 1 causal, the shifted tile's rows from -127: "an illegal instruction",
likely the bulk store at a negative row). Not pursued.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "scripts" / "experiments"))

# the slot store: Consumer::normalize_and_store_tma with the tile given, the read waited for and the
# warpgroup synced before the slot is released
STORE = r'''
namespace oslot {
template <class KT>
__device__ __forceinline__ void store_o_in_slot(qm::sm90::Consumer<KT>& c, typename qm::sm90::Consumer<KT>::TileO& acc,
                                                typename KT::T* tile, const qm::sm90::TmaDescs& tma,
                                                const qm::AttnParams& p, int b, int h, int q0, int seqlen_q) {
  using namespace cute;
  using T = typename KT::T;
  const int wg = c.tid / qm::sm90::kWarpgroupThreads;
  const int row0 = q0 + 64 * wg;
  // The bulk store clips rows outside the tensor (before 0 under the causal shift, past Lq). A varlen batch
  // (cu_seqlens_q) would need the register store for its last tile, whose rows run into the next
  // sequence; a second store site in the epilogue pushed the KV loop's descriptors out of uniform
  // registers (R2UR 17 -> 33), and no dense call the runtime makes is varlen: the experiment traps there.
  if (p.cu_seqlens_q) asm volatile("trap;");
  float inv[qm::sm90::Consumer<KT>::kRows];
  CUTE_UNROLL
  for (int r = 0; r < qm::sm90::Consumer<KT>::kRows; ++r) inv[r] = qm::sm90::Consumer<KT>::inverse_row_sum(c.l[r]);
  Tensor o = make_tensor(acc.data(), qm::sm90::acc_rowcol(acc.layout()));
  Tensor out = make_tensor<T>(acc.layout());
  Tensor out_rc = make_tensor(out.data(), qm::sm90::acc_rowcol(out.layout()));
  CUTE_UNROLL
  for (int r = 0; r < size<0>(o); ++r) {
    CUTE_UNROLL
    for (int col = 0; col < size<1>(o); ++col) out_rc(r, col) = static_cast<T>(o(r, col) * inv[r]);
  }
  auto copy_o = make_tiled_copy_C(Copy_Atom<SM90_U32x4_STSM_N, T>{}, c.mma_pv);
  auto thr = copy_o.get_thread_slice(c.tid);
  asm volatile("" : "+l"(tile));  // as Consumer::issue_qk's sQ: not tied to the KV loop's sK descriptors
  Tensor sO = make_tensor(make_smem_ptr(tile), typename KT::SmemLayoutQ{});
  copy(copy_o, thr.retile_S(out), thr.partition_D(sO));
  tma_store_fence();  // the generic-proxy writes, visible to the bulk copy (async proxy)
  qm::sm90::warpgroup_sync(wg);
  if (c.tid % qm::sm90::kWarpgroupThreads == 0) {
    qm::sm90::tma_store_tile<64, KT::kBlockM, KT::kHeadDim>(&tma.o, tile + 64 * wg * qm::sm90::kSwizzleCols,
                                                           qm::sm90::q_row(p, b, row0), h, qm::sm90::q_batch(p, b));
    tma_store_wait<0>();  // the stores have read the slot
  }
  qm::sm90::warpgroup_sync(wg);
}
}  // namespace oslot
'''


def oslot(text: str, name: str) -> str:
    text = re.sub(r"(__global__ void __launch_bounds__\(\d+, 1\) )(\w+)\(", lambda m: m.group(1) + name + "(", text,
                  count=1)
    text = text.replace("\n// ---- kernel", STORE + "\n// ---- kernel", 1)
    producer, consumer = text.split("} else {  // L", 1)
    release = re.search(r"qm::sm90::release\(sm\.k_empty, ps_k\.stage\);  // L\d+: Release sK", consumer).group(0)
    first = "if (n_hi - n_lo == 1) qm::sm90::release_q(sm);  // the tile's last S GEMM is done with sQ\n"
    loop = "if (t_n == n_lo) qm::sm90::release_q(sm);  // the tile's last S GEMM is done with sQ\n"
    assert consumer.count(release) == 2 and first in consumer and loop in consumer
    # the tile's last S GEMM keeps its K slot: O goes out through it
    for last in (first, loop):
        at = consumer.index(last) + len(last)
        nxt = consumer.index(release, at)
        consumer = (consumer[:nxt] + "if (!(" + last.split("if (", 1)[1].split(")", 1)[0] + ")) " + release
                    + "  (the last one's slot is O's)" + consumer[nxt + len(release):])
    store = re.search(r"c\.normalize_and_store\(acc, p, ([^;]*)\);", consumer)
    consumer = consumer.replace(store.group(0), (
        "if (n_hi > n_lo) {  // through the last K slot, which goes back to the producer once the stores read it\n"
        "        const int o_stage = (ps_k.stage + KT::kStages - 1) % KT::kStages;\n"
        f"        oslot::store_o_in_slot<KT>(c, acc, sm.k[o_stage], tma, p, {store.group(1)});\n"
        "        qm::sm90::release(sm.k_empty, o_stage);\n"
        "      } else {\n"
        f"        {store.group(0)}\n"
        "      }"))
    return producer + "} else {  // L" + consumer


def main() -> None:
    from edited_kernel import compile_edited
    from qimeng_serve.build.toolchain import find_toolchain
    from qimeng_serve.lower.emit_sm90 import lower_sm90
    from qimeng_serve.spec import AttentionSpec
    from qimeng_serve.targets import get_target
    from qimeng_serve.tl.parser import parse_tl

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--dtypes", default="bf16,f16")
    args = ap.parse_args()
    toolchain = find_toolchain()
    program = (REPO / "kernels_src" / "tl" / "dense_prefill_sm90.tl").read_text()
    args.out.mkdir(parents=True, exist_ok=True)
    index = {"schema": "qimeng-sm90a-kernels/1", "arch": "sm_90a", "kernels": {}}
    for dtype in args.dtypes.split(","):
        source = lower_sm90(parse_tl(program), get_target("sm_90"), AttentionSpec("dense_prefill", dtype, 128, 1, False))
        name = f"qm_oslot_attn_{dtype}_hd128"
        index["kernels"][name] = compile_edited(
            args.out, name, oslot(source.text, name), source, toolchain, dtype,
            "dense_prefill_sm90.tl + O through the last K slot (experiment)", {"o_slot": 1},
            tensor_maps={**source.entries[0].tensor_maps, "o": 64})
    (args.out / "index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
