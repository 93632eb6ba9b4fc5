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
// warpgroup gathers a tile row by row, each row from its page, as 16-byte cp.async into the same
// 128-byte-swizzled layout a TMA box writes (unit u of row r at unit u ^ (r % 8)). Rows at or past
// kv_len are zero-filled (src-size 0), so the V rows past the end are zeros and no consumer has to
// clear them. Warp w gathers rows [w * BLOCK_N / 4, (w + 1) * BLOCK_N / 4); its lanes read whole
// rows together (coalesced), each lane's row block and slot read once per tile.
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

template <class KT>
struct PagedGather {
  using T = typename KT::T;
  static constexpr int kWarps = kWarpgroupThreads / 32;
  static constexpr int kUnitsPerRow = KT::kHeadDim * static_cast<int>(sizeof(T)) / 16;  // 16-byte units
  static_assert(kUnitsPerRow <= 32 && 32 % kUnitsPerRow == 0, "a warp copies whole rows per instruction");
  static constexpr int kRowsPerCopy = 32 / kUnitsPerRow;  // rows one warp-wide cp.async covers
  static constexpr int kRowsPerWarp = KT::kBlockN / kWarps;
  static_assert(kRowsPerWarp <= 32 && kRowsPerWarp % kRowsPerCopy == 0, "BLOCK_N: 4 warps x at most 32 rows");
  static constexpr int kCopies = kRowsPerWarp / kRowsPerCopy;  // 16-byte copies per thread and tile
  static constexpr int kRowBytes = kSwizzleCols * static_cast<int>(sizeof(T));  // one 128-byte panel row

  const int* table;
  int page, last_page, kv_len;
  int lane, first_row, unit;  // this warp's first tile row; this lane's 16-byte unit of a row
  const T* k_head;
  const T* v_head;
  int64_t k_page, k_slot, v_page, v_slot;  // strides in elements
  // lane i (< kRowsPerWarp) holds the address of the warp's row i of the current tile in K and in
  // V, as integers; bit 0 set: the row is past kv_len (the address is a valid one, nothing is read
  // from it, the row is zero-filled). Row addresses are 16-byte aligned, so bit 0 is free.
  uint64_t k_row = 0, v_row = 0;

  __device__ __forceinline__ PagedGather(const AttnParams& p, int b, int kv_len_, int h, int ptid)
      : table(p.block_table + static_cast<int64_t>(b) * p.block_table_stride), page(p.page_size),
        last_page(kv_len_ > 0 ? (kv_len_ - 1) / p.page_size : 0), kv_len(kv_len_), lane(ptid % 32),
        first_row((ptid / 32) * kRowsPerWarp), unit(lane % kUnitsPerRow),
        k_head(static_cast<const T*>(p.k) + static_cast<int64_t>(h) * p.k_head_stride),
        v_head(static_cast<const T*>(p.v) + static_cast<int64_t>(h) * p.v_head_stride), k_page(p.k_batch_stride),
        k_slot(p.k_token_stride), v_page(p.v_batch_stride), v_slot(p.v_token_stride) {}

  // the tile whose first key is row0: one block-table read per lane (its row) and the row's K and V
  // addresses, computed once here rather than in each of copy()'s 16-byte copies (the producer
  // warps issue the gather alone: their instruction count per tile bounds the paged kernel)
  __device__ __forceinline__ void seek(int row0) {
    if (lane < kRowsPerWarp) {
      const int key = row0 + first_row + lane;
      const int pg = key / page;
      const int64_t block = table[pg < last_page ? pg : last_page];
      const bool past = key >= kv_len;
      const int64_t slot = past ? 0 : key - pg * page;
      k_row = reinterpret_cast<uint64_t>(k_head + block * k_page + slot * k_slot) | uint64_t(past);
      v_row = reinterpret_cast<uint64_t>(v_head + block * v_page + slot * v_slot) | uint64_t(past);
    }
  }

  // where 16-byte unit `unit` of tile row `row` goes: its 64-column panel, the row, and the unit
  // swizzled within the 128-byte row (what a TMA box with the 128-byte swizzle writes;
  // tests/unit/lower/sm90_layout_check.cu compares it with the GMMA layout). copy() spells the same
  // sum with the panel offset and unit % 8 taken out of its loop.
  __host__ __device__ static constexpr int unit_offset(int row, int unit) {
    return (unit / 8) * KT::kBlockN * kRowBytes + row * kRowBytes + (((unit % 8) ^ (row & 7)) << 4);
  }

  // warp-wide copies, kRowsPerCopy whole rows each: consecutive lanes read consecutive 16 bytes
  __device__ __forceinline__ void copy(uint64_t my_row, T* tile) const {
    const uint32_t base = static_cast<uint32_t>(__cvta_generic_to_shared(tile));
    const int panel_off = (unit / 8) * KT::kBlockN * kRowBytes, u = unit % 8;
#pragma unroll 4  // fully unrolled, the addresses of 16 copies outgrow the producer's registers
    for (int c = 0; c < kCopies; ++c) {
      const int r = c * kRowsPerCopy + lane / kUnitsPerRow;  // the warp's row this lane copies from
      const uint64_t at = __shfl_sync(0xffffffff, my_row, r);
      const T* src = reinterpret_cast<const T*>(at & ~uint64_t(1)) + unit * 8;
      const int row = first_row + r;
      cp_async_16(base + panel_off + row * kRowBytes + ((u ^ (row & 7)) << 4), src, (at & 1) ? 0 : 16);
    }
  }
  __device__ __forceinline__ void copy_k(T* tile) const { copy(k_row, tile); }
  __device__ __forceinline__ void copy_v(T* tile) const { copy(v_row, tile); }
};

// A gathered stage is complete once this thread's copies landed: order them for the GMMAs (async
// proxy) and arrive on the stage's full barrier (one of the producer warpgroup's 128 arrivals).
__device__ __forceinline__ void gathered(uint64_t* full, int stage) {
  cutlass::arch::fence_view_async_shared();
  Barrier::arrive(&full[stage]);
}

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
