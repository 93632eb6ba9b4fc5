// qimeng/sm90/pipeline.cuh -- the stage barriers between the producer and the consumer warpgroups:
// TL's `Copy sK <- K[...] with via=tma` in the producer role, and `Wait sK` / `Release sK` in the
// consumer role (docs/tl.md "Hopper").
//
// Per stage of a ring, two mbarriers: full (1 arrival, the producer's, plus the TMA's transaction
// bytes) and empty (one arrival per consumer thread once its GMMA read the stage). A barrier's phase
// flips each time it completes; the producer waits on empty with the opposite parity, so its first
// pass over the ring does not wait (a fresh barrier counts its "previous" phase as complete).
#pragma once
#include <cutlass/arch/barrier.h>
#include <cutlass/arch/reg_reconfig.h>
#include "tma.cuh"
#include "../params.cuh"

namespace qm::sm90 {

using TxBarrier = cutlass::arch::ClusterTransactionBarrier;
using Barrier = cutlass::arch::ClusterBarrier;

// A position in a ring of STAGES slots: the slot and the parity of its barriers' current phase.
template <int STAGES>
struct PipeState {
  int stage = 0;
  uint32_t phase = 0;
  __device__ __forceinline__ void advance() {
    if (++stage == STAGES) {
      stage = 0;
      phase ^= 1u;
    }
  }
};

// One thread initialises every barrier; the fence makes them visible to the async (TMA) proxy and
// the CTA barrier to every thread before the roles split.
// KV_ARRIVALS: who completes a K/V stage: 1 (the TMA-issuing thread, with the transaction bytes) or
// the producer warpgroup's 128 threads (cp.async gathers, each arriving once its copies landed).
template <class KT, int KV_ARRIVALS = 1>
__device__ __forceinline__ void init_barriers(SharedStorage<KT>& sm) {
  if (threadIdx.x == 0) {
    TxBarrier::init(&sm.q_full, 1);
    Barrier::init(&sm.q_empty, KT::kConsumerThreads);
    CUTE_UNROLL
    for (int s = 0; s < KT::kStages; ++s) {
      TxBarrier::init(&sm.k_full[s], KV_ARRIVALS);
      TxBarrier::init(&sm.v_full[s], KV_ARRIVALS);
      Barrier::init(&sm.k_empty[s], KT::kConsumerThreads);
      Barrier::init(&sm.v_empty[s], KT::kConsumerThreads);
    }
    for (int s = 0; s < 2; ++s) {  // tiles=persistent: the tile-number slots (scheduler.cuh)
      Barrier::init(&sm.tile_full[s], 1);
      Barrier::init(&sm.tile_empty[s], KT::kConsumerThreads);
    }
    cutlass::arch::fence_barrier_init();
  }
  __syncthreads();
}

// Warp-uniform role of this thread's warpgroup: 0 is the producer.
__device__ __forceinline__ int warpgroup_index() {
  return __shfl_sync(0xffffffff, static_cast<int>(threadIdx.x) / kWarpgroupThreads, 0);
}

// setmaxnreg: the producer gives registers back, the consumers take them (whole warpgroups).
template <class KT>
__device__ __forceinline__ void producer_registers() {
  cutlass::arch::warpgroup_reg_dealloc<KT::kProducerRegs>();
}
template <class KT>
__device__ __forceinline__ void consumer_registers() {
  cutlass::arch::warpgroup_reg_alloc<KT::kConsumerRegs>();
}

// ---- producer: one elected thread issues every copy
__device__ __forceinline__ bool elected_producer() { return threadIdx.x == 0; }

// Copy sQ <- Q[b, h, row0 : row0 + BLOCK_M] with via=tma, for the CTA's tile number `iter` (0, 1, ...
// under tiles=persistent): once the consumers released the previous tile's Q.
template <class KT>
__device__ __forceinline__ void produce_q(const TmaDescs& tma, SharedStorage<KT>& sm, int row0, int h, int b,
                                          int iter = 0) {
  Barrier::wait(&sm.q_empty, (static_cast<uint32_t>(iter) & 1u) ^ 1u);
  TxBarrier::arrive_and_expect_tx(&sm.q_full, KT::kQBytes);
  tma_load_tile<KT::kBlockM, KT::kHeadDim>(&tma.q, &sm.q_full, sm.q, row0, h, b);
}

// tiles=persistent: the next tile's Q into L2 before waiting for the consumers to release sQ, so
// that its load reads L2, not HBM (measured: no change either way; docs/perf-notes.md "Hopper path,
// fourth run" 3-3c)
template <class KT>
__device__ __forceinline__ void prefetch_q(const TmaDescs& tma, int row0, int h, int b) {
  tma_prefetch_tile<KT::kBlockM, KT::kHeadDim>(&tma.q, row0, h, b);
}

// Copy sK <- K[b, h, row0 : row0 + BLOCK_N] with via=tma into the ring slot ps.stage, once the
// consumers released it (the empty barrier), completing on the slot's full barrier.
template <class KT, class T>
__device__ __forceinline__ void produce_kv(const CUtensorMap* map, uint64_t* full, uint64_t* empty,
                                           T (*tiles)[KT::kBlockN * KT::kHeadDim], PipeState<KT::kStages> ps,
                                           int row0, int h, int b) {
  Barrier::wait(&empty[ps.stage], ps.phase ^ 1u);
  TxBarrier::arrive_and_expect_tx(&full[ps.stage], KT::kKVBytes);
  tma_load_tile<KT::kBlockN, KT::kHeadDim>(map, &full[ps.stage], tiles[ps.stage], row0, h, b);
}

// Where a query tile's rows are in Q's tensor map: a dense batch maps (D, positions, heads, batch);
// a varlen batch (cu_seqlens_q set) maps [tokens, heads, D] as one sequence, rows from its first token.
__device__ __forceinline__ int q_row(const AttnParams& p, int b, int row0) {
  return p.cu_seqlens_q ? p.cu_seqlens_q[b] + row0 : row0;
}
__device__ __forceinline__ int q_batch(const AttnParams& p, int b) { return p.cu_seqlens_q ? 0 : b; }

// The pages of sequence b (paged K/V): key j is row j % page of page block_table[b, j / page]. K and
// V maps view the cache as (D, row in page, head, page); a box holds min(page, BLOCK_N) rows.
// The whole producer warp runs the paged loop: lane i reads the block of the tile's i-th box, so a
// tile's block-table reads are one load instead of one dependent load per page; lane 0 issues.
struct PagedRows {
  const int* table;  // this sequence's row of the block table
  int page;
  int box;  // rows per TMA box: min(page, BLOCK_N), the box the host encoded
  int last_page;  // the page of the sequence's last key: tiles past it re-read it (masked anyway)
  __device__ __forceinline__ PagedRows(const AttnParams& p, int b, int kv_len, int block_n)
      : table(p.block_table + static_cast<int64_t>(b) * p.block_table_stride), page(p.page_size),
        box(p.page_size < block_n ? p.page_size : block_n), last_page(kv_len > 0 ? (kv_len - 1) / p.page_size : 0) {}
  // this lane's block of a tile whose first key is row0 (lanes past the tile's boxes: 0)
  __device__ __forceinline__ int lane_block(int row0, int block_n) const {
    const int lane = threadIdx.x % 32;
    if (lane * box >= block_n) return 0;
    const int pg = (row0 + lane * box) / page;
    return table[pg < last_page ? pg : last_page];
  }
};

__device__ __forceinline__ bool producer_leader() { return threadIdx.x == 0; }
__device__ __forceinline__ bool producer_warp() { return threadIdx.x < 32; }

// Copy sK <- K[b, h, row0 : row0 + BLOCK_N] with via=tma from paged K: BLOCK_N / box boxes per
// 64-column chunk, box i from the block lane i holds; one full barrier for all of them. Every lane
// of the producer warp calls it (the shuffles); lane 0 arrives and issues.
template <class KT, class T>
__device__ __forceinline__ void produce_kv_paged(const CUtensorMap* map, uint64_t* full, uint64_t* empty,
                                                 T (*tiles)[KT::kBlockN * KT::kHeadDim], PipeState<KT::kStages> ps,
                                                 const PagedRows& pages, int lane_block, int row0, int h) {
  Barrier::wait(&empty[ps.stage], ps.phase ^ 1u);
  const bool leader = producer_leader();
  if (leader) TxBarrier::arrive_and_expect_tx(&full[ps.stage], KT::kKVBytes);
  for (int r = 0, i = 0; r < KT::kBlockN; r += pages.box, ++i) {
    const int block = __shfl_sync(0xffffffff, lane_block, i);
    if (!leader) continue;
    CUTE_UNROLL
    for (int chunk = 0; chunk < KT::kHeadDim / kSwizzleCols; ++chunk) {
      cute::SM90_TMA_LOAD_4D::copy(map, &full[ps.stage], static_cast<uint64_t>(cute::TMA::CacheHintSm90::EVICT_NORMAL),
                                   tiles[ps.stage] + chunk * KT::kBlockN * kSwizzleCols + r * kSwizzleCols,
                                   chunk * kSwizzleCols, (row0 + r) % pages.page, h, block);
    }
  }
}

// Copy sK <- K[b, h, rows] with via=cp.async from paged K (pages smaller than a tile): the producer
// warpgroup gathers a tile as 16-byte cp.async into the same 128-byte-swizzled layout a TMA box writes
// (unit u of row r at unit u ^ (r % 8)). Rows at or past kv_len are zero-filled (src-size 0), so the V
// rows past the end are zeros and no consumer has to clear them.
//
// The tile is cut into segments of 8 rows. A page holds a multiple of 8 rows, so a segment lies in one
// page: its rows are a fixed stride apart in the cache. Per tile, lane s of each warp looks up where
// segment s starts in K and V (one block-table read). Warp w copies segments w, w + 4, ...: a
// warp-wide copy is kRowsPerCopy whole rows (consecutive lanes read consecutive 16 bytes), and each
// lane steps through its segment rows by adding a stride, its shared address by a constant and one
// xor (the swizzle of rows 8 apart repeats). That is ~4 instructions a copy; the gather issues from
// the same SM sub-partitions as the consumers' softmax, and a shuffled row address per copy (~10
// instructions) cost paged prefill about a quarter of its speed (session 10, run 1).
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src) : "memory");
}

