"""Stage 2 for Hopper: a warp-specialised TL program (`Role producer` / `Role consumer`, TMA rings,
GMMA) -> one CUDA C++ source on the sm_90a building blocks of kernels_src/include/qimeng/sm90/.
sm90_plan recognises the program, sm90_roles emits the two roles, this module the kernel around them.

Each TL statement becomes the building-block call that implements it, with the TL line above it:
the producer's `Copy ... with via=tma` -> produce_q / produce_kv (TMA into a ring slot after its
empty barrier), `Wait` / `Release` -> the slot's full / empty barrier, `gemm(..) with mma=gmma` ->
warpgroup MMAs, the softmax statements -> Consumer<KT> steps. The kernel takes a second,
`__grid_constant__` parameter with the three tensor maps (TmaDescs), encoded on the host by
qimeng_serve/runtime/tma_sm90.py. Same CudaSource / Entry shape as qimeng_serve.lower.emit.lower.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from qimeng_serve.lower.cexpr import LoweringError, host_formula
from qimeng_serve.lower.emit import CudaSource, Entry, _scope, entry_name
from qimeng_serve.lower.sm90_plan import (
    Plan,
    Shape,
    carry_on,
    gemms_paired,
    idle_skipped,
    rescale_lazy,
    overlap_on,
    plan_kernel,
    refuse,
    softmax_pinned,
)
from qimeng_serve.lower.sm90_roles import emit_consumer, emit_producer
from qimeng_serve.spec import AttentionSpec
from qimeng_serve.targets import Target
from qimeng_serve.tl import ast
from qimeng_serve.tl.checker import check_tl_or_raise
from qimeng_serve.tl.interpreter import resolve_params
from qimeng_serve.tl.printer import print_expr, print_tl
from qimeng_serve.tl.rules.hopper import kernel_split, kernel_tiles, split_max_parts, switch_value
from qimeng_serve.tl.rules.legality import copy_via

WARPGROUP_THREADS = 128
SWIZZLE_ALIGN = 1024
BARRIER_BYTES = 8
KERNEL_ABI = "attn_params+tma_descs"  # (const qm::AttnParams p, const __grid_constant__ qm::sm90::TmaDescs tma)
# tiles=persistent: a third parameter, `int* tile_counter`, one int zeroed before each launch (scheduler.cuh);
# kernels built before the counter retired themselves (registries of earlier releases)
PERSISTENT_ABI = "attn_params+tma_descs+tile_counter"
# tiles=persistent, as built now: `int* tile_counter` is two ints, zero before the stream's first launch, and
# the kernel leaves them zero (TileCounter::retire), so the host keeps one per stream and zeroes it once
RETIRING_ABI = "attn_params+tma_descs+tile_counter+retire"
# split=tail: the same parameters, but `tile_counter` heads a workspace (split.cuh) the host sizes from the
# entry's `split_tail` metadata (qimeng_serve/runtime/split_tail.py); a launcher that knows only the
# persistent ABI must refuse it
SPLIT_ABI = "attn_params+tma_descs+tile_counter+split_tail"
_CPP_DTYPE = {"f16": "qm::sm90::fp16", "bf16": "qm::sm90::bf16"}


@dataclass
class Sm90Entry(Entry):
    """An Entry whose kernel also takes the TmaDescs parameter (docs/kernels.md "Hopper")."""

    abi: str = KERNEL_ABI
    # per tensor map: the TMA box rows (the box is {64, rows, 1, 1} over (D, positions, heads, batch))
    tensor_maps: dict[str, int] = field(default_factory=dict)
    # split=tail: what the host needs to size the workspace (runtime/split_tail.py); empty otherwise
    split_tail: dict[str, int] = field(default_factory=dict)


def lower_sm90(program: ast.Program, target: Target, spec: AttentionSpec, source_name: str = "<tl>") -> CudaSource:
    """Check, then lower a warp-specialised program for sm_90a. Raises TLCheckError or LoweringError."""
    if not (target.gmma and target.tma):
        raise LoweringError(f"the Hopper lowering needs sm_90 (TMA, GMMA, setmaxnreg); the target is {target.arch}",
                            None, fix="lower this program for --arch sm_90, or lower an FA2 program with emit.lower")
    spec.validate_for(target)
    if spec.dtype not in _CPP_DTYPE:
        raise LoweringError(f"the sm90 building blocks take f16 and bf16 inputs, not {spec.dtype}", None,
                            fix="build f16 or bf16 kernels for sm_90")
    if spec.op not in ("dense_prefill", "paged_prefill"):
        raise LoweringError(f"the Hopper lowering implements dense_prefill and paged_prefill, not {spec.op}", None,
                            fix="use the FA2 programs (emit.lower) for paged_decode on sm_90")
    if spec.sliding_window == 1:
        raise LoweringError("a sliding window of 1 key (the diagonal only) is not lowered", None,
                            fix="use a window of at least 2 keys, or none")
    check_tl_or_raise(program, target, spec, source_name=source_name)
    params = {k: v for k, v in resolve_params(program, spec, source_name=source_name).items() if isinstance(v, int)}
    if len(program.kernels) != 1:
        raise LoweringError("a Hopper dense prefill program has one kernel", None, fix="write one `kernel attn`")
    kernel = program.kernels[0]
    plan = plan_kernel(kernel)
    tl_text = print_tl(program)
    tl_sha = hashlib.sha256(tl_text.encode()).hexdigest()
    name = entry_name(program, kernel, spec)
    lines, entry = _emit(plan, name, spec, params)
    head = [
        f"// Generated by qimeng-serve stage 2 (sm_90a) from TL program {program.name} (sha256 {tl_sha[:16]})",
        f"// target {target.arch} (compiled as sm_90a), spec {spec.key()}; params "
        + ", ".join(f"{k}={v}" for k, v in sorted(params.items())) + ". Do not edit: edit the TL program.",
        "#include <qimeng/sm90/fa3.cuh>",
        "",
    ]
    text = "\n".join(head + lines + [""])
    return CudaSource(text, [entry], params, tl_sha, hashlib.sha256(text.encode()).hexdigest())


def smem_bytes(head_dim: int, block_m: int, block_n: int, stages: int, store_o_tma: bool = False) -> int:
    """sizeof(qm::sm90::SharedStorage<KT>) + 1024 (aligning dynamic shared memory by hand)."""
    tiles = 2 * head_dim * (block_m * (2 if store_o_tma else 1) + 2 * stages * block_n)  # O's tile: as Q's
    barriers = BARRIER_BYTES * (2 + 4 * stages + 4) + 2 * 4  # Q, K/V stages, tile slots; the two tile numbers
    return -(-(tiles + barriers) // SWIZZLE_ALIGN) * SWIZZLE_ALIGN + SWIZZLE_ALIGN


def split_tail_meta(bm: int, bn: int, d: int, wgs: int) -> dict[str, int]:
    """split.cuh's SplitTail<KT> sizes: consumer warps, bytes a part of a tile leaves (O per thread and
    its two rows' max and sum, fp32), and the tile's rows and keys (the tiles and KV blocks)."""
    threads = WARPGROUP_THREADS * wgs
    lane_float4 = bm * d // threads // 4 + 1
    return {"block_m": bm, "block_n": bn, "warps": threads // 32, "part_bytes": threads * lane_float4 * 16}


def stream_meta(bm: int, bn: int, d: int, wgs: int) -> dict:
    """split=stream's sizes (split.cuh StreamTail<KT>): a part's block is its O normalised in the input
    dtype (16-bit) and each row's {max, sum} (fp32)."""
    return {**split_tail_meta(bm, bn, d, wgs), "part_bytes": bm * d * 2 + bm * 8, "mode": "stream"}


