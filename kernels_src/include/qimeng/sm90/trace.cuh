// qimeng/sm90/trace.cuh -- timestamps of chosen points of each CTA, for a diagnostic build only
// (scripts/sm90_trace.py inserts the marks into a generated kernel; shipped kernels never include
// this header). Slot s of CTA c holds %globaltimer (ns, shared by every SM) at mark s, and slot
// kClockBase + s the SM's own clock64 at the same mark, for intervals inside one CTA.
#pragma once
#include <cstdint>

namespace qm::sm90 {
constexpr int kTraceCtas = 4096;  // CTAs past this (linear block index) are not traced
constexpr int kTraceSlots = 32;
constexpr int kClockBase = 16;
constexpr int kSmidSlot = 15;
}  // namespace qm::sm90

// defined here (one translation unit per kernel), unmangled so that the host finds it with
// cuModuleGetGlobal(module, "qm_trace")
extern "C" {
__device__ unsigned long long qm_trace[qm::sm90::kTraceCtas][qm::sm90::kTraceSlots];
}

namespace qm::sm90 {

__device__ __forceinline__ void trace_mark(int slot) {
  const unsigned cta = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  if (cta >= kTraceCtas) return;
  uint64_t ns, smid;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(ns));
  qm_trace[cta][slot] = ns;
  qm_trace[cta][kClockBase + slot] = clock64();
  if (slot == 0) {
    uint32_t id;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(id));
    smid = id;
    qm_trace[cta][kSmidSlot] = smid;
  }
}

}  // namespace qm::sm90
