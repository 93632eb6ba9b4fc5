// qimeng/params.cuh -- the ONE flat kernel ABI shared by every attention kernel family.
//
// Every kernel is `extern "C" __global__ void NAME(const qm::AttnParams p)`: the struct is passed
// by value (kernel parameter space, 232 bytes).  The Python runtime packs the same struct with
// ctypes; the field order, types and byte offsets below are part of the ABI and are pinned by the
// static_asserts at the end of this file.  docs/kernels.md documents the semantics of each field.
#pragma once
#include <cstddef>
#include <cstdint>

namespace qm {

struct AttnParams {
  // ---- pointers (8 bytes each) ------------------------------------------------------------
  const void* q;             //   0  [tokens, heads_q, D]  (element type = kernel dtype)
  const void* k;             //   8  dense/varlen: [tokens, heads_kv, D]; paged: cache base of K
  const void* v;             //  16  same as k, for V
  void*       o;             //  24  [tokens, heads_q, D]  (written by prefill and by combine)
  const int*  cu_seqlens_q;  //  32  [batch+1] prefix sums of query lengths, or null => dense
  const int*  cu_seqlens_k;  //  40  [batch+1] prefix sums of key lengths (dense/varlen K), or null
  const int*  seqlens_k;     //  48  [batch] key lengths (overrides cu_seqlens_k), or null
  const int*  block_table;   //  56  [batch, block_table_stride] page ids (paged kernels only)
  float*      o_partial;     //  64  split-KV workspace [num_splits, total_q, heads_q, D] fp32
  float*      lse;           //  72  split-KV: [num_splits, total_q, heads_q] fp32 (log2 domain);
                             //      prefill: optional [total_q, heads_q] (null = not written)
  // ---- element strides (int64, in elements, not bytes) -------------------------------------
  int64_t q_batch_stride;    //  80  ignored when cu_seqlens_q != null
  int64_t q_token_stride;    //  88
  int64_t q_head_stride;     //  96
  int64_t o_batch_stride;    // 104  ignored when cu_seqlens_q != null
  int64_t o_token_stride;    // 112
  int64_t o_head_stride;     // 120
  int64_t k_batch_stride;    // 128  dense: batch (ignored if cu_seqlens_k); PAGED: page (block)
  int64_t k_token_stride;    // 136  dense: token;                           PAGED: slot in page
  int64_t k_head_stride;     // 144  kv head (both)
  int64_t v_batch_stride;    // 152  as k_batch_stride, for V
  int64_t v_token_stride;    // 160
  int64_t v_head_stride;     // 168
  int64_t block_table_stride;// 176  elements between rows of block_table
  // ---- sizes and flags (int32) --------------------------------------------------------------
  int batch;                 // 184
  int heads_q;               // 188
  int heads_kv;              // 192  heads_q % heads_kv == 0 (GQA group = heads_q / heads_kv)
  int max_seqlen_q;          // 196  dense: the query length; varlen: max over the batch (grid)
  int max_seqlen_k;          // 200  dense: the key length (when no seqlens); split count basis
  int page_size;             // 204  paged: tokens per page (any value >= 1, e.g. 16)
  int causal;                // 208  0/1; diagonal offset = seqlen_k - seqlen_q (bottom-right)
  int window_left;           // 212  0 = off; else key j visible iff j >= i + off - window_left
  int split_size;            // 216  split-KV: kv tokens per split, multiple of the kernel BLOCK_N
  int num_splits;            // 220  split-KV: grid.x of the decode kernel, = ceil(max_seqlen_k/split_size)
  float softmax_scale_log2;  // 224  softmax_scale * log2(e)
  float softcap;             // 228  0 = off; else logits = softcap * tanh(scale * q.k / softcap)
};                           // 232 bytes, 8-byte aligned

static_assert(sizeof(AttnParams) == 232, "AttnParams ABI size changed");
static_assert(offsetof(AttnParams, o_partial) == 64, "ABI");
static_assert(offsetof(AttnParams, q_batch_stride) == 80, "ABI");
static_assert(offsetof(AttnParams, block_table_stride) == 176, "ABI");
static_assert(offsetof(AttnParams, batch) == 184, "ABI");
static_assert(offsetof(AttnParams, num_splits) == 220, "ABI");
static_assert(offsetof(AttnParams, softmax_scale_log2) == 224, "ABI");
static_assert(offsetof(AttnParams, softcap) == 228, "ABI");

constexpr float kLog2e = 1.4426950408889634f;

}  // namespace qm