// kPanels (QM_SM90_GATHER_PANELS, default 1): a warp-wide copy covers 4 rows of one 64-column panel,
// and a lane copies its unit of every panel of its row from one address (panel q at +128 q bytes,
// shared +q panels: immediates), so one 64-bit add serves D / 64 copies. Copy blocks: 144 -> 98
// instructions at D 128, 224 -> 127 at D 256; measured +0-4% at D 128, level at D 256 (predicted
// +3-5% / +5-8%: the copies' count was not what the gather waits on); D 64 is one panel either way.
// A diagnostic build may set 0 (lanes along the whole row).
#ifndef QM_SM90_GATHER_PANELS
#define QM_SM90_GATHER_PANELS 1
#endif
template <class KT, bool kPanels = QM_SM90_GATHER_PANELS>
struct PagedGather {
  using T = typename KT::T;
  static constexpr int kWarps = kWarpgroupThreads / 32;
  static constexpr int kUnitsPerRow = KT::kHeadDim * static_cast<int>(sizeof(T)) / 16;  // 16-byte units
  static constexpr int kLanesPerRow = kPanels ? kSwizzleCols * static_cast<int>(sizeof(T)) / 16 : kUnitsPerRow;
  static_assert(kLanesPerRow <= 32 && 32 % kLanesPerRow == 0, "a warp copies whole rows per instruction");
  static constexpr int kRowsPerCopy = 32 / kLanesPerRow;  // rows one warp-wide cp.async covers: 1, 2 or 4
  static constexpr int kPanelCopies = kUnitsPerRow / kLanesPerRow;  // copies per lane and row: 1, or D / 64
  static constexpr int kSegRows = 8;  // the smallest page the kernel takes (runtime: paged_page_fit)
  static_assert(kSegRows % kRowsPerCopy == 0, "a warp-wide copy stays inside a segment");
  static constexpr int kSegs = KT::kBlockN / kSegRows;
  static_assert(KT::kBlockN % kSegRows == 0 && kSegs <= 32, "BLOCK_N: whole segments, one lane each");
  static constexpr int kSegsPerWarp = (kSegs + kWarps - 1) / kWarps;
  static constexpr int kCopiesPerSeg = kSegRows / kRowsPerCopy;
  static constexpr int kRowBytes = kSwizzleCols * static_cast<int>(sizeof(T));  // one 128-byte panel row
  static constexpr int kPanelBytes = KT::kBlockN * kRowBytes;  // one 64-column panel of the tile

