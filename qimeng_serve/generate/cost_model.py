"""The planner's cost model: the predicted time of a TL program on its target, without a GPU.

It ranks candidates; measurement (`--tune`) has the last word. Every term is named below with
where its constant comes from; docs/planner.md explains the model and docs/perf-notes.md holds
the measurements it is fit to (H200 tile sweep, decode split sweep, decode profile).

Per KV-loop iteration of one CTA (one K/V tile), in SM clock cycles:
  prefill  R    = max(t_tensor, t_smem, t_softmax) + OVERLAP * (the other two) + ITER_OVERHEAD
             t_tensor  = 4*BM*BN*D / MMA rate;  t_smem = operand and tile bytes / 128 B per clock
             (every warp reads the whole K and V tile, and Q too unless it stays in registers);
             t_softmax = exp2 on the SFU + the softmax's ALU work + the accumulator rescale
  decode   R_own = instructions per warp per tile * CPI_DECODE (issue-bound: docs/perf-notes.md,
             Nsight Compute on the split kernel); the paged gather costs COPY_INSTR per 16 bytes
  latency  what one CTA cannot hide by itself: barriers, and the memory latency left after the
           overlap its schedule gives (ping-pong: half an iteration; pipeline=N: N-1 more)
  T_iter   = smoothmax(R, HBM bytes / bandwidth share, (R_own + latency) / CTAs per SM)
Occupancy (CTAs per SM) comes from registers (the checker's estimate + the ptxas offset the notes
measured), shared memory (the lowered launch's bytes), warps and CTA limits. A CTA's time is its
iterations (the KV tiles it really visits, from the program's own loop bounds) plus a fixed
prologue/epilogue; CTAs are scheduled in waves over SMs x CTAs-per-SM slots. Registers beyond what
ptxas absorbed in the measurements cost a spill penalty.

The score is the geometric mean of the predicted times over a representative workload (the
shapes of the tile sweep / decode bench), so that every case weighs the same in relative terms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from qimeng_serve.generate.features import (
    KernelFeatures,
    ProgramFeatures,
    program_features,
)
from qimeng_serve.lower.emit import CudaSource
from qimeng_serve.spec import AttentionSpec
from qimeng_serve.targets import Target
from qimeng_serve.tl import ast

COST_MODEL_VERSION = "1"


# ---------------------------------------------------------------- devices
@dataclass(frozen=True)
class Device:
    """The GPU the model times a target on: its published figures."""

    name: str
    sms: int
    clock_ghz: float
    mma_flops: int  # f16/bf16 mma.sync FLOPs per clock per SM with f32 accumulation
    fp32_lanes: int  # FP32 ALU lanes per SM
    hbm_gbps: float
    max_warps: int  # resident warps per SM
    max_ctas: int  # resident CTAs per SM
    mem_latency: int  # clocks, a global load under load

    def hbm_bytes_per_clock_per_sm(self) -> float:
        return self.hbm_gbps * 1e9 / (self.sms * self.clock_ghz * 1e9)


# sm_90 is timed as the H200 the perf notes measured on (the H100 has the same SMs and clocks,
# 4.8 -> 3.35 TB/s of HBM). Compile-only targets get their flagship so `generate` works there too.
DEVICES: dict[str, Device] = {
    "sm_75": Device("Tesla T4", 40, 1.59, 1024, 64, 320, 32, 16, 500),
    "sm_80": Device("A100-SXM4-80GB", 108, 1.41, 2048, 64, 2039, 64, 32, 600),
    "sm_86": Device("A10", 72, 1.695, 1024, 128, 600, 48, 16, 600),
    "sm_89": Device("L4", 58, 2.04, 1024, 128, 300, 48, 24, 600),
    "sm_90": Device("H200 (H100 SXM figures, 4.8 TB/s)", 132, 1.83, 2048, 128, 4800, 64, 32, 700),
    "sm_100": Device("B200", 148, 1.85, 2048, 128, 8000, 64, 32, 700),
    "sm_120": Device("GeForce RTX 5090", 170, 2.4, 1024, 128, 1790, 48, 24, 600),
}


# ---------------------------------------------------------------- constants (each: what it is fit to)
SMEM_BYTES_PER_CLOCK = 128  # shared-memory bandwidth per SM, every arch here
SFU_PER_CLOCK = 16  # exp2 (MUFU.EX2) per SM per clock
SOFTMAX_ALU_OPS = 6  # per score: scale, max, subtract, sum, convert, mask select
OVERLAP = 0.5  # the non-dominant pipes are half hidden: fits D=64 128x64 w4 at 1.00x vs 128x32 w4 at 0.80x
ITER_OVERHEAD = 180  # clocks of issue per iteration (loop, address, barrier arrival): same fit
SYNC_LATENCY = 300  # clocks per iteration a lone CTA cannot hide: 8-warp tiles (1 CTA/SM) lose 10-30% (sweep)
PTXAS_OFFSET = 65  # ptxas registers - checker estimate: 49-73 over the six prefill variants (perf notes)
# decode tiles (16 rows, warps split the keys): 83 at 16 keys per warp (ptxas 164-168 vs 81), growing with the
# keys each warp holds (128-key tiles, 32 per warp: ptxas 238 vs 89; registry-sweep, sm_90)
DECODE_PTXAS_OFFSET, DECODE_OFFSET_PER_KEY = 83, 4.4
SPILL_TOLERANCE = 24  # registers over 255 that ptxas absorbed at no measurable cost (D=128 128x32 w4: 22 over)
SPILL_COST = 0.02  # per register beyond the tolerance: spills inside the loop (D=128 128x64 w4)
MMA_K8_ON_K16 = 1.15  # m16n8k8 where m16n8k16 exists: twice the MMA instructions
L2_REUSE = 2.5  # prefill re-reads K/V from L2: its bandwidth over HBM's
COPY_INSTR = 12  # decode: SASS per 16-byte chunk of the paged gather (823 per 64-key tile at D=128, sm_90)
CPI_DECODE = 5.75  # warp cycles per issued instruction in the decode loop (Nsight Compute, H200)
DECODE_FIXED_INSTR = 450  # per tile and warp: loop, waits, barriers, row reductions (fit: v0.5, 128- vs 64-key tiles)
BARRIER_SKEW = 0.06  # of a decode iteration, per barrier: pipeline=2 has one, the ping-pong two (v0.2: +5-8%)
DECODE_LATENCY = 2000  # clocks: a paged K/V tile's load under a saturated memory system
SMOOTH_P = 4  # soft corner of the roofline: near the bandwidth roof, latency still shows
LAUNCH_US = 2.0  # per kernel launch
RESERVED_SMEM = 1024  # per CTA on sm_80+ (the driver's reservation)


# ---------------------------------------------------------------- workloads
@dataclass(frozen=True)
class Case:
    label: str
    batch: int
    heads_q: int
    heads_kv: int
    seqlen_q: int
    seqlen_k: int
    causal: bool

    def work(self, op: str, d: int) -> float:
        """FLOPs (prefill, halved when causal) or K+V bytes (decode)."""
        if op == "paged_decode":
            return 2.0 * self.batch * self.heads_kv * self.seqlen_k * d * 2
        return 4.0 * self.batch * self.heads_q * self.seqlen_q * self.seqlen_k * d / (2 if self.causal else 1)


def workload(spec: AttentionSpec) -> list[Case]:
    """The shapes a program is ranked on: the perf notes' tile sweep (16k tokens, H*D = 2048, L = 4k
    and 16k, full and causal) and decode bench (B 8, 8 KV heads, 4 query heads each, 8k-128k)."""
    d = spec.head_dim
    if spec.op == "paged_decode":
        group = min(spec.gqa_group, 4)
        return [Case(f"ctx={ctx // 1024}k", 8, 8 * group, 8, spec.decode_query_len, ctx, True)
                for ctx in (8192, 32768, 131072)]
    heads = 2048 // d
    heads_kv = heads // spec.gqa_group if heads % spec.gqa_group == 0 else heads
    return [Case(f"L={length // 1024}k {'causal' if causal else 'full'}", 16384 // length, heads, heads_kv, length,
                 length, causal)
            for length in (4096, 16384) for causal in (False, True)]


# ---------------------------------------------------------------- results
@dataclass(frozen=True)
class CaseEstimate:
    label: str
    time_us: float
    rate: float  # TFLOPS (prefill) or GB/s of K+V (decode)


@dataclass(frozen=True)
class Estimate:
    score: float  # geometric mean of the predicted case times, microseconds; inf when it cannot run
    cases: tuple[CaseEstimate, ...] = ()
    ctas_per_sm: int = 0
    registers: int = 0  # predicted ptxas registers per thread (capped at 255)
    spill_regs: int = 0  # predicted registers over 255
    smem_bytes: int = 0
    bound: str = ""  # the term that limits the largest case: tensor, shared, softmax, issue, latency, memory
    device: str = ""
    reason: str = ""  # why it cannot run (score inf)
    details: dict = field(default_factory=dict)

    @property
    def feasible(self) -> bool:
        return math.isfinite(self.score)

    def summary(self) -> str:
        if not self.feasible:
            return self.reason
        unit = "GB/s" if self.cases and self.cases[0].label.startswith("ctx") else "TFLOPS"
        rates = " ".join(f"{c.label} {c.rate:.0f}" for c in self.cases)
        spill = f", ~{self.spill_regs} regs over 255" if self.spill_regs else ""
        return (f"{self.score:.0f} us (geo-mean); {unit}: {rates}; {self.ctas_per_sm} CTA/SM, ~{self.registers} regs"
                f"{spill}, {self.smem_bytes / 1024:.0f} KB smem, {self.bound}-bound on {self.device}")

    def to_dict(self) -> dict:
        return {"score_us": round(self.score, 3) if self.feasible else None, "device": self.device,
                "ctas_per_sm": self.ctas_per_sm, "registers": self.registers, "spill_regs": self.spill_regs,
                "smem_bytes": self.smem_bytes, "bound": self.bound, "reason": self.reason,
                "cases": [{"label": c.label, "time_us": round(c.time_us, 3), "rate": round(c.rate, 1)} for c in self.cases]}


# ---------------------------------------------------------------- the model
@dataclass(frozen=True)
class _Iteration:
    """One CTA's KV-loop iteration, in clocks."""

    resources: float  # SM time it occupies (tensor / shared / SFU pipes, issue)
    own: float  # its critical path when the CTA ran alone
    latency: float  # what the CTA itself cannot hide
    memory: float  # HBM (or L2) time of its bytes at this SM's bandwidth share
    fixed: float  # per-CTA prologue and epilogue
    pipes: dict  # the named parts of `resources`, for `bound`


