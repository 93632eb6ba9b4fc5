// qimeng/sm90/trace.cuh -- timestamps of chosen points of each CTA, for a diagnostic build only
// (scripts/sm90_trace.py inserts the marks into a generated kernel; shipped kernels never include
// this header). Slot s of a row (a CTA, or a tile of a persistent kernel) holds %globaltimer (ns,
// shared by every SM) at mark s, and slot kClockBase + s the SM's own clock64 at the same mark.
#pragma once
#include <cstdint>

namespace qm::sm90 {
constexpr int kTraceCtas = 4096;  // trace rows: CTAs (one tile each) or tiles (tiles=persistent)
constexpr int kTraceSlots = 32;
constexpr int kClockBase = 16;
constexpr int kCtaSlot = 14;   // the CTA (linear block index) that ran the row's tile
constexpr int kSmidSlot = 15;  // the SM it ran on
}  // namespace qm::sm90

// defined here (one translation unit per kernel), unmangled so that the host finds it with
// cuModuleGetGlobal(module, "qm_trace")
extern "C" {
__device__ unsigned long long qm_trace[qm::sm90::kTraceCtas][qm::sm90::kTraceSlots];
}

namespace qm::sm90 {

// row: the tile's number under tiles=persistent; < 0: this CTA's linear block index (one tile per CTA).
// Slots 0 and 2 also record the CTA and the SM.
__device__ __forceinline__ void trace_mark(int slot, int row = -1) {
  const unsigned cta = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned r = row >= 0 ? static_cast<unsigned>(row) : cta;
  if (r >= kTraceCtas) return;
  uint64_t ns;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(ns));
  qm_trace[r][slot] = ns;
  qm_trace[r][kClockBase + slot] = clock64();
  if (slot == 0 || slot == 2) {
    uint32_t smid;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(smid));
    qm_trace[r][kSmidSlot] = smid;
    qm_trace[r][kCtaSlot] = cta;
  }
}

}  // namespace qm::sm90