  const int* table;
  int page, last_page, kv_len;
  int warp, lane;
  const char* k_head;
  const char* v_head;
  // strides in bytes, 32-bit: fewer live registers in the gathering producer (the runtime refuses a cache
  // whose page stride or page span is 2 GiB or more: tma_sm90.gather_stride_fit)
  int k_page, k_slot, v_page, v_slot;
  int k_lane, v_lane;  // this lane's bytes from its segment's first row: its row in a copy, its unit
  uint32_t dst_lane;       // this lane's first shared byte of its warp's first segment, from a tile's start
  uint64_t k_seg = 0, v_seg = 0;  // lane s < kSegs: where segment s of the current tile starts in K, in V
  int rows_left = 0;  // keys of the current tile before kv_len (>= BLOCK_N: no row is zero-filled)

  // the tile row and 16-byte unit copy j of thread `ptid`'s i-th segment reads and writes, and where
  // in the tile it writes (tests/unit/lower/sm90_layout_check.cu compares it with unit_offset)
  __host__ __device__ static constexpr int copy_row(int ptid, int i, int j) {
    return ((ptid / 32) + kWarps * i) * kSegRows + (ptid % 32) / kLanesPerRow + j * kRowsPerCopy;
  }
  __host__ __device__ static constexpr int copy_unit(int ptid, int q) { return (ptid % 32) % kLanesPerRow + q * kLanesPerRow; }
  __host__ __device__ static constexpr int lane_offset(int ptid) {
    return unit_offset((ptid / 32) * kSegRows + (ptid % 32) / kLanesPerRow, copy_unit(ptid, 0));
  }
  // rows 8 apart share a swizzle and a row within a segment differs from the lane's first by
  // j * kRowsPerCopy < 8: bits 4-6 of the address flip by that, the rest moves by whole rows
  __host__ __device__ static constexpr int copy_xor(int j) { return (j * kRowsPerCopy) << 4; }
  __host__ __device__ static constexpr int copy_add(int i, int j) {
    return (kWarps * i * kSegRows + j * kRowsPerCopy) * kRowBytes;
  }
  __host__ __device__ static constexpr int copy_offset(int ptid, int i, int j, int q = 0) {
    return (lane_offset(ptid) ^ copy_xor(j)) + copy_add(i, j) + q * kPanelBytes;
  }
  // where 16-byte unit `unit` of tile row `row` goes: its 64-column panel, the row, and the unit
  // swizzled within the 128-byte row (what a TMA box with the 128-byte swizzle writes)
  __host__ __device__ static constexpr int unit_offset(int row, int unit) {
    return (unit / 8) * KT::kBlockN * kRowBytes + row * kRowBytes + (((unit % 8) ^ (row & 7)) << 4);
  }

