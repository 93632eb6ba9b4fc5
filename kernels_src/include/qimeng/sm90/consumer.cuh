// qimeng/sm90/consumer.cuh -- what the consumer warpgroups run for TL's consumer role: S = Q K^T by
// GMMA from shared memory, scale (soft-cap) and mask, the online softmax in registers (base 2),
// Reshape P <- S as the register A operand of O += P V, and the normalised, predicated store of O.
//
// Rows: a consumer thread holds 2 rows of each accumulator (acc_rowcol); the 4 threads of a quad
// share a row, so row reductions end with two shuffles. The row sum stays thread-partial until the
// end, as in FA2/FA3.
#pragma once
#include <cmath>
#include <cute/atom/copy_traits_sm90.hpp>
#include "mma.cuh"
#include "pipeline.cuh"
#include "../params.cuh"

namespace qm::sm90 {

// TL's mask(S, kv_len=, causal=, offset=, window=) for one CTA; q0 = the tile's first query row
struct MaskArgs {
  int q0;
  int kv_len;
  int causal;
  int offset;
  int window;  // TL's WINDOW: keys visible up to and including the diagonal; 0 = none
};

template <class KT>
struct Consumer {
  using T = typename KT::T;
  using TileS = decltype(cute::partition_fragment_C(typename KT::TiledMmaQK{},
                                                    cute::Shape<typename KT::BM, typename KT::BN>{}));
  using TileO = decltype(cute::partition_fragment_C(typename KT::TiledMmaPV{},
                                                    cute::Shape<typename KT::BM, typename KT::HD>{}));
  using TileP = decltype(cute::make_tensor<typename KT::T>(acc_as_operand_a(TileS{}.layout())));
  static constexpr int kRows = decltype(cute::size<0>(acc_rowcol(TileS{}.layout())))::value;

  typename KT::TiledMmaQK mma_qk;
  typename KT::TiledMmaPV mma_pv;
  int tid;  // 0 .. kConsumerThreads - 1
  float m[kRows];  // running max (log2 domain, scaled), init=-inf
  float l[kRows];  // thread-partial row sum, init=0
  float alpha[kRows];
  bool rescale_pending = false;  // rescale=lazy: the last softmax moved this warp's max, O needs acc * alpha
  float l_carried[kRows];  // carry=pv: the finished tile's row sums, for its store after the next tile's first step

  __device__ __forceinline__ explicit Consumer(int tid_) : tid(tid_) {
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      m[r] = -INFINITY;
      l[r] = 0.f;
    }
  }

