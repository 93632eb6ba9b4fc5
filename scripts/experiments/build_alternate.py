#!/usr/bin/env python
"""Experiment (not shipped): cuDNN's D 128 loop shape, the consumer warpgroups taking turns on the softmax
instead of on the GEMMs, with no overlap inside a warpgroup.

Nsight Compute's per-instruction samples (perf-notes "eighteenth run", run 1) put cuDNN's KV step level with
ours (2413 against 2441 samples a step), while our tile boundary costs about 1000 samples a tile more. Our
pinned overlap peels a first S GEMM and softmax and a last O += P V out of the KV loop (542 + 106
instructions a warp a tile), which runs exposed at every tile. cuDNN's loop has no peel: each warpgroup runs
S GEMM, softmax, O += P V in turn, and the two warpgroups alternate only their softmax's exp section (a
named barrier pair around it), which keeps one's GEMMs running beside the other's softmax.

Built from dense_prefill_sm90.tl lowered with OVERLAP = 0 (the loop above, turns around the S GEMM issue),
then edited: the turn moves from the S GEMM's issue to the softmax and rescale.

    python scripts/experiments/build_alternate.py --out .device/alt [--variants alt,alt_tma]

Variants: `alt` (three K/V stages, O by the register store), `alt_tma` (two stages and O through shared
memory by a bulk tensor store, as cuDNN's epilogue: STSM, fence, UTMASTG).
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

VARIANTS = {
    "alt": {"OVERLAP": 0, "CARRY": 0},
    "alt_tma": {"OVERLAP": 0, "CARRY": 0, "STORE_TMA": 1, "STAGES": 2},
    # diagnostic, timing only: no mask in the loop (right only for Lk a multiple of 128 without a mask)
    "alt_nomask": {"OVERLAP": 0, "CARRY": 0},
    "alt_nomask_tma": {"OVERLAP": 0, "CARRY": 0, "STORE_TMA": 1, "STAGES": 2},
    # the loop in runs of masked and unmasked KV tiles, the body once with the mask and once without
    "alt_split": {"OVERLAP": 0, "CARRY": 0},
    "alt_split_tma": {"OVERLAP": 0, "CARRY": 0, "STORE_TMA": 1, "STAGES": 2},
    "alt_dep": {"OVERLAP": 0, "CARRY": 0},
    "alt_dep_tma": {"OVERLAP": 0, "CARRY": 0, "STORE_TMA": 1, "STAGES": 2},
    "alt_dep_nomask": {"OVERLAP": 0, "CARRY": 0},
    "alt_vote": {"OVERLAP": 0, "CARRY": 0},
    "alt_vote_tma": {"OVERLAP": 0, "CARRY": 0, "STORE_TMA": 1, "STAGES": 2},
}

# Consumer::mask without its own (per-thread) needs_mask test: the caller has voted
MASK_ALL = r'''
namespace alt {
template <class KT>
__device__ __forceinline__ void mask_all(const qm::sm90::Consumer<KT>& c, typename qm::sm90::Consumer<KT>::TileS& S,
                                         const qm::sm90::MaskArgs& mk, int n) {
  using namespace cute;
  Tensor s = make_tensor(S.data(), qm::sm90::acc_rowcol(S.layout()));
  auto cS = make_identity_tensor(Shape<typename KT::BM, typename KT::BN>{});
  Tensor tScS = c.mma_qk.get_thread_slice(c.tid).partition_C(cS);
  Tensor cc = make_tensor(tScS.data(), qm::sm90::acc_rowcol(tScS.layout()));
  const int col0 = n * KT::kBlockN;
  CUTE_UNROLL
  for (int r = 0; r < qm::sm90::Consumer<KT>::kRows; ++r) {
    const int row = mk.q0 + get<0>(cc(r, 0));
    int hi = mk.kv_len - col0;
    if (mk.causal) hi = min(hi, row + mk.offset + 1 - col0);
    const int lo = mk.window > 0 ? row + mk.offset - mk.window + 1 - col0 : INT_MIN;
    CUTE_UNROLL
    for (int j = 0; j < size<1>(s); ++j) {
      const int col = get<1>(cc(r, j));
      if (col >= hi || col < lo) s(r, j) = -INFINITY;
    }
  }
}
}  // namespace alt
'''
NO_MASK = {"alt_nomask", "alt_nomask_tma", "alt_dep_nomask"}
# the exponentials made to depend on a shared-memory load after the turn's barrier, which ptxas cannot hoist
# above it (without it ptxas ran the whole softmax before the barrier: alt_nomask's SASS)
DEP = {"alt_dep", "alt_dep_tma", "alt_dep_nomask"}
# the mask's branch taken on a warp vote (ptxas then knows it is warp-uniform)
VOTE = {"alt_vote", "alt_vote_tma"}
SPLIT = {"alt_split", "alt_split_tma"}


def with_params(program: str, params: dict[str, int]) -> str:
    """The program with a `params when D = 128` block of overrides before its kernel."""
    block = "params when D = 128 {\n" + "".join(f"  {k} = {v}\n" for k, v in params.items()) + "}\n\n"
    at = program.index("\nkernel ")
    return program[:at + 1] + block + program[at + 1:]


def split_runs(consumer: str) -> str:
    """The KV loop as runs: KV tiles that need the mask, then those that do not, until the range ends.
    With the mask's branches in the loop ptxas kept the GMMA descriptors in vector registers (R2UR 33);
    without them, in uniform ones (R2UR 18)."""
    head = re.search(r"\n(\s*)for \(int t_n = n_hi - 1; t_n >= n_lo; --t_n\) \{  // Loop n\n", consumer)
    indent = head.group(1)
    end = consumer.index("\n" + indent + "}\n", head.end())
    body = consumer[head.end():end + 1]
    assert body.count("c.mask(S, mk, t_n);") == 1
    unmasked = re.sub(r"\n\s*c\.mask\(S, mk, t_n\);[^\n]*", "", body, count=1)
    runs = (f"\n{indent}for (int t_n = n_hi - 1; t_n >= n_lo;) {{  // Loop n, in runs of masked and unmasked KV tiles\n"
            f"{indent}  for (; t_n >= n_lo && qm::sm90::Consumer<KT>::needs_mask(mk, t_n); --t_n) {{\n{body}{indent}  }}\n"
            f"{indent}  for (; t_n >= n_lo && !qm::sm90::Consumer<KT>::needs_mask(mk, t_n); --t_n) {{\n{unmasked}"
            f"{indent}  }}\n{indent}}}\n")
    return consumer[:head.start()] + runs + consumer[end + len(indent) + 3:]


def alternate(text: str, name: str, mask: bool = True, split: bool = False, vote: bool = False,
              dep: bool = False) -> str:
    """The turn taken around the softmax and the rescale instead of around the S GEMM's issue."""
    text = re.sub(r"(__global__ void __launch_bounds__\(\d+, 1\) )(\w+)\(", lambda m: m.group(1) + name + "(", text,
                  count=1)
    producer, consumer = text.split("} else {  // L", 1)
    issue = re.search(r"turn\.wait_turn\(\);\n(\s*)(c\.issue_qk\(S, sm, ps_k\.stage\);[^\n]*)\n\s*turn\.pass_turn\(\);\n",
                      consumer)
    assert issue and consumer.count("turn.wait_turn();") == 1, "expected the OVERLAP = 0 loop's one turn"
    indent = issue.group(1)
    consumer = consumer.replace(issue.group(0), issue.group(2) + "\n")
    softmax = re.search(r"c\.online_softmax\(S, scale\);[^\n]*\n", consumer)
    reshape = re.search(r"auto P = c\.reshape\(S\);[^\n]*\n", consumer)
    assert softmax and reshape and softmax.start() < reshape.start()
    # softmax_done's branch on the row sums ends the block after the softmax, so ptxas cannot sink the
    # exponentials below the turn's arrive (without it the two barriers lay 7 instructions apart)
    consumer = (consumer[:softmax.start()] + "turn.wait_turn();  // the softmax's turn (cuDNN's ping-pong)\n" + indent
                + consumer[softmax.start():reshape.end()] + indent + "c.softmax_done(S);\n" + indent
                + "turn.pass_turn();\n" + consumer[reshape.end():])
    if dep:
        # sm.tile holds tile words, >= -1: the select never takes 0, but ptxas must wait for the load
        consumer = consumer.replace(
            "turn.wait_turn();  // the softmax's turn (cuDNN's ping-pong)\n" + indent + "c.online_softmax(S, scale);",
            "turn.wait_turn();  // the softmax's turn (cuDNN's ping-pong)\n" + indent
            + "int turn_word;\n" + indent
            + "asm volatile(\"ld.volatile.shared.s32 %0, [%1];\" : \"=r\"(turn_word) : "
            "\"r\"(static_cast<uint32_t>(__cvta_generic_to_shared(&sm.tile[0]))));\n" + indent
            + "c.online_softmax(S, turn_word < -1 ? 0.f : scale);", 1)
        assert "turn_word" in consumer
    if split:
        consumer = split_runs(consumer)
    if vote:
        producer = producer.replace("\n// ---- kernel", MASK_ALL + "\n// ---- kernel", 1)
        call = re.search(r"c\.mask\(S, mk, t_n\);", consumer)
        consumer = consumer.replace(call.group(0), "if (__any_sync(0xffffffffu, qm::sm90::Consumer<KT>::needs_mask(mk, t_n))) "
                                    "alt::mask_all<KT>(c, S, mk, t_n);", 1)
    if not mask:
        consumer = re.sub(r"\n\s*c\.mask\(S, mk, t_n\);[^\n]*", "", consumer, count=1)
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
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args()
    toolchain = find_toolchain()
    shipped = (REPO / "kernels_src" / "tl" / "dense_prefill_sm90.tl").read_text()
    args.out.mkdir(parents=True, exist_ok=True)
    index_path = args.out / "index.json"
    index = (json.loads(index_path.read_text()) if index_path.exists()
             else {"schema": "qimeng-sm90a-kernels/1", "arch": "sm_90a", "kernels": {}})
    for variant in args.variants.split(","):
        params = VARIANTS[variant]
        program = parse_tl(with_params(shipped, params))
        for dtype in args.dtypes.split(","):
            source = lower_sm90(program, get_target("sm_90"), AttentionSpec("dense_prefill", dtype, 128, 1, False))
            name = f"qm_{variant}_attn_{dtype}_hd128"
            text = alternate(source.text, name, mask=variant not in NO_MASK, split=variant in SPLIT,
                             vote=variant in VOTE, dep=variant in DEP)
            index["kernels"][name] = compile_edited(
                args.out, name, text, source, toolchain, dtype, f"dense_prefill_sm90.tl {params}, softmax turns "
                "(experiment)", {**source.params, "softmax_turns": 1})
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