def estimate(program: ast.Program, target: Target, spec: AttentionSpec, source: CudaSource | None = None,
             features: ProgramFeatures | None = None) -> Estimate:
    """Predicted time of program on target's representative GPU over the workload of spec."""
    device = DEVICES[target.arch]
    f = features or program_features(program, target, spec, source)
    k = f.kernel
    decode = f.op == "paged_decode"
    regs, spill = _registers(k, decode, spec.head_dim)
    smem = k.smem_bytes + (RESERVED_SMEM if target.cp_async else 0)
    ctas = _ctas_per_sm(k, regs, smem, device, target)
    if ctas == 0:
        return Estimate(math.inf, registers=regs, spill_regs=spill, smem_bytes=k.smem_bytes, device=device.name,
                        reason=f"a CTA does not fit on one SM of {target.arch} ({regs} regs x {k.warps * 32} threads, "
                               f"{smem} B shared memory)")
    it = _decode_iteration(k, device, spec) if decode else _prefill_iteration(k, device, target, spec)
    penalty = 1.0 + SPILL_COST * max(0, spill - SPILL_TOLERANCE)
    cases = []
    for case in workload(spec):
        t = _case_time(f, it, case, device, ctas, penalty, spec)
        cases.append(CaseEstimate(case.label, t, case.work(f.op, spec.head_dim) / (t * 1e-6) / (1e9 if decode else 1e12)))
    score = math.exp(sum(math.log(c.time_us) for c in cases) / len(cases))
    pipe = max(it.pipes, key=it.pipes.get)
    roofs = {pipe: it.resources, "memory": it.memory, "latency": (it.own + it.latency) / ctas}
    bound = max(roofs, key=roofs.get)
    return Estimate(score, tuple(cases), ctas, regs, spill, k.smem_bytes, bound, device.name,
                    details={name: round(v, 1) for name, v in {**it.pipes, **roofs}.items()})