  __device__ __forceinline__ PagedGather(const AttnParams& p, int b, int kv_len_, int h, int ptid)
      : table(p.block_table + static_cast<int64_t>(b) * p.block_table_stride), page(p.page_size),
        last_page(kv_len_ > 0 ? (kv_len_ - 1) / p.page_size : 0), kv_len(kv_len_), warp(ptid / 32),
        lane(ptid % 32),
        k_head(static_cast<const char*>(p.k) + static_cast<int64_t>(h) * p.k_head_stride * sizeof(T)),
        v_head(static_cast<const char*>(p.v) + static_cast<int64_t>(h) * p.v_head_stride * sizeof(T)),
        k_page(static_cast<int>(p.k_batch_stride * sizeof(T))), k_slot(static_cast<int>(p.k_token_stride * sizeof(T))),
        v_page(static_cast<int>(p.v_batch_stride * sizeof(T))), v_slot(static_cast<int>(p.v_token_stride * sizeof(T))),
        k_lane((lane / kLanesPerRow) * k_slot + (lane % kLanesPerRow) * 16),
        v_lane((lane / kLanesPerRow) * v_slot + (lane % kLanesPerRow) * 16),
        dst_lane(static_cast<uint32_t>(lane_offset(ptid))) {}

  // the tile whose first key is row0: lane s reads the block of segment s's page (one block-table
  // read per lane and tile) and keeps where the segment starts in K and in V
  __device__ __forceinline__ void seek(int row0) {
    rows_left = kv_len - row0;
    if (lane < kSegs) {
      const int key = row0 + lane * kSegRows;
      const int pg = min(key / page, last_page);  // a segment past kv_len reads nothing: any valid page
      const int64_t block = table[pg];
      const int slot = key < kv_len ? key - pg * page : 0;  // slot * k_slot < the page span: 32-bit
      k_seg = reinterpret_cast<uint64_t>(k_head + block * k_page + slot * k_slot);
      v_seg = reinterpret_cast<uint64_t>(v_head + block * v_page + slot * v_slot);
    }
  }

