// qimeng/gmem_views.cuh -- grid decode and global-memory address math ("lets" of the TL program).
//
//   grid_decode_prefill / grid_decode_split : blockIdx -> TileCoord (batch, heads, row tile, split)
//   make_q_rows   : row r of the M tile -> (query token, query head) -> Q / O / LSE addresses
//                   (prefill: 1 row per token; decode: GROUP rows per token = the GQA group packed)
//   make_kv_dense : dense [B, Sk, Hkv, D] or varlen (cu_seqlens_k) K/V rows
//   make_kv_paged : paged K/V rows through block_table (vLLM cache, any page_size)
#pragma once
#include "params.cuh"
#include "traits.cuh"
#include <cutlass/fast_math.h>

namespace qm {

struct TileCoord {
  int batch;
  int head0;      // query head of packed row 0 (prefill: the head; decode: kv_head * group)
  int kv_head;
  int rpt;        // rows per query token (1 prefill, GQA group in decode)
  int row0;       // first packed row of this tile (m_tile * BLOCK_M)
  int rows;       // number of valid packed rows = seqlen_q * rpt
  int seqlen_q;
  int seqlen_k;
  int q_tok0;     // global index of this sequence's first query token (for LSE / partial layout)
  int total_q;    // query tokens over the whole batch
  int split;      // split-KV index (0 for prefill)
  int kv_begin;   // kv token range handled by this CTA
  int kv_end;
};

__device__ __forceinline__ void seq_lengths(const AttnParams& p, int b, TileCoord& tc) {
  tc.q_tok0 = p.cu_seqlens_q ? p.cu_seqlens_q[b] : b * p.max_seqlen_q;
  tc.seqlen_q = p.cu_seqlens_q ? p.cu_seqlens_q[b + 1] - tc.q_tok0 : p.max_seqlen_q;
  tc.total_q = p.cu_seqlens_q ? p.cu_seqlens_q[p.batch] : p.batch * p.max_seqlen_q;
  tc.seqlen_k = p.seqlens_k ? p.seqlens_k[b]
              : p.cu_seqlens_k ? p.cu_seqlens_k[b + 1] - p.cu_seqlens_k[b] : p.max_seqlen_k;
}

// grid = (ceil(max_seqlen_q / BLOCK_M), heads_q, batch).  Row tiles are handed out last-first
// (blockIdx.x = 0 -> the last tile), so under a causal mask the longest tiles start first.
template <class KT>
__device__ __forceinline__ TileCoord grid_decode_prefill(const AttnParams& p) {
  TileCoord tc;
  tc.batch = blockIdx.z;
  tc.head0 = blockIdx.y;
  tc.kv_head = tc.head0 / (p.heads_q / p.heads_kv);
  tc.rpt = 1;
  tc.row0 = (gridDim.x - 1 - blockIdx.x) * KT::kBlockM;
  seq_lengths(p, tc.batch, tc);
  tc.rows = tc.seqlen_q;
  tc.split = 0;
  tc.kv_begin = 0;
  tc.kv_end = tc.seqlen_k;
  return tc;
}

// grid = (num_splits, heads_kv * m_tiles, batch), m_tiles = ceil(group * max_seqlen_q / BLOCK_M)
// (m_tiles == 1 whenever group * query tokens <= 16, i.e. the usual decode case)
template <class KT>
__device__ __forceinline__ TileCoord grid_decode_split(const AttnParams& p) {
  TileCoord tc;
  const int group = p.heads_q / p.heads_kv;
  const int m_tiles = (group * p.max_seqlen_q + KT::kBlockM - 1) / KT::kBlockM;
  tc.batch = blockIdx.z;
  tc.kv_head = blockIdx.y / m_tiles;
  tc.head0 = tc.kv_head * group;
  tc.rpt = group;
  tc.row0 = (blockIdx.y % m_tiles) * KT::kBlockM;
  seq_lengths(p, tc.batch, tc);
  tc.rows = tc.seqlen_q * group;
  tc.split = blockIdx.x;
  tc.kv_begin = min(tc.split * p.split_size, tc.seqlen_k);
  tc.kv_end = min(tc.kv_begin + p.split_size, tc.seqlen_k);
  return tc;
}

// Tile rows -> query rows.  Packed row index pr = row0 + r; token = pr / rpt; head = head0 + pr % rpt.
template <class T>
struct QRows {
  const T* q;        // Q of this sequence (batch / varlen offset applied)
  T* o;              // O of this sequence
  int64_t q_tok, q_head, o_tok, o_head;
  int row0, rows, rpt, head0, q_tok0, heads_q;
  __device__ __forceinline__ bool valid(int r) const { return row0 + r < rows; }
  __device__ __forceinline__ void token_head(int r, int& tok, int& head) const {
    const int pr = row0 + r;
    if (rpt == 1) { tok = pr; head = head0; }
    else { tok = pr / rpt; head = head0 + (pr - tok * rpt); }
  }
  __device__ __forceinline__ const T* q_row(int r) const {
    int tok, head; token_head(r, tok, head);
    return q + tok * q_tok + head * q_head;
  }
  __device__ __forceinline__ T* o_row(int r) const {
    int tok, head; token_head(r, tok, head);
    return o + tok * o_tok + head * o_head;
  }
  // index into [total_q, heads_q] (LSE) / [total_q, heads_q, D] (partial O, times D)
  __device__ __forceinline__ int64_t qh_index(int r) const {
    int tok, head; token_head(r, tok, head);
    return int64_t(q_tok0 + tok) * heads_q + head;
  }
};

template <class KT>
__device__ __forceinline__ QRows<typename KT::Element> make_q_rows(const AttnParams& p, const TileCoord& tc) {
  using T = typename KT::Element;
  QRows<T> r;
  const int64_t qoff = p.cu_seqlens_q ? int64_t(tc.q_tok0) * p.q_token_stride : int64_t(tc.batch) * p.q_batch_stride;
  const int64_t ooff = p.cu_seqlens_q ? int64_t(tc.q_tok0) * p.o_token_stride : int64_t(tc.batch) * p.o_batch_stride;
  r.q = reinterpret_cast<const T*>(p.q) + qoff;
  r.o = reinterpret_cast<T*>(p.o) + ooff;
  r.q_tok = p.q_token_stride; r.q_head = p.q_head_stride;
  r.o_tok = p.o_token_stride; r.o_head = p.o_head_stride;
  r.row0 = tc.row0; r.rows = tc.rows; r.rpt = tc.rpt; r.head0 = tc.head0;
  r.q_tok0 = tc.q_tok0; r.heads_q = p.heads_q;
  return r;
}

// ---- K/V row sources -----------------------------------------------------------------------
template <class T>
struct KVRowsDense {
  const T* base;     // batch/varlen + kv_head offset applied
  int64_t tok_stride;
  int seqlen;
  __device__ __forceinline__ const T* row(int t) const { return base + t * tok_stride; }
};

template <class T>
struct KVRowsPaged {
  const T* base;     // kv_head offset applied
  const int* table;  // block_table row of this sequence
  int64_t page_stride, slot_stride;
  // t -> (page, slot) by multiply-shift: a plain `t / page_size` by a run-time divisor costs ~25
  // instructions per 16-byte chunk on the copy path (seen in the v0.2 decode SASS)
  cutlass::FastDivmod page_div;
  int seqlen;
  __device__ __forceinline__ const T* row(int t) const {
    int pi, slot;
    page_div(pi, slot, t);
    return base + int64_t(__ldg(table + pi)) * page_stride + int64_t(slot) * slot_stride;
  }
};

template <class Rows> struct KVView { Rows k, v; };

template <class KT>
__device__ __forceinline__ KVView<KVRowsDense<typename KT::Element>> make_kv_dense(const AttnParams& p, const TileCoord& tc) {
  using T = typename KT::Element;
  KVView<KVRowsDense<T>> kv;
  const int64_t kt0 = p.cu_seqlens_k ? p.cu_seqlens_k[tc.batch] : 0;
  kv.k.base = reinterpret_cast<const T*>(p.k) + (p.cu_seqlens_k ? kt0 * p.k_token_stride : int64_t(tc.batch) * p.k_batch_stride)
            + int64_t(tc.kv_head) * p.k_head_stride;
  kv.v.base = reinterpret_cast<const T*>(p.v) + (p.cu_seqlens_k ? kt0 * p.v_token_stride : int64_t(tc.batch) * p.v_batch_stride)
            + int64_t(tc.kv_head) * p.v_head_stride;
  kv.k.tok_stride = p.k_token_stride; kv.v.tok_stride = p.v_token_stride;
  kv.k.seqlen = tc.seqlen_k; kv.v.seqlen = tc.seqlen_k;
  return kv;
}

template <class KT>
__device__ __forceinline__ KVView<KVRowsPaged<typename KT::Element>> make_kv_paged(const AttnParams& p, const TileCoord& tc) {
  using T = typename KT::Element;
  KVView<KVRowsPaged<T>> kv;
  const int* table = p.block_table + int64_t(tc.batch) * p.block_table_stride;
  kv.k.base = reinterpret_cast<const T*>(p.k) + int64_t(tc.kv_head) * p.k_head_stride;
  kv.v.base = reinterpret_cast<const T*>(p.v) + int64_t(tc.kv_head) * p.v_head_stride;
  kv.k.table = table; kv.v.table = table;
  kv.k.page_stride = p.k_batch_stride; kv.k.slot_stride = p.k_token_stride;
  kv.v.page_stride = p.v_batch_stride; kv.v.slot_stride = p.v_token_stride;
  kv.k.page_div = cutlass::FastDivmod(p.page_size); kv.v.page_div = kv.k.page_div;
  kv.k.seqlen = tc.seqlen_k; kv.v.seqlen = tc.seqlen_k;
  return kv;
}

}  // namespace qm