def _role_int(role: ast.Role, key: str, params: dict[str, int]) -> int:
    v = ast.option(role.options, key)
    value = int(v) if v is not None and v.isdigit() else params.get(v or "")
    if not isinstance(value, int):
        raise refuse(role, f"Role {role.role} has no static {key}=", f"add `{key}=` with a number or a param")
    return value


def _emit(plan: Plan, name: str, spec: AttentionSpec, params: dict[str, int]) -> tuple[list[str], Sm90Entry]:
    scope = _scope(plan.kernel, spec, params)
    bm, bn, d, stages = params["BLOCK_M"], params["BLOCK_N"], spec.head_dim, params.get("STAGES", 1)
    wgs = _role_int(plan.consumer, "warpgroups", params)
    p_regs, c_regs = _role_int(plan.producer, "regs", params), _role_int(plan.consumer, "regs", params)
    if _role_int(plan.producer, "warpgroups", params) != 1:
        raise refuse(plan.producer, "the producer is one warpgroup", "use warpgroups=1")
    pingpong = switch_value(ast.option(plan.consumer.options, "schedule"), params, "pingpong", None) == "pingpong"
    if pingpong and wgs < 2:
        raise refuse(plan.consumer, f"schedule=pingpong passes turns between consumer warpgroups; there is {wgs}",
                      "use warpgroups=2 or more, or drop schedule=pingpong")
    if bm != 64 * wgs or d % 64 or bn % 16 or bn > 256:
        raise refuse(plan.kernel, f"BLOCK_M={bm}, BLOCK_N={bn}, D={d} with {wgs} consumer warpgroups is not a tile "
                      "the sm90 blocks implement", "BLOCK_M = 64 per consumer warpgroup, BLOCK_N a multiple of 16 "
                      "up to 256, D a multiple of 64")
    tiles = kernel_tiles(plan.kernel, params)
    k = plan.kernel
    if len(k.grid) != 3:
        raise refuse(k, "the Hopper kernels have a 3-dimensional grid (query block, head, sequence)",
                      "grid (m_block : ..., q_head : heads_q, b : batch)")
    gather = ast.option(plan.kv_copies["K"].options, "via") == "cp.async"
    # the gather's 8-row page segments, one lane of a warp each (PagedGather in sm90/pipeline.cuh)
    if gather and (spec.op != "paged_prefill" or bn % 8 or bn > 8 * 32):
        raise refuse(plan.kv_copies["K"], "the producer gathers K/V with cp.async for paged prefill only, in "
                      "8-row segments (at most 32 a tile)", "copy dense K/V with via=tma, or use a BLOCK_N that is "
                      "a multiple of 8 and at most 256")
    extents = [scope.cpp(g.extent) for g in k.grid]
    persistent = tiles == "persistent"
    # tiles=persistent: the TileScheduler is declared in each role where it is used (sm90_plan.tile_head)
    grid_args = ", ".join(extents) if persistent else ""
    tiles_args = f"{grid_args}, p.max_seqlen_k, {d} * 2, p.causal" if persistent else ""
    split_mode = kernel_split(k, params)
    split, stream = split_mode != "none", split_mode == "stream"
    if split and not persistent:
        raise refuse(k, f"split={split_mode} splits the tail of a persistent kernel's tile walk",
                     "add `tiles=persistent`")
    if split and [print_expr(g.extent) for g in k.grid] != ["cdiv(max_seq_q, BLOCK_M)", "heads_q", "batch"]:
        # split.cuh's SplitTail::walk / StreamTail::walk rebuild the walk from the parameters with this grid
        raise refuse(k, f"split={split_mode} is lowered for the grid (m_block : cdiv(max_seq_q, BLOCK_M), "
                      "q_head : heads_q, b : batch)", "use that grid, or drop split=")
    # split=tail, the producer's scheduler: the grid's CTAs and the host's parts per tail tile; none with a
    # sliding window (its tiles differ) or a grid past the packed tile word (the consumers' TileScheduler,
    # which decodes a tile number, does not split: one that did pushed the D 256 KV loop's GMMA
    # descriptors out of uniform registers)
    split_args = (f", qm::window_of(p) || !qm::sm90::TileWord({grid_args}).packed ? 0 : "
                  "qm::sm90::opaque(gridDim.x), qm::sm90::opaque(p.num_splits)") if split_mode == "tail" else ""
    # split=stream: whether a launch shares the steps out (StreamClaims' `on`), on the tail's conditions
    stream_on = (f"qm::sm90::opaque(p.num_splits) > 1 && !p.causal && !qm::window_of(p) && "
                 f"qm::sm90::TileWord({grid_args}).packed") if stream else ""
    store_via = copy_via(plan.store, params)
    if store_via not in ("stg", "tma"):
        raise refuse(plan.store, f"O is stored from registers with via=stg or via=tma, not via={store_via}",
                      "write `with via=stg` (or `via=tma`: through a shared tile and bulk tensor stores)")
    shape = Shape(bm, bn, wgs, persistent, spec.op == "paged_prefill", pingpong,
                   overlap_on(plan.consumer, params), gather, tiles_args, grid_args,
                   softmax_pinned(plan.consumer, params), gemms_paired(plan.consumer, params),
                   carry_on(plan.consumer, params), store_via == "tma", split, split_args,
                   idle_skipped(plan.consumer, params), stream_on, rescale_lazy(plan.consumer, params))
    if shape.idle and (shape.carry or (shape.paged and not shape.gather)):
        raise refuse(plan.consumer, "idle=skip is lowered without carry=pv, for dense prefill and the paged gather",
                      "drop idle= here")
    if shape.split and (shape.paged or shape.carry or shape.store_o_tma):
        raise refuse(k, f"split={split_mode} is lowered for dense prefill storing O from registers, without "
                      "carry=pv", "drop split= here")
    if shape.carry and shape.paged and not shape.gather:
        raise refuse(plan.consumer, "carry=pv is lowered for dense prefill and the paged gather (their producers "
                      "load a KV tile for a tile with none, qm::sm90::kv_end)", "drop carry= here")
    if shape.carry and not (shape.persistent and shape.overlap):
        raise refuse(plan.consumer, "carry=pv hands a tile's last O += P V to the CTA's next tile, in the "
                      "overlapped loop", "use it with tiles=persistent and overlap=softmax or pinned")
    if shape.store_o_tma and (shape.carry or shape.paged):
        raise refuse(plan.store, "O's store via=tma is lowered for dense prefill without carry=pv", "use via=stg here")
    threads = WARPGROUP_THREADS * (wgs + 1)
    smem = smem_bytes(d, bm, bn, stages, shape.store_o_tma)
    # Traits' trailing switches STORE_O_TMA, LAZY_RESCALE (default 0), written up to the last one that is on
    extra = [int(shape.store_o_tma), int(shape.lazy_rescale)]
    while extra and not extra[-1]:
        extra.pop()
    kt = (f"qm::sm90::Traits<{_CPP_DTYPE[spec.dtype]}, {d}, {bm}, {bn}, {stages}, {wgs}, {p_regs}, {c_regs}"
          + "".join(f", {v}" for v in extra) + ">")
    if shape.persistent and shape.paged and not gather:
        raise refuse(k, "tiles=persistent claims tiles from one producer thread; the page-per-box producer runs a "
                      "whole warp", "use tiles=grid, or gather the pages (via=cp.async)")
    counter = ", int* const tile_counter" if shape.persistent else ""
    out = [f"// ---- kernel {k.name} (TL line {k.span.line}): {threads} threads = 1 producer + {wgs} consumer warpgroups",
           f"extern \"C\" __global__ void __launch_bounds__({threads}, 1) {name}(const qm::AttnParams p, "
           f"const __grid_constant__ qm::sm90::TmaDescs tma{counter}) {{",
           f"  using KT = {kt};",
           f"  static_assert(qm::sm90::smem_bytes<KT>() == {smem}, \"launch metadata and building blocks disagree on "
           "shared memory\");"]
    if stream:
        block = stream_meta(bm, bn, d, wgs)["part_bytes"]
        out.append(f"  static_assert(qm::sm90::StreamTail<KT>::kBlockBytes == {block}, \"the workspace's part blocks: "
                   "launch metadata and building blocks disagree\");")
    shared = ", ".join(f"{a.name}" + (f" x {ast.option(a.options, 'stages')}" if ast.option(a.options, "stages") else "")
                       for a in plan.shared.values())
    out += [f"  // Allocate {shared} (shared, 128-byte swizzled) and their stage barriers",
            "  extern __shared__ char smem_raw[];",
            "  auto& sm = qm::sm90::shared_storage<KT>(smem_raw);",
            "  qm::sm90::init_barriers<KT" + (", qm::sm90::kWarpgroupThreads" if gather else "") + ">(sm);"
            + ("  // K/V stages: 128 producer arrivals" if gather else "")]
    grid = "grid (" + ", ".join(f"{g.name} : {print_expr(g.extent)}" for g in k.grid) + ")"
    if shape.persistent:
        out += [f"  // {grid} with tiles=persistent: one CTA per SM; its producer claims tiles from tile_counter"]
    else:
        out += [f"  // {grid}: one CTA per tile",
                "  const qm::sm90::GridTile tiles;"]
    out += emit_producer(plan, scope, shape)
    out += emit_consumer(plan, scope, spec, shape)
    out.append("}")
    formulas = [host_formula(g.extent, params) for g in k.grid]
    if shape.persistent:
        launch_grid = [f"min(num_sms, ({formulas[0]}) * ({formulas[1]}) * ({formulas[2]}))"]
    else:
        launch_grid = formulas
    # O: a warpgroup's 64 rows a box; a gathering kernel reads K and V without maps
    maps = {"q": bm, **({} if gather else {"k": bn, "v": bn}), **({"o": 64} if shape.store_o_tma else {})}
    abi = SPLIT_ABI if shape.split else RETIRING_ABI if shape.retires_counter else KERNEL_ABI
    entry = Sm90Entry(name, k.name, "attn", threads, launch_grid, smem, tensor_maps=maps, abi=abi,
                      split_tail=stream_meta(bm, bn, d, wgs) if stream else
                      {**split_tail_meta(bm, bn, d, wgs), "max_parts": split_max_parts(k, params)} if shape.split else {})
    return out, entry
