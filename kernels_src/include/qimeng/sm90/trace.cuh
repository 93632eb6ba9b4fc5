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

// A moment, taken before its row is known (a persistent kernel's consumers learn their tile's
// coordinates only after taking it) and stored with trace_put once it is.
struct TraceStamp {
  uint64_t ns;
  uint64_t clock;
};
__device__ __forceinline__ TraceStamp trace_stamp() {
  TraceStamp t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t.ns));
  t.clock = clock64();
  return t;
}

// a persistent kernel's row for a tile: its place in the (m_block, head, batch) grid
template <class Tile, class Tiles>
__device__ __forceinline__ int trace_row(const Tile& tile, const Tiles& tiles) {
  return tile.m_block + tiles.m_blocks * (tile.head + tiles.heads * tile.batch);
}

// row: the tile's row under tiles=persistent (trace_row); < 0: this CTA's linear block index (one
// tile per CTA). Slots 0 and 2 also record the CTA and the SM.
__device__ __forceinline__ void trace_put(int slot, int row, const TraceStamp& t) {
  const unsigned cta = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned r = row >= 0 ? static_cast<unsigned>(row) : cta;
  if (r >= kTraceCtas) return;
  qm_trace[r][slot] = t.ns;
  qm_trace[r][kClockBase + slot] = t.clock;
  if (slot == 0 || slot == 2) {
    uint32_t smid;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(smid));
    qm_trace[r][kSmidSlot] = smid;
    qm_trace[r][kCtaSlot] = cta;
  }
}
__device__ __forceinline__ void trace_mark(int slot, int row = -1) { trace_put(slot, row, trace_stamp()); }

}  // namespace qm::sm90
