// qimeng/combine.cuh -- split-KV combine (the TL "combine" statement of the decode family).
// grid = (heads_q, batch), block = THREADS.  For each query token i of sequence b and head h:
//   M = max_s lse[s, t, h];  w_s = exp2(lse_s - M) (0 for lse_s = -inf);
//   O[t, h, :] = sum_s w_s * o_partial[s, t, h, :] / sum_s w_s   (0 when every split is empty)
// with t = q_tok0(b) + i, the global query-token index.
#pragma once
#include "params.cuh"
#include "gmem_views.cuh"

namespace qm {

template <class T, int HEAD_DIM, int THREADS>
__device__ __forceinline__ void combine_splits(const AttnParams& p) {
  TileCoord tc;
  const int h = blockIdx.x, b = blockIdx.y;
  seq_lengths(p, b, tc);
  const int64_t plane = int64_t(tc.total_q) * p.heads_q;
  T* o = reinterpret_cast<T*>(p.o) + (p.cu_seqlens_q ? int64_t(tc.q_tok0) * p.o_token_stride
                                                     : int64_t(b) * p.o_batch_stride)
         + int64_t(h) * p.o_head_stride;
  for (int i = 0; i < tc.seqlen_q; ++i) {
    const int64_t qh = int64_t(tc.q_tok0 + i) * p.heads_q + h;
    float mx = -INFINITY;
    for (int s = 0; s < p.num_splits; ++s) mx = fmaxf(mx, p.lse[s * plane + qh]);
    for (int d = threadIdx.x; d < HEAD_DIM; d += THREADS) {
      float den = 0.f, acc = 0.f;
      for (int s = 0; s < p.num_splits; ++s) {
        const float l = p.lse[s * plane + qh];
        if (l == -INFINITY) continue;
        const float w = exp2f(l - mx);
        den += w;
        acc += w * p.o_partial[(s * plane + qh) * HEAD_DIM + d];
      }
      o[int64_t(i) * p.o_token_stride + d] = T(den > 0.f ? acc / den : 0.f);
    }
  }
}

}  // namespace qm