  template <bool kTail>
  __device__ __forceinline__ void copy(uint64_t seg, int lane_bytes, int slot, T* tile) const {
#ifdef QM_SM90_DIAG_NO_GATHER
    return;  // diagnostic: the consumers' ceiling without the gather (never validates)
#endif
    const uint32_t base = static_cast<uint32_t>(__cvta_generic_to_shared(tile)) + dst_lane;
    const int step = kRowsPerCopy * slot;
    CUTE_UNROLL
    for (int i = 0; i < kSegsPerWarp; ++i) {
      const int s = warp + kWarps * i;  // warp-uniform
      if (kSegs % kWarps != 0 && s >= kSegs) break;
      const char* src = reinterpret_cast<const char*>(__shfl_sync(0xffffffff, seg, s)) + lane_bytes;
      // rows of this lane's segment before kv_len, from its first (the tile's last segment only)
      const int left = kTail ? rows_left - (s * kSegRows + lane / kLanesPerRow) : 0;
      CUTE_UNROLL
      for (int j = 0; j < kCopiesPerSeg; ++j) {
        const uint32_t dst = (base ^ copy_xor(j)) + copy_add(i, j);  // copy_offset, from the tile's start
        CUTE_UNROLL
        for (int q = 0; q < kPanelCopies; ++q) {  // the row's unit in each panel (kPanels): immediates
          if (kTail) {
            cp_async_16(dst + q * kPanelBytes, src + q * kLanesPerRow * 16, j * kRowsPerCopy < left ? 16 : 0);
          } else {
            cp_async_16(dst + q * kPanelBytes, src + q * kLanesPerRow * 16);
          }
        }
        src += step;
      }
    }
  }
  // only the tile that reaches past kv_len predicates its copies (warp-uniform branch)
  __device__ __forceinline__ void copy_tile(uint64_t seg, int lane_bytes, int slot, T* tile) const {
    if (rows_left >= KT::kBlockN) copy<false>(seg, lane_bytes, slot, tile);
    else copy<true>(seg, lane_bytes, slot, tile);
  }
  __device__ __forceinline__ void copy_k(T* tile) const { copy_tile(k_seg, k_lane, k_slot, tile); }
  __device__ __forceinline__ void copy_v(T* tile) const { copy_tile(v_seg, v_lane, v_slot, tile); }
};

// A gathered stage is complete once every producer thread's copies into it landed: each thread's
// cp.async.mbarrier.arrive.noinc makes the hardware arrive on the stage's full barrier (one of its 128
// arrivals) when this thread's earlier cp.async have completed, so the producer never waits for its
// own copies and runs up to STAGES tiles ahead (it used to wait for tile n - 1 after issuing tile n).
__device__ __forceinline__ void gathered(uint64_t* full, int stage) {
#ifdef QM_SM90_DIAG_NO_GATHER
  Barrier::arrive(&full[stage]);  // diagnostic: nothing was copied
#else
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(cute::cast_smem_ptr_to_uint(&full[stage]))
               : "memory");
#endif
}
// The producer warpgroup's copies have all landed (before its threads exit).
__device__ __forceinline__ void gathers_drained() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

// the producer side of a ring slot: wait until the consumers released it
template <int STAGES>
__device__ __forceinline__ void wait_empty(uint64_t* empty, const PipeState<STAGES>& ps) {
  Barrier::wait(&empty[ps.stage], ps.phase ^ 1u);
}

