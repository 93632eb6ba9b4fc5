// qimeng/softmax.cuh -- the TL "softmax update" and "rescale" statements (online softmax, log2
// domain).  Per query row the state is the running max m of the raw (masked) scores and the
// running sum l of exp2(s*scale - m*scale), scale = softmax_scale_log2 (softcap*log2e with softcap).
//
//   online_softmax_update(st, acc_s, scale): m' = max(m, rowmax(S)); P = exp2(S*scale - m'*scale)
//       written over acc_s; l = l * exp2((m - m')*scale) + rowsum(P); the rescale factor
//       exp2((m - m')*scale) is kept for rescale_acc.  A -inf running max (every key so far
//       masked) is treated as 0 when subtracted, so fully-masked rows give P = 0, never NaN.
//   rescale_acc(acc_o, st): O *= the rescale factor of its row.
//   softmax_finalize(st, scale): quad-reduce l; returns 1/l (0 if l == 0) and LSE2 = m*scale +
//       log2(l) (-inf if l == 0) per row (used by the epilogue).
//
// Fragment convention (verified for SM75 m16n8k8 and SM80 m16n8k16): an fp32 accumulator is
// ((2,2), MMA_M, MMA_N); value (c, r) is column +c, row +8r; the 4 lanes of a quad share rows.
#pragma once
#include "traits.cuh"

namespace qm {

template <class KT>
struct SoftmaxState {
  static constexpr int kMmaM = KT::kMmaRows / (16 * KT::kMmaWarpsM);
  static constexpr int kRows = 2 * kMmaM;     // query rows owned by this thread
  float row_max[kRows];
  float row_sum[kRows];
  float rescale[kRows];
  __device__ __forceinline__ SoftmaxState() {
    CUTE_UNROLL
    for (int i = 0; i < kRows; ++i) { row_max[i] = -INFINITY; row_sum[i] = 0.f; rescale[i] = 1.f; }
  }
};

__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

template <class KT, class Acc>
__device__ __forceinline__ void online_softmax_update(SoftmaxState<KT>& st, Acc& acc_s, float scale) {
  using namespace cute;
  static_assert(decltype(size<1>(acc_s))::value == SoftmaxState<KT>::kMmaM, "");
  CUTE_UNROLL
  for (int mi = 0; mi < size<1>(acc_s); ++mi) {
    CUTE_UNROLL
    for (int r = 0; r < 2; ++r) {
      const int row = 2 * mi + r;
      float mx = st.row_max[row];
      CUTE_UNROLL
      for (int ni = 0; ni < size<2>(acc_s); ++ni) {
        mx = fmaxf(mx, acc_s(make_coord(make_coord(0, r), mi, ni)));
        mx = fmaxf(mx, acc_s(make_coord(make_coord(1, r), mi, ni)));
      }
      mx = quad_max(mx);
      const float m_scaled = (mx == -INFINITY) ? 0.f : mx * scale;
      const float rs = fast_exp2(st.row_max[row] * scale - m_scaled);   // exp2(-inf) = 0
      st.rescale[row] = rs;
      st.row_max[row] = mx;
      float sum = 0.f;
      CUTE_UNROLL
      for (int ni = 0; ni < size<2>(acc_s); ++ni) {
        CUTE_UNROLL
        for (int c = 0; c < 2; ++c) {
          float& s = acc_s(make_coord(make_coord(c, r), mi, ni));
          s = fast_exp2(s * scale - m_scaled);
          sum += s;
        }
      }
      st.row_sum[row] = st.row_sum[row] * rs + sum;   // thread-partial; reduced in finalize
    }
  }
}

template <class KT, class Acc>
__device__ __forceinline__ void rescale_acc(Acc& acc_o, const SoftmaxState<KT>& st) {
  using namespace cute;
  CUTE_UNROLL
  for (int mi = 0; mi < size<1>(acc_o); ++mi) {
    CUTE_UNROLL
    for (int r = 0; r < 2; ++r) {
      const float rs = st.rescale[2 * mi + r];
      CUTE_UNROLL
      for (int ni = 0; ni < size<2>(acc_o); ++ni) {
        acc_o(make_coord(make_coord(0, r), mi, ni)) *= rs;
        acc_o(make_coord(make_coord(1, r), mi, ni)) *= rs;
      }
    }
  }
}

template <class KT>
struct RowStats {
  float inv_sum[SoftmaxState<KT>::kRows];
  float lse2[SoftmaxState<KT>::kRows];
};

template <class KT>
__device__ __forceinline__ RowStats<KT> softmax_finalize(const SoftmaxState<KT>& st, float scale) {
  RowStats<KT> rs;
  CUTE_UNROLL
  for (int i = 0; i < SoftmaxState<KT>::kRows; ++i) {
    const float l = quad_sum(st.row_sum[i]);
    const bool empty = !(l > 0.f);
    rs.inv_sum[i] = empty ? 0.f : 1.f / l;
    rs.lse2[i] = empty ? -INFINITY : st.row_max[i] * scale + __log2f(l);
  }
  return rs;
}

}  // namespace qm
