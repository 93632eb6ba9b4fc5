// qimeng/lowering.cuh -- the few helpers that code generated from TL (stage 2) calls besides the
// building blocks: TL's integer semantics (floor division), the runtime values TL names
// (seqlen_q[b], seqlen_k[b], WINDOW), and TileCoord / MaskInfo built from TL-level values.
#pragma once
#include "params.cuh"
#include "gmem_views.cuh"
#include "mask.cuh"

namespace qm {

// TL's integer `/` and `%` round toward -infinity; C++'s truncate toward zero.
__device__ __forceinline__ int floordiv(int a, int b) {
  const int q = a / b;
  return (q * b != a && ((a < 0) != (b < 0))) ? q - 1 : q;
}
__device__ __forceinline__ int floormod(int a, int b) { return a - floordiv(a, b) * b; }
__device__ __forceinline__ int cdiv(int a, int b) { return -floordiv(-a, b); }
// TL's gcd(a, b) of two positive tile sizes (constexpr: params fold at compile time)
__host__ __device__ constexpr int gcd(int a, int b) { return b == 0 ? a : gcd(b, a % b); }

__device__ __forceinline__ int seqlen_q_of(const AttnParams& p, int b) {
  return p.cu_seqlens_q ? p.cu_seqlens_q[b + 1] - p.cu_seqlens_q[b] : p.max_seqlen_q;
}
__device__ __forceinline__ int seqlen_k_of(const AttnParams& p, int b) {
  return p.seqlens_k ? p.seqlens_k[b]
       : p.cu_seqlens_k ? p.cu_seqlens_k[b + 1] - p.cu_seqlens_k[b] : p.max_seqlen_k;
}
// TL's WINDOW counts the visible keys up to and including the diagonal; the ABI's window_left
// counts those strictly before it.
__device__ __forceinline__ int window_of(const AttnParams& p) {
  return p.window_left > 0 ? p.window_left + 1 : 0;
}

// The tile a CTA owns, from the TL Q view `Q[b, head0 (: head0 + rpt), row0 : ...]`.
__device__ __forceinline__ TileCoord tile_coord(const AttnParams& p, int b, int head0, int rpt, int row0,
                                                int kv_head, int split, int kv_begin, int kv_end) {
  TileCoord tc;
  tc.batch = b;
  tc.head0 = head0;
  tc.kv_head = kv_head;
  tc.rpt = rpt;
  tc.row0 = row0;
  seq_lengths(p, b, tc);
  tc.rows = tc.seqlen_q * rpt;
  tc.split = split;
  tc.kv_begin = kv_begin;
  tc.kv_end = kv_end;
  return tc;
}

// MaskInfo from the arguments of TL's mask(S, kv_len=, causal=, offset=, window=).
template <class KT>
__device__ __forceinline__ MaskInfo mask_info(const AttnParams& p, const TileCoord& tc, int kv_len, int causal,
                                              int offset, int window) {
  MaskInfo m;
  m.seqlen_k = kv_len;
  m.offset = offset;
  m.causal = causal;
  m.window_left = window > 0 ? window - 1 : 0;
  m.row0 = tc.row0;
  m.rows = tc.rows;
  m.rpt = tc.rpt;
  set_tile_rows<KT>(m);
  m.softcap_pre = p.softcap > 0.f ? p.softmax_scale_log2 / (kLog2e * p.softcap) : 0.f;
  return m;
}

}  // namespace qm