// ---- consumer: every consumer thread waits and releases
// Wait sX: the slot's copy has landed
__device__ __forceinline__ void wait_full(uint64_t* full, int stage, uint32_t phase) {
  Barrier::wait(&full[stage], phase);
}
// Wait sX for a gathered slot: the copies landed through the generic proxy (cp.async) and the GMMAs
// read through the async proxy, and the producer cannot fence copies it does not wait for: the
// consumer orders them after observing the barrier.
__device__ __forceinline__ void wait_gathered(uint64_t* full, int stage, uint32_t phase) {
  Barrier::wait(&full[stage], phase);
#ifndef QM_SM90_DIAG_GATHER_NO_FENCE
  cutlass::arch::fence_view_async_shared();
#endif
}
// Release sX: this thread is done reading the slot (its GMMAs completed)
__device__ __forceinline__ void release(uint64_t* empty, int stage) { Barrier::arrive(&empty[stage]); }
// sQ of tile number `iter` has landed / this thread's last S GEMM of the tile is done with it
template <class KT>
__device__ __forceinline__ void wait_q(SharedStorage<KT>& sm, int iter) {
  Barrier::wait(&sm.q_full, static_cast<uint32_t>(iter) & 1u);
}
template <class KT>
__device__ __forceinline__ void release_q(SharedStorage<KT>& sm) { Barrier::arrive(&sm.q_empty); }

// Named barrier of all consumer threads (user id 0): they wait for each other, not for the producer.
constexpr uint32_t kConsumerBarrier = 0;
template <class KT>
__device__ __forceinline__ void consumers_sync() {
  cutlass::arch::NamedBarrier::sync(KT::kConsumerThreads, kConsumerBarrier);
}

// Named barrier of one consumer warpgroup's 128 threads around its TMA store of O (consumer.cuh):
// user ids 4, 5, 6 (past kConsumerBarrier and PingPong's 1 .. 3)
constexpr uint32_t kStoreOBarrier = 4;
__device__ __forceinline__ void warpgroup_sync(int wg) {
  cutlass::arch::NamedBarrier::sync(kWarpgroupThreads, kStoreOBarrier + wg);
}

// ---- padding rows: a consumer warpgroup whose 64 rows all lie outside its tile's sequence (past its
// end; before its start under a causal mask's shift) issues no GEMM and no softmax. D 64's 192-row
// tile at L 1k: the last tile of a sequence holds 64 rows, so two of its three warpgroups idle.
constexpr int kWarpgroupRows = 64;
__host__ __device__ __forceinline__ bool rows_outside(int row0, int seqlen_q) {
  return row0 >= seqlen_q || row0 + kWarpgroupRows <= 0;
}
// the consumer threads of a tile with no row: the producer arrives for them on each K/V slot it fills
template <class KT>
__device__ __forceinline__ int idle_consumer_threads(int q0, int seqlen_q) {
  int idle = 0;
  CUTE_UNROLL
  for (int w = 0; w < KT::kConsumerWGs; ++w) idle += rows_outside(q0 + kWarpgroupRows * w, seqlen_q);
  return idle * kWarpgroupThreads;
}
// the producer, after filling a slot of a tile with idle warpgroups: their arrivals on its empty barrier
__device__ __forceinline__ void arrive_idle(uint64_t* empty, int stage, int threads) {
  if (threads > 0) {
    const uint32_t addr = cute::cast_smem_ptr_to_uint(&empty[stage]);
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0], %1;" : : "r"(addr), "r"(threads) : "memory");
  }
}
template <int STAGES>
__device__ __forceinline__ void advance_by(PipeState<STAGES>& ps, int n) {
  const int to = ps.stage + n;
  ps.phase ^= static_cast<uint32_t>(to / STAGES) & 1u;
  ps.stage = to % STAGES;
}
// schedule=pingpong's turns for a kernel without them
struct NoTurns {
  __device__ __forceinline__ void wait_turn() const {}
  __device__ __forceinline__ void pass_turn() const {}
};
// An idle consumer warpgroup over its tile's `tiles` KV tiles: no slot waited for or released (the
// producer arrived for it), its turns passed one a KV tile as its GEMMs would take them, its ring
// positions moved on. A separate loop that waited for and released the slots pushed the KV loop's GMMA
// descriptors out of uniform registers (R2UR 17 -> 48 at D 128).
template <class KT, class Turn>
__device__ __forceinline__ void idle_kv_tiles(PipeState<KT::kStages>& ps_k, PipeState<KT::kStages>& ps_v, int tiles,
                                              const Turn& turn) {
  #pragma unroll 1
  for (int i = 0; i < tiles; ++i) {
    turn.wait_turn();
    turn.pass_turn();
  }
  advance_by(ps_k, tiles > 0 ? tiles : 0);
  advance_by(ps_v, tiles > 0 ? tiles : 0);
}

