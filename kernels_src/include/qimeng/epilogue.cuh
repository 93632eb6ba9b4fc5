// qimeng/epilogue.cuh -- the TL "normalize" + "store" statements.
//
//   normalize_and_store (prefill): O /= l; optional LSE2 (log2 domain) to lse[(q_tok0+i)*heads_q+h];
//       O converted to the element type, staged through the Q smem tile, written with 16-byte
//       stores predicated on the query-row bound.  Rows with no visible key get O = 0, LSE = -inf.
//   merge_and_store_partial (decode, split-KV): each warp's (O/l, LSE2) over its kv columns is
//       merged in shared memory (log2-domain weights), then written as fp32
//       o_partial[split, q_tok0+i, h, :] and lse[split, q_tok0+i, h].
#pragma once
#include "traits.cuh"
#include "gmem_views.cuh"
#include "softmax.cuh"
#include "alloc.cuh"

namespace qm {

template <class KT, class AccO>
__device__ __forceinline__ void normalize_and_store(AccO& acc_o, const SoftmaxState<KT>& st,
                                                    const QRows<typename KT::Element>& q,
                                                    const SmemTiles<typename KT::Element>& sm,
                                                    float scale, float* lse_out) {
  using namespace cute;
  using T = typename KT::Element;
  static_assert(!KT::kDecode, "decode tiles use merge_and_store_partial");
  if constexpr (KT::kCpAsync) cp_async_wait<0>();
  const RowStats<KT> rs = softmax_finalize<KT>(st, scale);
  typename KT::TiledMma mma;
  auto thr = mma.get_thread_slice(KT::mma_tid());
  Tensor cO = make_identity_tensor(Shape<Int<KT::kBlockM>, Int<KT::kHeadDim>>{});
  Tensor tOcO = thr.partition_C(cO);
  CUTE_UNROLL
  for (int mi = 0; mi < size<1>(acc_o); ++mi) {
    CUTE_UNROLL
    for (int r = 0; r < 2; ++r) {
      const float inv = rs.inv_sum[2 * mi + r];
      CUTE_UNROLL
      for (int ni = 0; ni < size<2>(acc_o); ++ni) {
        acc_o(make_coord(make_coord(0, r), mi, ni)) *= inv;
        acc_o(make_coord(make_coord(1, r), mi, ni)) *= inv;
      }
      if (lse_out != nullptr && (threadIdx.x % 4) == 0) {
        const int row = get<0>(tOcO(make_coord(make_coord(0, r), mi, 0)));
        if (q.valid(row)) lse_out[q.qh_index(row)] = rs.lse2[2 * mi + r];
      }
    }
  }
  __syncthreads();                       // every warp is done reading the Q tile
  Tensor sO = make_tensor(make_smem_ptr(sm.q), typename KT::SmemLayoutQ{});
  Tensor tOsO = thr.partition_C(sO);
  CUTE_UNROLL
  for (int i = 0; i < size(acc_o); ++i) tOsO(i) = T(acc_o(i));
  __syncthreads();
  constexpr int CPR = KT::kChunksPerRow, RPP = KT::kRowsPerPass, CH = KT::kChunk;
  const int cc = KT::tid() % CPR, r0 = KT::tid() / CPR;
  const ChunkOffsets<KT, typename KT::SmemLayoutQ, KT::kPassesQ> L(r0, cc * CH);
  if (q.rpt == 1) {
    // One row pointer, stepped by RPP rows per pass.  Not q.o_row(r) per pass: the compiler shares
    // that index arithmetic with copy_q_g2s's q.q_row(r) and keeps it (two registers per pass) from
    // the prologue to here, across the KV loop.
    const int valid_rows = q.rows - q.row0;
    T* o = q.o + int64_t(q.row0 + r0) * q.o_tok + int64_t(q.head0) * q.o_head + cc * CH;
    CUTE_UNROLL
    for (int i = 0; i < KT::kPassesQ; ++i) {
      if (r0 + i * RPP < valid_rows)
        *reinterpret_cast<uint4*>(o + int64_t(i * RPP) * q.o_tok) = *reinterpret_cast<const uint4*>(sm.q + L(i));
    }
  } else {
    CUTE_UNROLL
    for (int i = 0; i < KT::kPassesQ; ++i) {
      const int r = r0 + i * RPP;
      if (q.valid(r))
        *reinterpret_cast<uint4*>(q.o_row(r) + cc * CH) = *reinterpret_cast<const uint4*>(sm.q + L(i));
    }
  }
}

template <class KT, class AccO>
__device__ __forceinline__ void merge_and_store_partial(AccO& acc_o, const SoftmaxState<KT>& st,
                                                        const QRows<typename KT::Element>& q,
                                                        const SmemTiles<typename KT::Element>& sm,
                                                        float scale, const AttnParams& p, const TileCoord& tc) {
  using namespace cute;
  static_assert(KT::kDecode, "prefill tiles use normalize_and_store");
  constexpr int D = KT::kHeadDim, W = KT::kWarps, LD = KT::kMergeStride;
  if constexpr (KT::kCpAsync) cp_async_wait<0>();
  const RowStats<KT> rs = softmax_finalize<KT>(st, scale);
  typename KT::TiledMma mma;
  auto thr = mma.get_thread_slice(KT::mma_tid());
  Tensor cO = make_identity_tensor(Shape<Int<16>, Int<D>>{});
  Tensor tOcO = thr.partition_C(cO);
  float* sOw = reinterpret_cast<float*>(sm.raw + KT::kSmemQ) + KT::warp() * 16 * LD;
  float* sL = reinterpret_cast<float*>(sm.raw);             // [W][16] per-warp LSE2
  __syncthreads();                       // every warp is done with the Q/K/V tiles
  CUTE_UNROLL
  for (int r = 0; r < 2; ++r) {
    const float inv = rs.inv_sum[r];
    const int row = get<0>(tOcO(make_coord(make_coord(0, r), 0, 0)));
    CUTE_UNROLL
    for (int ni = 0; ni < size<2>(acc_o); ++ni) {
      const int col = get<1>(tOcO(make_coord(make_coord(0, r), 0, ni)));
      float2 v = make_float2(acc_o(make_coord(make_coord(0, r), 0, ni)) * inv,
                             acc_o(make_coord(make_coord(1, r), 0, ni)) * inv);
      *reinterpret_cast<float2*>(sOw + row * LD + col) = v;
    }
    if ((threadIdx.x % 4) == 0) sL[KT::warp() * 16 + row] = rs.lse2[r];
  }
  __syncthreads();
  const float* sO0 = reinterpret_cast<const float*>(sm.raw + KT::kSmemQ);
  const int64_t split_off = int64_t(tc.split) * tc.total_q * p.heads_q;
  constexpr int kVec = 4, kItems = 16 * D / kVec;
  for (int it = KT::tid(); it < kItems; it += KT::kThreads) {
    const int row = (it * kVec) / D, col = (it * kVec) % D;
    if (!q.valid(row)) continue;
    float lw[W];
    float mx = -INFINITY;
    CUTE_UNROLL
    for (int w = 0; w < W; ++w) { lw[w] = sL[w * 16 + row]; mx = fmaxf(mx, lw[w]); }
    float den = 0.f;
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
    CUTE_UNROLL
    for (int w = 0; w < W; ++w) {
      const float wt = (lw[w] == -INFINITY) ? 0.f : fast_exp2(lw[w] - mx);
      den += wt;
      if (wt != 0.f) {
        const float4 x = *reinterpret_cast<const float4*>(sO0 + (w * 16 + row) * LD + col);
        acc.x += wt * x.x; acc.y += wt * x.y; acc.z += wt * x.z; acc.w += wt * x.w;
      }
    }
    const float inv = den > 0.f ? 1.f / den : 0.f;
    acc.x *= inv; acc.y *= inv; acc.z *= inv; acc.w *= inv;
    const int64_t qh = split_off + q.qh_index(row);
    *reinterpret_cast<float4*>(p.o_partial + qh * D + col) = acc;
    if (col == 0) p.lse[qh] = den > 0.f ? mx + __log2f(den) : -INFINITY;
  }
}

}  // namespace qm
