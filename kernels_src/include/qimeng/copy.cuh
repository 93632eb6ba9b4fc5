// qimeng/copy.cuh -- the TL "Copy" statements.
//
//   copy_q_g2s   Q tile global -> shared (rows through QRows; rows past the end are zero-filled)
//   copy_kv_g2s  K or V tile n_block global -> shared (dense or paged rows; rows >= seqlen_k are
//                zero-filled so that P*V never sees garbage).  SM80: cp.async (one commit group per
//                call, also for n_block < 0 which copies nothing).  SM75: loads into the register
//                stage (kRegStage) and returns; the shared store happens in copy_wait.
//   copy_wait    make the last copy_kv_g2s visible in shared memory (+ block barrier)
//   copy_q_s2r   Q tile shared -> registers (A-operand fragment, ldmatrix), when Q lives in regs
//
// Pipeline contract (FA2, STAGES=2): copy_kv_g2s into a buffer is issued only after a barrier
// that follows every read of that buffer; copy_wait before the first read of the new data.
#pragma once
#include "traits.cuh"
#include "gmem_views.cuh"

namespace qm {

template <class KT>
struct CopyStage {     // SM75 register stage of one K/V tile (unused on SM80)
  uint4 r[KT::kRegStage ? KT::kPassesKV : 1];
};

template <class KT>
__device__ __forceinline__ void copy_q_g2s(const QRows<typename KT::Element>& q, typename KT::Element* sQ) {
  using T = typename KT::Element;
  constexpr int CPR = KT::kChunksPerRow, RPP = KT::kRowsPerPass, P = KT::kPassesQ, CH = KT::kChunk;
  const int cc = KT::tid() % CPR, r0 = KT::tid() / CPR;
  const ChunkOffsets<KT, typename KT::SmemLayoutQ, P> L(r0, cc * CH);
  if constexpr (KT::kCpAsync) {
    CUTE_UNROLL
    for (int i = 0; i < P; ++i) {
      const int r = r0 + i * RPP;
      const bool ok = q.valid(r);
      const T* src = ok ? q.q_row(r) + cc * CH : q.q;
      cp_async_16(sQ + L(i), src, ok);
    }
    cp_async_commit();
  } else {
    constexpr int B = P < 8 ? P : 8;
    static_assert(P % B == 0, "");
    CUTE_UNROLL
    for (int i0 = 0; i0 < P; i0 += B) {
      uint4 buf[B];
      CUTE_UNROLL
      for (int i = 0; i < B; ++i) {
        const int r = r0 + (i0 + i) * RPP;
        const bool ok = q.valid(r);
        buf[i] = ld_global_16(ok ? q.q_row(r) + cc * CH : q.q, ok);
      }
      CUTE_UNROLL
      for (int i = 0; i < B; ++i) st_shared_16(sQ + L(i0 + i), buf[i]);
    }
  }
}

template <class KT, class Rows>
__device__ __forceinline__ void copy_kv_g2s(CopyStage<KT>& st, const Rows& src, typename KT::Element* sX, int n_block) {
  using T = typename KT::Element;
  constexpr int CPR = KT::kChunksPerRow, RPP = KT::kRowsPerPass, P = KT::kPassesKV, CH = KT::kChunk;
  if (n_block < 0) {
    if constexpr (KT::kCpAsync) cp_async_commit();
    return;
  }
  const int cc = KT::tid() % CPR, r0 = KT::tid() / CPR;
  const int t0 = n_block * KT::kBlockN + r0;
  const ChunkOffsets<KT, typename KT::SmemLayoutKV, P> L(r0, cc * CH);
  // Row addresses first, for every pass, with the token clamped into the sequence: no branch
  // around a paged row's block-table load, so the loads of all passes are in flight together
  // instead of one table-load latency per 16-byte chunk; rows past the end are zero-filled below.
  const int last = src.seqlen - 1;
  if constexpr (KT::kCpAsync) {
    const T* g[P];
    CUTE_UNROLL
    for (int i = 0; i < P; ++i) g[i] = src.row(max(min(t0 + i * RPP, last), 0)) + cc * CH;
    CUTE_UNROLL
    for (int i = 0; i < P; ++i) cp_async_16(sX + L(i), g[i], t0 + i * RPP < src.seqlen);
    cp_async_commit();
  } else if constexpr (KT::kRegStage) {
    const T* g[P];
    CUTE_UNROLL
    for (int i = 0; i < P; ++i) g[i] = src.row(max(min(t0 + i * RPP, last), 0)) + cc * CH;
    CUTE_UNROLL
    for (int i = 0; i < P; ++i) st.r[i] = ld_global_16(g[i], t0 + i * RPP < src.seqlen);
  } else {
    constexpr int B = 8;
    static_assert(P % B == 0, "");
    CUTE_UNROLL
    for (int i0 = 0; i0 < P; i0 += B) {
      uint4 buf[B];
      CUTE_UNROLL
      for (int i = 0; i < B; ++i) {
        const int t = t0 + (i0 + i) * RPP;
        buf[i] = ld_global_16(src.row(max(min(t, last), 0)) + cc * CH, t < src.seqlen);
      }
      CUTE_UNROLL
      for (int i = 0; i < B; ++i) st_shared_16(sX + L(i0 + i), buf[i]);
    }
  }
}

template <class KT>
__device__ __forceinline__ void copy_wait(CopyStage<KT>& st, typename KT::Element* sX) {
  if constexpr (KT::kCpAsync) {
    cp_async_wait<0>();
    __syncthreads();
  } else if constexpr (KT::kRegStage) {
    constexpr int CPR = KT::kChunksPerRow, RPP = KT::kRowsPerPass, P = KT::kPassesKV, CH = KT::kChunk;
    const int cc = KT::tid() % CPR, r0 = KT::tid() / CPR;
    const ChunkOffsets<KT, typename KT::SmemLayoutKV, P> L(r0, cc * CH);
    __syncthreads();                       // every reader of the old tile is done
    CUTE_UNROLL
    for (int i = 0; i < P; ++i) st_shared_16(sX + L(i), st.r[i]);
    __syncthreads();
  } else {
    __syncthreads();
  }
}

template <class KT, class FragQ>
__device__ __forceinline__ void copy_q_s2r(FragQ& rQ, const typename KT::Element* sQ_ptr) {
  using namespace cute;
  using T = typename KT::Element;
  if constexpr (KT::kCpAsync) cp_async_wait<1>();   // the Q group; the K group may still fly
  __syncthreads();
  typename KT::TiledMma mma;
  auto thr = mma.get_thread_slice(KT::mma_tid());
  Tensor sQ = make_tensor(make_smem_ptr(sQ_ptr), typename KT::SmemLayoutQ{});
  auto cpA = make_tiled_copy_A(Copy_Atom<typename KT::Atoms::LdsmA, T>{}, mma);
  auto thrA = cpA.get_thread_slice(KT::mma_tid());
  Tensor tsQ = thrA.partition_S(sQ);
  Tensor trQ = thrA.retile_D(rQ);
  copy(cpA, tsQ, trQ);
}

}  // namespace qm
