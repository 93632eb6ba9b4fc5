// qimeng/alloc.cuh -- the TL "Allocate" statement: shared-memory tiles and register fragments.
#pragma once
#include "traits.cuh"

namespace qm {

// Layout: [Q tile][K0][V0] ([K1][V1] when STAGES == 4); the decode epilogue reuses [K0...].
template <class T>
struct SmemTiles {
  T* q;   // BLOCK_M x HEAD_DIM (also the O staging tile in the epilogue)
  T* k;   // BLOCK_N x HEAD_DIM  (pair 0)
  T* v;   // BLOCK_N x HEAD_DIM  (pair 0)
  T* k1;  // pair 1 (STAGES == 4), else == k
  T* v1;  // pair 1 (STAGES == 4), else == v
  char* raw;
};

template <class T>
struct KVTiles {
  T* k;
  T* v;
};

template <class KT>
__device__ __forceinline__ SmemTiles<typename KT::Element> alloc_smem(char* smem_raw) {
  using T = typename KT::Element;
  SmemTiles<T> s;
  s.raw = smem_raw;
  s.q = reinterpret_cast<T*>(smem_raw);
  s.k = reinterpret_cast<T*>(smem_raw + KT::kSmemQ);
  s.v = reinterpret_cast<T*>(smem_raw + KT::kSmemQ + KT::kSmemK);
  s.k1 = KT::kKVPairs > 1 ? reinterpret_cast<T*>(smem_raw + KT::kSmemQ + KT::kSmemK + KT::kSmemV) : s.k;
  s.v1 = KT::kKVPairs > 1 ? reinterpret_cast<T*>(smem_raw + KT::kSmemQ + 2 * KT::kSmemK + KT::kSmemV) : s.v;
  return s;
}

// (K, V) buffer pair used by iteration `it` of the KV loop (STAGES == 4: alternates every iteration)
template <class KT>
__device__ __forceinline__ KVTiles<typename KT::Element> kv_stage(const SmemTiles<typename KT::Element>& s, int it) {
  KVTiles<typename KT::Element> t;
  const bool odd = KT::kKVPairs > 1 && (it & 1);
  t.k = odd ? s.k1 : s.k;
  t.v = odd ? s.v1 : s.v;
  return t;
}

// fp32 accumulator of S = Q K^T for one K/V tile (per thread fragment), zeroed
template <class KT>
__device__ __forceinline__ auto alloc_acc_s() {
  auto acc = cute::partition_fragment_C(typename KT::TiledMma{},
                                        cute::Shape<cute::Int<KT::kMmaRows>, cute::Int<KT::kMmaCols>>{});
  cute::clear(acc);
  return acc;
}

// fp32 accumulator of O (per thread fragment), zeroed
template <class KT>
__device__ __forceinline__ auto alloc_acc_o() {
  auto acc = cute::partition_fragment_C(typename KT::TiledMma{},
                                        cute::Shape<cute::Int<KT::kMmaRows>, cute::Int<KT::kHeadDim>>{});
  cute::clear(acc);
  return acc;
}

// register fragment holding this thread's share of the Q tile as an MMA A operand
template <class KT>
__device__ __forceinline__ auto alloc_frag_q() {
  using T = typename KT::Element;
  typename KT::TiledMma mma;
  auto thr = mma.get_thread_slice(KT::mma_tid());
  auto sQ = cute::make_tensor(cute::make_smem_ptr(static_cast<T*>(nullptr)), typename KT::SmemLayoutQ{});
  return thr.partition_fragment_A(sQ);
}

}  // namespace qm