  // a new query tile (tiles=persistent): m = -inf, l = 0 again
  __device__ __forceinline__ void reset() {
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      m[r] = -INFINITY;
      l[r] = 0.f;
    }
  }

  // carry=pv: the next tile's rows start (m = -inf, l = 0) while the carried tile's O is still to be
  // normalised: its row sums move to l_carried first
  __device__ __forceinline__ void carry_rows() {
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) l_carried[r] = l[r];
    reset();
  }

  __device__ __forceinline__ TileS alloc_s() const { return TileS{}; }
  __device__ __forceinline__ TileP alloc_p() const { return TileP{}; }
  __device__ __forceinline__ TileO alloc_acc() const {
    TileO acc;
    cute::clear(acc);
    return acc;
  }

  // Compute S = gemm(sQ, sK.T) with mma=gmma, issued without waiting: both operands in shared memory,
  // S starts from zero. The softmax of another tile (overlap=softmax) or of the other warpgroup
  // (ping-pong) runs while it is on the tensor cores; wait_gemms<N> waits until at most N of this
  // warpgroup's commit groups are still running.
  __device__ __forceinline__ void issue_qk(TileS& S, SharedStorage<KT>& sm, int stage) {
    using namespace cute;
    // sQ's address goes through an empty asm so that its GMMA descriptors (one 64-bit value per
    // k-block, loop-invariant) are rebuilt from it at each call instead of being held in registers
    // through the whole KV loop: 32 registers at D = 256, which the overlapped loop spilled.
    T* q = sm.q;
    asm volatile("" : "+l"(q));
    Tensor sQ = make_tensor(make_smem_ptr(q), typename KT::SmemLayoutQ{});
    Tensor sK = make_tensor(make_smem_ptr(&sm.k[0][0]), typename KT::SmemLayoutK{});
    auto thr = mma_qk.get_thread_slice(tid);
    Tensor tSrQ = thr.partition_fragment_A(sQ);
    Tensor tSrK = thr.partition_fragment_B(sK);
    gemm_issue<true, false>(mma_qk, tSrQ, tSrK(_, _, _, stage), S);
  }
  // Compute acc += gemm(P, sV) with mma=gmma, issued without waiting: P from registers, V^T from shared memory
  template <class TP>
  __device__ __forceinline__ void issue_pv(TileO& acc, TP const& P, SharedStorage<KT>& sm, int stage) {
    using namespace cute;
    Tensor sVt = make_tensor(make_smem_ptr(&sm.v[0][0]), typename KT::SmemLayoutVt{});
    auto thr = mma_pv.get_thread_slice(tid);
    Tensor tOrV = thr.partition_fragment_B(sVt);
    gemm_issue<false, true>(mma_pv, P, tOrV(_, _, _, stage), acc);
  }
  template <int N, class... Ts>
  __device__ __forceinline__ static void wait_gemms(Ts&... operands) {
    cute::warpgroup_wait<N>();
    (cute::warpgroup_fence_operand(operands), ...);
  }
  // The overlapped loop's softmax, kept ahead of the wait for the previous tile's O += P V. ptxas
  // schedules that wait (WARPGROUP.DEPBAR) as early as its basic block allows: at the top of the
  // block the softmax is in, so every exponential ran after the GEMM instead of beside it, register
  // fences notwithstanding (they emit no instruction), and with two P buffers too. A branch on the
  // row sums ends the block after the softmax: ptxas does not hoist the wait above it. The branch
  // is never taken (l sums exponentials: >= 0, and NaN compares false); the vote keeps it
  // warp-uniform (a divergent one pushed the loop's GMMA descriptors out of uniform registers).
  __device__ __forceinline__ void softmax_done(TileS& S) {
    cute::warpgroup_fence_operand(S);
    float sum = 0.f;
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) sum += l[r];
    if (__any_sync(0xffffffffu, sum < -1.f)) asm volatile("trap;");
  }
  // acc += gemm(P, sV), waited for: the plain loop's, and the overlapped loop's last tile
  template <class TP>
  __device__ __forceinline__ void gemm_pv(TileO& acc, TP const& P, SharedStorage<KT>& sm, int stage) {
    issue_pv(acc, P, sm, stage);
    wait_gemms<0>(acc, const_cast<TP&>(P));  // P's registers are fenced, not written
  }

  // Compute S = softcap(S * softmax_scale, SOFTCAP) * LOG2E when soft-capped; otherwise the scale
  // is folded into the exponentials (returns the factor that takes S to the log2 domain).
  template <bool kSoftcap>
  __device__ __forceinline__ float scores(TileS& S, const AttnParams& p) const {
    if constexpr (kSoftcap) {
      const float pre = p.softmax_scale_log2 / (kLog2e * p.softcap), cap = p.softcap * kLog2e;
      CUTE_UNROLL
      for (int i = 0; i < cute::size(S); ++i) S(i) = cap * tanhf(S(i) * pre);
      return 1.f;
    } else {
      return p.softmax_scale_log2;
    }
  }

  // Does KV tile n hold any key this tile's rows must not see? (uniform over the CTA)
  __device__ __forceinline__ static bool needs_mask(const MaskArgs& mk, int n) {
    const int first = n * KT::kBlockN, last = first + KT::kBlockN - 1;
    return last >= mk.kv_len || (mk.causal && last > mk.q0 + mk.offset) ||
           (mk.window > 0 && first <= mk.q0 + KT::kBlockM - 1 + mk.offset - mk.window);
  }

  // Compute S = mask(S, ...): -inf where key j >= kv_len, or (causal) j > i + offset, or
  // (window) j <= i + offset - window; i, j from the MMA's own coordinate map. Per row, the visible
  // keys are one range [lo, hi): each score then costs a compare and a select (or two with a window).
  __device__ __forceinline__ void mask(TileS& S, const MaskArgs& mk, int n) const {
    using namespace cute;
    if (!needs_mask(mk, n)) return;
    Tensor s = make_tensor(S.data(), acc_rowcol(S.layout()));
    auto cS = make_identity_tensor(Shape<typename KT::BM, typename KT::BN>{});
    Tensor tScS = mma_qk.get_thread_slice(tid).partition_C(cS);
    Tensor c = make_tensor(tScS.data(), acc_rowcol(tScS.layout()));
    const int col0 = n * KT::kBlockN;
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      const int row = mk.q0 + get<0>(c(r, 0));
      int hi = mk.kv_len - col0;  // tile-local columns at or past hi are hidden
      if (mk.causal) hi = min(hi, row + mk.offset + 1 - col0);
      if (mk.window > 0) {
        const int lo = row + mk.offset - mk.window + 1 - col0;  // and those below lo
        CUTE_UNROLL
        for (int j = 0; j < size<1>(s); ++j) {
          const int col = get<1>(c(r, j));
          if (col >= hi || col < lo) s(r, j) = -INFINITY;
        }
      } else {
        CUTE_UNROLL
        for (int j = 0; j < size<1>(s); ++j) {
          if (get<1>(c(r, j)) >= hi) s(r, j) = -INFINITY;
        }
      }
    }
  }

  // m_new = max(m, row_max(S)); alpha = exp2(m - finite(m_new)); S = exp2(S - finite(m_new));
  // l = l * alpha + row_sum(S); m = m_new. `scale` takes raw S to the log2 domain.
  //
  // rescale=lazy (KT::kLazyRescale): a warp moves its rows' running max only when one of its rows' new max
  // exceeds the max it holds by more than KT::kRescaleSlack; otherwise m stays, alpha is 1 and O's rescale
  // is skipped (a warp-uniform branch on a vote). The exponentials are then taken against a max up to the
  // slack below the true one: P <= 2^slack, and O = acc / l is unchanged because acc and l share that
  // reference (a later growth rescales both; split=tail's merge reads m and l as a pair too).
  __device__ __forceinline__ void online_softmax(TileS& S, float scale) {
    if constexpr (KT::kLazyRescale) {
      lazy_softmax(S, scale);
    } else {
      using namespace cute;
      Tensor s = make_tensor(S.data(), acc_rowcol(S.layout()));
      CUTE_UNROLL
      for (int r = 0; r < kRows; ++r) {
        const float mx = quad_row_max(s, r);
        const float m_new = fmaxf(m[r], mx * scale);
        const float m_fin = m_new == -INFINITY ? 0.f : m_new;
        alpha[r] = exp2f(m[r] - m_fin);
        l[r] = l[r] * alpha[r] + exp2_row(s, r, scale, m_fin);
        m[r] = m_new;
      }
    }
  }

  // rescale=lazy's softmax: the row maxima first, one vote on them, the max moved (and alpha set) only on
  // a growth past the slack, then the exponentials against the max held
  __device__ __forceinline__ void lazy_softmax(TileS& S, float scale) {
    using namespace cute;
    Tensor s = make_tensor(S.data(), acc_rowcol(S.layout()));
    float row_max[kRows];
    bool past = false;
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      row_max[r] = quad_row_max(s, r) * scale;
      past |= row_max[r] > m[r] + KT::kRescaleSlack;  // m = -inf: any finite max
    }
    rescale_pending = __any_sync(0xffffffffu, past);
    if (rescale_pending) {
      CUTE_UNROLL
      for (int r = 0; r < kRows; ++r) {
        const float m_new = fmaxf(m[r], row_max[r]);
        alpha[r] = exp2f(m[r] - (m_new == -INFINITY ? 0.f : m_new));
        l[r] *= alpha[r];
        m[r] = m_new;
      }
    }
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) l[r] += exp2_row(s, r, scale, m[r] == -INFINITY ? 0.f : m[r]);
  }

  // the max of row r over the quad that shares it (this thread's columns, then two shuffles)
  template <class TS>
  __device__ __forceinline__ static float quad_row_max(TS const& s, int r) {
    float mx = -INFINITY;
    CUTE_UNROLL
    for (int c = 0; c < cute::size<1>(s); ++c) mx = fmaxf(mx, s(r, c));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 1));
    return fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 2));
  }

  // S = exp2(S * scale - m_fin) along this thread's columns of row r; returns their sum
  template <class TS>
  __device__ __forceinline__ static float exp2_row(TS& s, int r, float scale, float m_fin) {
    float sum = 0.f;
    CUTE_UNROLL
    for (int c = 0; c < cute::size<1>(s); ++c) {
      s(r, c) = exp2f(fmaf(s(r, c), scale, -m_fin));
      sum += s(r, c);
    }
    return sum;
  }

  // Compute acc = acc * alpha (rescale=lazy: only after a softmax that moved this warp's max)
  __device__ __forceinline__ void rescale(TileO& acc) const {
    using namespace cute;
    if constexpr (KT::kLazyRescale) {
      if (!rescale_pending) return;  // alpha = 1 in every row of this warp
    }
    Tensor o = make_tensor(acc.data(), acc_rowcol(acc.layout()));
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      CUTE_UNROLL
      for (int c = 0; c < size<1>(o); ++c) o(r, c) *= alpha[r];
    }
  }

  // Reshape P <- S: the probabilities in the input dtype, laid out as the A operand of O += P V.
  // P owns its registers (A layout); it is filled through a view with S's layout, so every value
  // keeps the register position it had in S.
  __device__ __forceinline__ auto reshape(TileS const& S) const {
    using namespace cute;
    auto P = make_tensor<T>(acc_as_operand_a(S.layout()));
    Tensor p_as_s = make_tensor(P.data(), S.layout());
    CUTE_UNROLL
    for (int i = 0; i < size(S); ++i) p_as_s(i) = static_cast<T>(S(i));
    return P;
  }

  // Paged K/V: a TMA box copies whole pages, so the rows of the last tile past kv_len hold whatever
  // the cache holds there, NaN included, and P = 0 times NaN is NaN in O += P V. The consumer
  // threads zero those V rows of the slot before the GEMM reads it (a swizzle permutes 16-byte units
  // inside a 128-byte row only, so whole rows are found at their unswizzled place), then order the
  // writes before the GMMA's (async proxy) reads. Every consumer thread calls it for the same tile.
  __device__ __forceinline__ void zero_rows_past(SharedStorage<KT>& sm, int stage, int valid_rows) const {
    if (valid_rows >= KT::kBlockN) return;
    constexpr int kChunkRows = KT::kBlockN, kUnits = kSwizzleCols * sizeof(T) / 16;  // 16-byte units per row
    const int rows = KT::kBlockN - (valid_rows > 0 ? valid_rows : 0);
    const int total = (KT::kHeadDim / kSwizzleCols) * rows * kUnits;
    uint4* base = reinterpret_cast<uint4*>(sm.v[stage]);
    for (int i = tid; i < total; i += KT::kConsumerThreads) {
      const int unit = i % kUnits, row = (i / kUnits) % rows, chunk = i / (kUnits * rows);
      base[(chunk * kChunkRows + (KT::kBlockN - rows) + row) * kUnits + unit] = make_uint4(0, 0, 0, 0);
    }
    cutlass::arch::fence_view_async_shared();
    consumers_sync<KT>();
  }

  // 1 / nonzero(l) of a row, from this thread's part of its sum (the quad's four parts added)
  __device__ __forceinline__ static float inverse_row_sum(float part) {
    part += __shfl_xor_sync(0xffffffff, part, 1);
    part += __shfl_xor_sync(0xffffffff, part, 2);
    return part == 0.f ? 1.f : 1.f / part;
  }

  // Compute acc = acc / nonzero(l); Copy O[b, h, q0 : q0 + BLOCK_M] <- acc (rows 0 .. seqlen_q - 1 only).
  // A thread holds column pairs 8 j + 2 q (q = its lane in the quad that shares the row); a 4 x 4
  // transpose of 32-bit pairs inside the quad gives each thread 8 neighbouring columns, stored with
  // one 16-byte store: a quarter of the store instructions of pairwise 4-byte stores, each warp
  // store writing whole 32-byte sectors (scripts/sm90_trace.py: the O store took 4.1 us of a 31 us
  // CTA as 16-bit stores, 1.7 us as 32-bit ones). O not 16-byte aligned: 4-byte stores.
  __device__ __forceinline__ void normalize_and_store(TileO& acc, const AttnParams& p, int b, int h, int q0,
                                                      int seqlen_q) {
    normalize_and_store(acc, p, b, h, q0, seqlen_q, l);
  }
  // the same with the row sums given (carry=pv: l_carried)
  __device__ __forceinline__ void normalize_and_store(TileO& acc, const AttnParams& p, int b, int h, int q0,
                                                      int seqlen_q, const float (&row_sums)[kRows]) {
#ifdef QM_SM90_DIAG_NO_O_STORE  // scripts/sm90_variants.py "nostore": the epilogue's cost, timed (O is not written)
    // O and the row sums feed a store that never runs (one NaN payload), so that ptxas keeps the GEMMs
    // and the softmax that make them (an empty asm use is gone by the time ptxas sees the code)
    float sink = 0.f;
    CUTE_UNROLL
    for (int i = 0; i < cute::size(acc); ++i) sink += acc(i);
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) sink += row_sums[r];
    if (__float_as_uint(sink) == 0x7fc0beefu) static_cast<float*>(p.o)[tid] = sink;
    return;