def _registers(k: KernelFeatures, decode: bool, d: int) -> tuple[int, int]:
    """(registers ptxas would allocate, capped at 255; registers over 255)."""
    if decode and _arrangement(k)[1] > 1:
        predicted = k.regs_estimate + DECODE_PTXAS_OFFSET + DECODE_OFFSET_PER_KEY * (k.block_n // k.warps - 16)
    else:
        predicted = k.regs_estimate + PTXAS_OFFSET
    predicted = round(predicted)
    if k.copy_path == "ldg" and _passes_kv(k, d) <= 8:
        predicted += 4 * _passes_kv(k, d)  # the next K/V tile waits in registers (no cp.async)
    return min(255, predicted), max(0, predicted - 255)


def _passes_kv(k: KernelFeatures, d: int) -> int:
    """16-byte copy passes per K/V tile and thread (the building blocks' kPassesKV)."""
    return max(1, k.block_n * d * 2 // 16 // (32 * k.warps))


def _ctas_per_sm(k: KernelFeatures, regs: int, smem: int, device: Device, target: Target) -> int:
    per_cta_regs = math.ceil(regs / 8) * 8 * 32 * k.warps  # allocation granularity: 8 registers per thread
    limits = [device.max_ctas, device.max_warps // k.warps, target.regs_per_sm // per_cta_regs,
              target.smem_per_sm // max(1, smem)]
    if smem > target.smem_optin_max:
        return 0
    return max(0, min(limits))


def _arrangement(k: KernelFeatures) -> tuple[int, int]:
    """(warps along the query rows, warps along the KV columns), as the building blocks split a tile."""
    if k.block_m == 16 and k.warps > 1:
        return 1, k.warps
    return k.warps, 1


def _prefill_iteration(k: KernelFeatures, device: Device, target: Target, spec: AttentionSpec) -> _Iteration:
    bm, bn, w, d = k.block_m, k.block_n, k.warps, spec.head_dim
    wm, wn = _arrangement(k)
    tensor = 4 * bm * bn * d / device.mma_flops
    if k.mma == "m16n8k8" and "m16n8k16" in target.mma_shapes(spec.dtype):
        tensor *= MMA_K8_ON_K16
    # every warp along M reads the whole K and V tiles; Q is re-read per tile unless in registers
    smem_bytes = 2 * wm * bn * d * 2 + 2 * bn * d * 2 + (0 if k.q_in_registers else wn * bm * d * 2)
    shared = smem_bytes / SMEM_BYTES_PER_CLOCK
    softmax = bm * bn / SFU_PER_CLOCK + (bm * bn * SOFTMAX_ALU_OPS + bm * d) / device.fp32_lanes
    pipes = sorted((tensor, shared, softmax))
    resources = pipes[2] + OVERLAP * (pipes[0] + pipes[1]) + ITER_OVERHEAD
    own = resources * 4 / min(w, 4)  # a CTA's warps spread over at most the 4 schedulers
    latency = SYNC_LATENCY + _exposed(k, device.mem_latency, own, 0.5)
    if k.copy_path == "ldg" and _passes_kv(k, d) > 8:
        latency += 2 * device.mem_latency  # copied synchronously: load batch, then store batch
    per_sm = device.hbm_bytes_per_clock_per_sm()
    memory = 2 * bn * d * 2 / (per_sm * L2_REUSE)
    fixed = device.mem_latency + 2 * bm * d * 2 / per_sm  # Q in, O out
    return _Iteration(resources, own, latency, memory, fixed, {"tensor": tensor, "shared": shared, "softmax": softmax})


def _decode_iteration(k: KernelFeatures, device: Device, spec: AttentionSpec) -> _Iteration:
    bm, bn, w, d = k.block_m, k.block_n, k.warps, spec.head_dim
    wm, wn = _arrangement(k)
    rows, cols = bm // wm, bn // wn  # one warp's share of the score tile
    k_step = 8 if k.mma == "m16n8k8" else 16
    chunks = 2 * bn * d * 2 / 16 / (32 * w)
    copy = chunks * (COPY_INSTR + (1 if k.copy_path == "ldg" else 0))
    mmas = (rows // 16) * (cols // 8) * (d // k_step) + (rows // 16) * (d // 8) * max(1, cols // k_step)
    q_reload = 0 if k.q_in_registers else (rows // 16) * (d // 16) * max(1, cols // 8) // 2
    softmax = rows * cols / 32 * SOFTMAX_ALU_OPS + rows * d / 32
    instructions = copy + 1.5 * mmas + q_reload + softmax + DECODE_FIXED_INSTR
    own = instructions * CPI_DECODE
    tensor = 4 * bm * bn * d / device.mma_flops
    smem_bytes = 2 * wm * bn * d * 2 + 2 * bn * d * 2 + (0 if k.q_in_registers else wn * bm * d * 2)
    shared = smem_bytes / SMEM_BYTES_PER_CLOCK
    issue = w * instructions / 4  # an SM issues at most 4 warp-instructions per clock
    barriers = 1 if k.pairs > 1 else 2
    latency = barriers * BARRIER_SKEW * own + _exposed(k, DECODE_LATENCY, own, 0.4)
    per_sm = device.hbm_bytes_per_clock_per_sm()
    memory = 2 * bn * d * 2 / per_sm
    merge = (rows * d / 32 * 3 + 40) * CPI_DECODE if wn > 1 else 0  # warps merge their softmax states
    fixed = DECODE_LATENCY + merge + device.mem_latency  # Q in; O_part and LSE out
    return _Iteration(max(tensor, shared, issue), own, latency, memory, fixed,
                      {"tensor": tensor, "shared": shared, "issue": issue})


def _exposed(k: KernelFeatures, mem_latency: float, own: float, pingpong_window: float) -> float:
    """Memory latency left after the overlap the loop's schedule gives the next tile's copy."""
    if k.pairs > 1:
        window = (k.pairs - 1 + pingpong_window) * own
    elif k.schedule == "pingpong":
        window = pingpong_window * own
    else:
        window = 0.0
    return max(0.0, mem_latency - window)


def _per_iteration(it: _Iteration, ctas: int) -> float:
    """SM clocks per CTA-iteration with `ctas` CTAs sharing the SM: a soft max of the roofs."""
    terms = (it.resources, it.memory, (it.own + it.latency) / ctas)
    return sum(t ** SMOOTH_P for t in terms) ** (1 / SMOOTH_P)


def _case_time(f: ProgramFeatures, it: _Iteration, case: Case, device: Device, ctas: int, penalty: float,
               spec: AttentionSpec) -> float:
    """Microseconds of the whole case: waves of CTAs over SMs x CTAs-per-SM slots (+ decode's combine)."""
    trips, per_trip_ctas = _trips(f, case)
    n_ctas = len(trips) * per_trip_ctas
    mean_trips = sum(trips) / len(trips)

    def duration(c: int, n: float) -> float:
        return n * c * _per_iteration(it, c) * penalty + it.fixed

    slots = device.sms * ctas
    full, rest = divmod(n_ctas, slots)
    clocks = full * duration(ctas, mean_trips)
    if rest:
        clocks += duration(math.ceil(rest / device.sms), mean_trips)
    clocks = max(clocks, duration(min(ctas, math.ceil(n_ctas / device.sms)), max(trips)))
    us = clocks / (device.clock_ghz * 1e3) + LAUNCH_US
    if f.op == "paged_decode":  # the combine pass reads every split's partial output
        splits = math.ceil(case.seqlen_k / f.split_kv)
        combine_bytes = case.batch * case.heads_q * case.seqlen_q * (splits * (spec.head_dim + 1) * 4 + spec.head_dim * 2)
        us += LAUNCH_US + combine_bytes / (device.hbm_gbps * 1e3)
    return us


_TRIPS: dict[tuple, tuple[list[int], int]] = {}  # (bounds key, case) -> _trips(...): candidates share bounds


def _trips(f: ProgramFeatures, case: Case) -> tuple[list[int], int]:
    key = (f.kernel.bounds_key, f.kernel.grid, case)
    if key not in _TRIPS:
        if len(_TRIPS) > 4096:
            _TRIPS.clear()
        _TRIPS[key] = _count_trips(f, case)
    return _TRIPS[key]


def _count_trips(f: ProgramFeatures, case: Case) -> tuple[list[int], int]:
    """KV tiles visited by the CTAs of one (head, sequence), and how many such CTA sets there are."""
    k = f.kernel
    names = {"batch": case.batch, "heads_q": case.heads_q, "heads_kv": case.heads_kv, "max_seq_q": case.seqlen_q,
             "max_seq_k": case.seqlen_k, "seqlen_q": [case.seqlen_q] * case.batch,
             "seqlen_k": [case.seqlen_k] * case.batch, "CAUSAL": int(case.causal), "WINDOW": 0,
             "GROUP": case.heads_q // case.heads_kv}
    first = k.grid[0]
    heads = case.heads_kv if "kv_head" in k.grid else case.heads_q
    if f.op == "paged_decode":
        extent = math.ceil(case.seqlen_k / f.split_kv)
    else:
        extent = math.ceil(case.seqlen_q / k.block_m)
    trips = []
    for i in range(extent):
        point = {**names, first: i, "b": 0, "q_head": 0, "kv_head": 0}
        lo, hi = k.bounds(point)
        trips.append(max(0, hi - lo))
    return trips, heads * case.batch