// ---- tiles=persistent (scheduler.cuh): the tiles from the producer to the consumers, in two shared
// slots: slot i % 2 carries the CTA's i-th tile as one word (TileWord; < 0: no more tiles). The
// slot's full barrier takes the producer's one arrival (release: the word written before it), its
// empty barrier every consumer thread's.
template <class Storage>
__device__ __forceinline__ void hand_tile(Storage& sm, int tile, int i) {
  const int s = i & 1;
  Barrier::wait(&sm.tile_empty[s], ((static_cast<uint32_t>(i) >> 1) & 1u) ^ 1u);
  sm.tile[s] = tile;
  Barrier::arrive(&sm.tile_full[s]);
}
template <class Storage>
__device__ __forceinline__ int take_tile(Storage& sm, int i) {
  const int s = i & 1;
  Barrier::wait(&sm.tile_full[s], (static_cast<uint32_t>(i) >> 1) & 1u);
  const int tile = *static_cast<volatile int*>(&sm.tile[s]);
  Barrier::arrive(&sm.tile_empty[s]);
  // the same number in every lane, but a shared-memory load is not known to be warp-uniform: the
  // broadcast from lane 0 is, so the tile's coordinates and KV range can live in uniform registers
  return __shfl_sync(0xffffffff, tile, 0);
}

// ---- tiles=persistent with a gathering producer: its 128 threads all need each tile. The leader
// claims it and hands it on through the same slot as to the consumers (hand_tile); the warpgroup
// then meets at a named barrier (user id 7, past the store's 4 .. 6) and reads the slot. The leader
// rewrites that slot two tiles later, after the next tile's barrier, which every thread reaches only
// once it has read this one.
constexpr uint32_t kProducerBarrier = 7;
__device__ __forceinline__ void producer_sync() {
  cutlass::arch::NamedBarrier::sync(kWarpgroupThreads, kProducerBarrier);
}
template <class Storage>
__device__ __forceinline__ int handed_tile(Storage& sm, int i) {
  return __shfl_sync(0xffffffff, *static_cast<volatile int*>(&sm.tile[i & 1]), 0);
}

// ---- ping-pong between the consumer warpgroups (TL: `Role consumer with ..., schedule=pingpong`)
// The warpgroups take turns issuing their GEMMs: while one runs its GEMMs the others run their
// softmax. The turn goes round the warpgroups (0, 1, .., W-1, 0, ...) through one named barrier per
// warpgroup, each completed by its owner's 128 threads (sync) and the previous warpgroup's 128
// (arrive). The last warpgroup hands warpgroup 0 the first turn (start); every turn is passed on,
// across tiles under tiles=persistent; warpgroup 0 takes the one turn left over at the end (finish),
// so every barrier phase gets exactly one arrive and one sync.
template <int WGS>
struct PingPong {
  static constexpr uint32_t kThreads = 2 * kWarpgroupThreads;
  static constexpr uint32_t kFirstId = 1;  // user id 0: kConsumerBarrier (CUTLASS offsets user ids past its own)
  int wg;  // 0 .. WGS - 1: the consumer warpgroup
  __device__ __forceinline__ explicit PingPong(int consumer_tid) : wg(consumer_tid / kWarpgroupThreads) {}
  __device__ __forceinline__ void start() const {
    if (wg == WGS - 1) cutlass::arch::NamedBarrier::arrive(kThreads, kFirstId);
  }
  __device__ __forceinline__ void wait_turn() const { cutlass::arch::NamedBarrier::sync(kThreads, kFirstId + wg); }
  __device__ __forceinline__ void pass_turn() const {
    cutlass::arch::NamedBarrier::arrive(kThreads, kFirstId + (wg + 1) % WGS);
  }
  __device__ __forceinline__ void finish() const {
    if (wg == 0) cutlass::arch::NamedBarrier::sync(kThreads, kFirstId);
  }
};

}  // namespace qm::sm90