#endif
    using namespace cute;
    Tensor o = make_tensor(acc.data(), acc_rowcol(acc.layout()));
    auto cO = make_identity_tensor(Shape<typename KT::BM, typename KT::HD>{});
    Tensor tOcO = mma_pv.get_thread_slice(tid).partition_C(cO);
    Tensor co = make_tensor(tOcO.data(), acc_rowcol(tOcO.layout()));
    static_assert(decltype(size<1>(o))::value == KT::kHeadDim / 4, "a thread holds D / 4 columns of a row");
    // varlen rows (cu_seqlens_q set) start at the sequence's first token of a [tokens, heads, D] O
    T* out = static_cast<T*>(p.o) + h * p.o_head_stride +
             (p.cu_seqlens_q ? static_cast<int64_t>(p.cu_seqlens_q[b]) * p.o_token_stride
                             : static_cast<int64_t>(b) * p.o_batch_stride);
    const bool wide = (reinterpret_cast<uintptr_t>(out) % 16 == 0) && (p.o_token_stride % 8 == 0);  // CTA-uniform
    const int q = tid % 4;
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      const float inv = inverse_row_sum(row_sums[r]);
      const int row = q0 + get<0>(co(r, 0));
      // rows of the sequence only: 0 <= row < seqlen_q (a causal tile's padding rows lie before 0)
      const bool stored = static_cast<unsigned>(row) < static_cast<unsigned>(seqlen_q);
      T* out_row = out + static_cast<int64_t>(row) * p.o_token_stride;
      uint32_t word[KT::kHeadDim / 8];  // pair j: columns 8 j + 2 q, 8 j + 2 q + 1
      CUTE_UNROLL
      for (int j = 0; j < KT::kHeadDim / 8; ++j) {
        cutlass::AlignedArray<T, 2> pair;
        pair[0] = static_cast<T>(o(r, 2 * j) * inv);
        pair[1] = static_cast<T>(o(r, 2 * j + 1) * inv);
        word[j] = reinterpret_cast<uint32_t const&>(pair);
      }
      if (wide) {
        CUTE_UNROLL
        for (int g = 0; g < KT::kHeadDim / 32; ++g) {
          const uint4 v = quad_transpose(word[4 * g], word[4 * g + 1], word[4 * g + 2], word[4 * g + 3], q);
          // every lane of the quad took part in the shuffles; only the store is predicated
          if (stored) *reinterpret_cast<uint4*>(out_row + 32 * g + 8 * q) = v;
        }
      } else if (stored) {
        CUTE_UNROLL
        for (int j = 0; j < KT::kHeadDim / 8; ++j) *reinterpret_cast<uint32_t*>(out_row + 8 * j + 2 * q) = word[j];
      }
    }
  }

  // Compute acc = acc / nonzero(l); Copy O[b, h, q0 : q0 + BLOCK_M] <- acc with via=tma. Each
  // warpgroup writes its 64 normalised rows into sm.out.o (sQ's swizzled layout, by stmatrix) and one
  // of its threads issues D / 64 bulk tensor stores of {64, 64} boxes. The stores run on while the
  // warpgroup goes on to its next tile, whose store first waits until they have read the tile
  // (cp.async.bulk.wait_group.read, cheap by then): no address arithmetic, shuffles or predicated
  // stores on the consumers' path. The TMA unit drops rows past the tensor's end; a varlen tile
  // (cu_seqlens_q) whose rows run past its sequence, into the next one's, and a tile with padding rows
  // before the sequence (causal, q0 < 0) take normalize_and_store.
  // Timed on an H100 (session 9): the epilogue is shorter (0.80 against 1.02 us at D = 128), the
  // kernels are not faster (D = 64 3-7% slower, D = 128 level), so no shipped program uses it.
  __device__ __forceinline__ void normalize_and_store_tma(TileO& acc, SharedStorage<KT>& sm, const TmaDescs& tma,
                                                          const AttnParams& p, int b, int h, int q0, int seqlen_q) {
    using namespace cute;
    static_assert(KT::kStoreOTma, "the kernel's Traits give O no shared tile (STORE_O_TMA)");
    const int wg = tid / kWarpgroupThreads;
    const int row0 = q0 + 64 * wg;  // this warpgroup's first row
    if (row0 < 0 || (p.cu_seqlens_q && row0 + 64 > seqlen_q)) {
      normalize_and_store(acc, p, b, h, q0, seqlen_q);
      return;
    }
    float inv[kRows];
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) inv[r] = inverse_row_sum(l[r]);
    Tensor o = make_tensor(acc.data(), acc_rowcol(acc.layout()));
    Tensor out = make_tensor<T>(acc.layout());
    Tensor out_rc = make_tensor(out.data(), acc_rowcol(out.layout()));
    CUTE_UNROLL
    for (int r = 0; r < size<0>(o); ++r) {
      CUTE_UNROLL
      for (int c = 0; c < size<1>(o); ++c) out_rc(r, c) = static_cast<T>(o(r, c) * inv[r]);
    }
    const bool leader = tid % kWarpgroupThreads == 0;
    if (leader) tma_store_wait<0>();  // the previous tile's stores have read the shared tile
    warpgroup_sync(wg);
    auto copy_o = make_tiled_copy_C(Copy_Atom<SM90_U32x4_STSM_N, T>{}, mma_pv);
    auto thr = copy_o.get_thread_slice(tid);
    Tensor sO = make_tensor(make_smem_ptr(sm.out.o), typename KT::SmemLayoutQ{});
    copy(copy_o, thr.retile_S(out), thr.partition_D(sO));
    tma_store_fence();  // the generic-proxy writes, visible to the bulk copy (async proxy)
    warpgroup_sync(wg);
    if (leader) {
      tma_store_tile<64, KT::kBlockM, KT::kHeadDim>(&tma.o, sm.out.o + 64 * wg * kSwizzleCols, q_row(p, b, row0), h,
                                                    q_batch(p, b));
    }
  }
  // the CTA's last stores have read the shared tile (it must outlive them)
  __device__ __forceinline__ void drain_stores() const {
    if (tid % kWarpgroupThreads == 0) cute::tma_store_wait<0>();
  }

  // Lane q of a quad holds m[q][k] = a_k (k = 0..3); returns {m[0][q], m[1][q], m[2][q], m[3][q]}.
  // Two butterfly rounds: across lane bit 1 the pair of k-blocks the partner needs, then across bit 0.
  __device__ __forceinline__ static uint4 quad_transpose(uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, int q) {
    const bool qh = q & 2, ql = q & 1;
    // round 1 (lane ^ 2): keep k-block qh, send the other; get the partner's k-block qh
    const uint32_t keep0 = qh ? a2 : a0, keep1 = qh ? a3 : a1;
    const uint32_t got0 = __shfl_xor_sync(0xffffffff, qh ? a0 : a2, 2);
    const uint32_t got1 = __shfl_xor_sync(0xffffffff, qh ? a1 : a3, 2);
    // now: keep = m[q][2 qh + 0/1], got = m[q ^ 2][2 qh + 0/1]; this lane's column is c = 2 qh + ql
    // round 2 (lane ^ 1): send the column-(c ^ 1) values, get m[q ^ 1][c] and m[q ^ 3][c]
    const uint32_t mine = ql ? keep1 : keep0, mine2 = ql ? got1 : got0;
    const uint32_t from1 = __shfl_xor_sync(0xffffffff, ql ? keep0 : keep1, 1);
    const uint32_t from3 = __shfl_xor_sync(0xffffffff, ql ? got0 : got1, 1);
    // v[s] = m[q ^ s][c] for s = 0..3; the result wants m[t][c] = v[t ^ q]
    const uint32_t w0 = ql ? from1 : mine, w1 = ql ? mine : from1;   // w[t] = v[t ^ ql]
    const uint32_t w2 = ql ? from3 : mine2, w3 = ql ? mine2 : from3;
    return qh ? make_uint4(w2, w3, w0, w1) : make_uint4(w0, w1, w2, w3);
  }

  // ---- split=stream's store and merge (split.cuh StreamTail); kept after the shipped members, whose
  // line numbers the line info carries into ptxas, which scheduled the D 128 kernel differently when they moved
  // the tile row of this thread's row r (0 .. kRows - 1), as the MMA's accumulator lays the rows out
  __device__ __forceinline__ int tile_row(int r) const {
    using namespace cute;
    auto cO = make_identity_tensor(Shape<typename KT::BM, typename KT::HD>{});
    Tensor tOcO = mma_pv.get_thread_slice(tid).partition_C(cO);
    Tensor co = make_tensor(tOcO.data(), acc_rowcol(tOcO.layout()));
    return get<0>(co(r, 0));
  }
  // O's row 0 of sequence b, head h: varlen rows (cu_seqlens_q set) start at the sequence's first token of a
  // [tokens, heads, D] O
  __device__ __forceinline__ static T* o_base(const AttnParams& p, int b, int h) {
    return static_cast<T*>(p.o) + h * p.o_head_stride +
           (p.cu_seqlens_q ? static_cast<int64_t>(p.cu_seqlens_q[b]) * p.o_token_stride
                           : static_cast<int64_t>(b) * p.o_batch_stride);
  }
  // normalize_and_store's rows: row q0 + i of the tile to out + (q0 + i) x token_stride (split=stream: O, or a
  // part's block of the workspace, through this one store). normalize_and_store keeps its own copy: through
  // this one, ptxas scheduled the shipped D 64 kernel differently
  __device__ __forceinline__ void store_rows(TileO& acc, T* out, int64_t token_stride, int q0, int seqlen_q,
                                             const float (&row_sums)[kRows]) {
    using namespace cute;
    Tensor o = make_tensor(acc.data(), acc_rowcol(acc.layout()));
    auto cO = make_identity_tensor(Shape<typename KT::BM, typename KT::HD>{});
    Tensor tOcO = mma_pv.get_thread_slice(tid).partition_C(cO);
    Tensor co = make_tensor(tOcO.data(), acc_rowcol(tOcO.layout()));
    static_assert(decltype(size<1>(o))::value == KT::kHeadDim / 4, "a thread holds D / 4 columns of a row");
    const bool wide = (reinterpret_cast<uintptr_t>(out) % 16 == 0) && (token_stride % 8 == 0);  // CTA-uniform
    const int q = tid % 4;
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      const float inv = inverse_row_sum(row_sums[r]);
      const int row = q0 + get<0>(co(r, 0));
      // rows of the sequence only: 0 <= row < seqlen_q (a causal tile's padding rows lie before 0)
      const bool stored = static_cast<unsigned>(row) < static_cast<unsigned>(seqlen_q);
      T* out_row = out + static_cast<int64_t>(row) * token_stride;
      uint32_t word[KT::kHeadDim / 8];  // pair j: columns 8 j + 2 q, 8 j + 2 q + 1
      CUTE_UNROLL
      for (int j = 0; j < KT::kHeadDim / 8; ++j) {
        cutlass::AlignedArray<T, 2> pair;
        pair[0] = static_cast<T>(o(r, 2 * j) * inv);
        pair[1] = static_cast<T>(o(r, 2 * j + 1) * inv);
        word[j] = reinterpret_cast<uint32_t const&>(pair);
      }
      if (wide) {
        CUTE_UNROLL
        for (int g = 0; g < KT::kHeadDim / 32; ++g) {
          const uint4 v = quad_transpose(word[4 * g], word[4 * g + 1], word[4 * g + 2], word[4 * g + 3], q);
          // every lane of the quad took part in the shuffles; only the store is predicated
          if (stored) *reinterpret_cast<uint4*>(out_row + 32 * g + 8 * q) = v;
        }
      } else if (stored) {
        CUTE_UNROLL
        for (int j = 0; j < KT::kHeadDim / 8; ++j) *reinterpret_cast<uint32_t*>(out_row + 8 * j + 2 * q) = word[j];
      }
    }
  }
};

}  // namespace qm::sm90
