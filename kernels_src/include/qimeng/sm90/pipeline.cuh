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
template <class KT>
__device__ __forceinline__ void init_barriers(SharedStorage<KT>& sm) {
  if (threadIdx.x == 0) {
    TxBarrier::init(&sm.q_full, 1);
    CUTE_UNROLL
    for (int s = 0; s < KT::kStages; ++s) {
      TxBarrier::init(&sm.k_full[s], 1);
      TxBarrier::init(&sm.v_full[s], 1);
      Barrier::init(&sm.k_empty[s], KT::kConsumerThreads);
      Barrier::init(&sm.v_empty[s], KT::kConsumerThreads);
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

// Copy sQ <- Q[b, h, row0 : row0 + BLOCK_M] with via=tma (filled once, never released)
template <class KT>
__device__ __forceinline__ void produce_q(const TmaDescs& tma, SharedStorage<KT>& sm, int row0, int h, int b) {
  TxBarrier::arrive_and_expect_tx(&sm.q_full, KT::kQBytes);
  tma_load_tile<KT::kBlockM, KT::kHeadDim>(&tma.q, &sm.q_full, sm.q, row0, h, b);
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

// ---- consumer: every consumer thread waits and releases
// Wait sX: the slot's copy has landed
__device__ __forceinline__ void wait_full(uint64_t* full, int stage, uint32_t phase) {
  Barrier::wait(&full[stage], phase);
}
// Release sX: this thread is done reading the slot (its GMMAs completed)
__device__ __forceinline__ void release(uint64_t* empty, int stage) { Barrier::arrive(&empty[stage]); }

// ---- ping-pong between two consumer warpgroups (TL: `Role consumer with ..., schedule=pingpong`)
// The warpgroups take turns on the tensor cores for S = Q K^T: while one runs its GEMM the other
// runs its softmax. Two named barriers, one per warpgroup's turn, each completed by the owner's 128
// threads (sync) and the other warpgroup's 128 (arrive). Warpgroup 1 gives warpgroup 0 the first
// turn and skips its last hand-over, so every barrier phase gets exactly one arrive and one sync.
struct PingPong {
  static constexpr uint32_t kThreads = 2 * kWarpgroupThreads;
  int wg;  // 0 or 1: the consumer warpgroup
  __device__ __forceinline__ explicit PingPong(int consumer_tid) : wg(consumer_tid / kWarpgroupThreads) {}
  __device__ __forceinline__ void start() const {
    if (wg == 1) cutlass::arch::NamedBarrier::arrive(kThreads, 0);
  }
  __device__ __forceinline__ void wait_turn() const { cutlass::arch::NamedBarrier::sync(kThreads, wg); }
  __device__ __forceinline__ void pass_turn(bool last) const {
    if (!(wg == 1 && last)) cutlass::arch::NamedBarrier::arrive(kThreads, 1 - wg);
  }
};

}  // namespace qm::sm90
