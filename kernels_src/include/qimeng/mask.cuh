// qimeng/mask.cuh -- the TL "mask" statements and the kv-block range of the main loop.
//
//   make_mask        lets: per-tile mask parameters (causal offset = seqlen_k - seqlen_q)
//   kv_block_range   lets: [lo, hi) of kv blocks that can hold a visible key for this tile
//   apply_softcap    S = tanh(S * scale / softcap)   (softcap > 0 only; S are raw q.k products)
//   apply_mask       S = -inf where key j is invisible to query i:
//                      j >= seqlen_k, or (causal and j > i + off), or (window_left > 0 and
//                      j < i + off - window_left).  Skipped for tiles that need no masking.
// A query row i of packed row pr is i = pr / rows_per_token (decode packs the GQA group).
#pragma once
#include <climits>
#include "params.cuh"
#include "traits.cuh"
#include "gmem_views.cuh"

namespace qm {

struct MaskInfo {
  int seqlen_k;
  int offset;       // seqlen_k - seqlen_q
  int causal;
  int window_left;
  int row0, rows, rpt;
  // query rows of this tile's first and last packed row: hoisted out of the KV loop, where a
  // run-time division by rpt per tile showed up in the decode SASS
  int q_first, q_last;
  float softcap_pre;  // scale / softcap, 0 = no softcap
};

template <class KT>
__device__ __forceinline__ void set_tile_rows(MaskInfo& m) {
  m.q_first = m.row0 / m.rpt;
  m.q_last = (m.row0 + KT::kBlockM - 1) / m.rpt;
}

struct BlockRange { int lo, hi; };

template <class KT>
__device__ __forceinline__ MaskInfo make_mask(const AttnParams& p, const TileCoord& tc) {
  MaskInfo m;
  m.seqlen_k = tc.seqlen_k;
  m.offset = tc.seqlen_k - tc.seqlen_q;
  m.causal = p.causal;
  m.window_left = p.window_left;
  m.row0 = tc.row0; m.rows = tc.rows; m.rpt = tc.rpt;
  set_tile_rows<KT>(m);
  m.softcap_pre = p.softcap > 0.f ? p.softmax_scale_log2 / (kLog2e * p.softcap) : 0.f;
  return m;
}

// scale (log2 domain) that multiplies the (possibly soft-capped) scores in the softmax
__device__ __forceinline__ float softmax_scale_log2(const AttnParams& p) {
  return p.softcap > 0.f ? p.softcap * kLog2e : p.softmax_scale_log2;
}

template <class KT>
__device__ __forceinline__ BlockRange kv_block_range(const MaskInfo& m, const TileCoord& tc) {
  int lo_tok = tc.kv_begin, hi_tok = tc.kv_end;
  const int q_first = m.row0 / m.rpt;
  const int q_last = (min(m.row0 + KT::kBlockM, m.rows) - 1) / m.rpt;
  if (m.causal) hi_tok = min(hi_tok, q_last + m.offset + 1);
  if (m.window_left > 0) lo_tok = max(lo_tok, q_first + m.offset - m.window_left);
  BlockRange r;
  if (hi_tok <= lo_tok) { r.lo = 0; r.hi = 0; return r; }
  r.lo = lo_tok / KT::kBlockN;
  r.hi = (hi_tok + KT::kBlockN - 1) / KT::kBlockN;
  return r;
}

template <class KT, class Acc>
__device__ __forceinline__ void apply_softcap(Acc& acc_s, const MaskInfo& m) {
  if (m.softcap_pre == 0.f) return;
  CUTE_UNROLL
  for (int i = 0; i < cute::size(acc_s); ++i) acc_s(i) = fast_tanh(acc_s(i) * m.softcap_pre);
}

template <class KT, class Acc>
__device__ __forceinline__ void apply_mask(Acc& acc_s, const MaskInfo& m, int n_block) {
  using namespace cute;
  const int blk0 = n_block * KT::kBlockN;
  const int q_first = m.q_first, q_last = m.q_last;
  const bool need = blk0 + KT::kBlockN > m.seqlen_k
                 || (m.causal && blk0 + KT::kBlockN - 1 > q_first + m.offset)
                 || (m.window_left > 0 && blk0 < q_last + m.offset - m.window_left);
  if (!need) return;
  typename KT::TiledMma mma;
  auto thr = mma.get_thread_slice(KT::mma_tid());
  Tensor cS = make_identity_tensor(Shape<Int<KT::kMmaRows>, Int<KT::kMmaCols>>{});
  Tensor tScS = thr.partition_C(cS);
  const int col_base = blk0 + KT::warp_col0();
  // This thread's first packed row, opaque: the per-row bounds below are computed here, for the
  // few tiles that need a mask, instead of being hoisted out of the KV loop (2 registers per row
  // held through every tile).  The other rows are constant offsets from it.
  const int row_first = get<0>(tScS(make_coord(make_coord(0, 0), 0, 0)));
  const int pr_first = opaque(m.row0 + row_first);
  CUTE_UNROLL
  for (int mi = 0; mi < size<1>(acc_s); ++mi) {
    CUTE_UNROLL
    for (int r = 0; r < 2; ++r) {
      const int pr = pr_first + (get<0>(tScS(make_coord(make_coord(0, r), mi, 0))) - row_first);
      const int qi = m.rpt == 1 ? pr : pr / m.rpt;
      int hi = m.seqlen_k;
      if (m.causal) hi = min(hi, qi + m.offset + 1);
      const int lo = m.window_left > 0 ? qi + m.offset - m.window_left : INT_MIN;
      CUTE_UNROLL
      for (int ni = 0; ni < size<2>(acc_s); ++ni) {
        CUTE_UNROLL
        for (int c = 0; c < 2; ++c) {
          const int col = col_base + get<1>(tScS(make_coord(make_coord(c, 0), 0, ni)));
          if (col >= hi || col < lo) acc_s(make_coord(make_coord(c, r), mi, ni)) = -INFINITY;
        }
      }
    }
  }
}

}  // namespace qm
