// Experiment (not shipped): dense prefill D 128 with the consumers' KV loop run flat across query
// tiles. The shipped kernel ends a tile's KV loop, stores O and starts the next tile's first S GEMM
// and softmax with the tensor cores idle (about 2.3 us a 2k tile: docs/perf-notes.md). Here one loop
// walks (tile, KV block) steps: at a tile switch the next tile's first S = Q K^T is issued beside the
// current tile's last O += P V and its softmax runs beside that GEMM, as every other step's does;
// the finished tile's O is stored after. Nothing but the loop's own state crosses its back edge
// (unrolling the tile loop by two spilled 884 B before any early GEMM: perf-notes "sixteenth run").
//
// FLAT_QBUF 2: two Q buffers (the next tile's Q lands while the current one is in use), two K/V
// stages (shared memory: 2 x 32 + 2 x 2 x 32 KB). FLAT_QBUF 1: one Q buffer, three stages; the next
// Q loads only once the current tile's last S GEMM is done. Built by build_flat.py.
#include <qimeng/sm90/fa3.cuh>

#ifndef FLAT_QBUF
#define FLAT_QBUF 2
#endif
#ifndef FLAT_ENTRY
#define FLAT_ENTRY qm_flat_attn_bf16_hd128
#define FLAT_T qm::sm90::bf16
#endif
#ifndef FLAT_EARLY_S
#define FLAT_EARLY_S 0
#endif
#ifndef FLAT_DIAG_NOSTORE
#define FLAT_DIAG_NOSTORE 0
#endif
#ifndef FLAT_SMEM
#define FLAT_SMEM 0
#endif

namespace flat {
using namespace qm::sm90;

constexpr int kQBuf = FLAT_QBUF;
constexpr int kStages = FLAT_QBUF == 2 ? 2 : 3;
using KT = Traits<FLAT_T, 128, 128, 128, kStages, 2, 40, 232>;
using T = KT::T;

struct Storage {
  alignas(1024) T q[kQBuf][KT::kBlockM * KT::kHeadDim];
  alignas(1024) T k[KT::kStages][KT::kBlockN * KT::kHeadDim];
  alignas(1024) T v[KT::kStages][KT::kBlockN * KT::kHeadDim];
  alignas(8) uint64_t q_full[kQBuf];
  uint64_t q_empty[kQBuf];
  uint64_t k_full[KT::kStages];
  uint64_t k_empty[KT::kStages];
  uint64_t v_full[KT::kStages];
  uint64_t v_empty[KT::kStages];
  uint64_t tile_full[2];
  uint64_t tile_empty[2];
  int tile[2];
};
constexpr int kSmemBytes = static_cast<int>(sizeof(Storage)) + 1024;
static_assert(FLAT_SMEM == 0 || FLAT_SMEM == kSmemBytes, "build_flat.py's smem_bytes and the storage disagree");

__device__ __forceinline__ Storage& storage(char* raw) {
  const uintptr_t base = (reinterpret_cast<uintptr_t>(raw) + 1023) & ~uintptr_t(1023);
  return *reinterpret_cast<Storage*>(base);
}

__device__ __forceinline__ void init(Storage& sm) {
  if (threadIdx.x == 0) {
    for (int i = 0; i < kQBuf; ++i) {
      TxBarrier::init(&sm.q_full[i], 1);
      Barrier::init(&sm.q_empty[i], KT::kConsumerThreads);
    }
    for (int s = 0; s < KT::kStages; ++s) {
      TxBarrier::init(&sm.k_full[s], 1);
      TxBarrier::init(&sm.v_full[s], 1);
      Barrier::init(&sm.k_empty[s], KT::kConsumerThreads);
      Barrier::init(&sm.v_empty[s], KT::kConsumerThreads);
    }
    for (int s = 0; s < 2; ++s) {
      Barrier::init(&sm.tile_full[s], 1);
      Barrier::init(&sm.tile_empty[s], KT::kConsumerThreads);
    }
    cutlass::arch::fence_barrier_init();
  }
  __syncthreads();
}

// the i-th Q this CTA loads: buffer i % kQBuf, the parity of its (i / kQBuf)-th use
__device__ __forceinline__ void produce_q(const TmaDescs& tma, Storage& sm, int row0, int h, int b, int i) {
  const int buf = i % kQBuf;
  Barrier::wait(&sm.q_empty[buf], (static_cast<uint32_t>(i / kQBuf) & 1u) ^ 1u);
  TxBarrier::arrive_and_expect_tx(&sm.q_full[buf], KT::kQBytes);
  tma_load_tile<KT::kBlockM, KT::kHeadDim>(&tma.q, &sm.q_full[buf], sm.q[buf], row0, h, b);
}
__device__ __forceinline__ void wait_q(Storage& sm, int i) {
  Barrier::wait(&sm.q_full[i % kQBuf], static_cast<uint32_t>(i / kQBuf) & 1u);
}
__device__ __forceinline__ void release_q(Storage& sm, int i) { Barrier::arrive(&sm.q_empty[i % kQBuf]); }

// A tile with no key to see (causal with Lk < Lq, or Lk = 0) runs one KV block anyway, block n_lo, which
// the mask hides entirely: P = 0 and l = 0, so O = 0 as the shipped kernel stores it, without a branch
// of its own in the flat loop (the empty-tile branch spilled it). TMA fills rows past the tensor with
// zeros, so V holds no NaN there.
__device__ __forceinline__ int kv_end(int n_lo, int n_hi) { return max(n_hi, n_lo + 1); }

// a query tile's coordinates and KV range (the generated kernel's arithmetic)
struct TileInfo {
  int b, q_head, Lq, Lk, q0, n_lo, n_hi;
  __device__ __forceinline__ MaskArgs mask(const qm::AttnParams& p) const {
    return MaskArgs{q0, Lk, p.causal, Lk - Lq, qm::window_of(p)};
  }
};
__device__ __forceinline__ TileInfo decode(const qm::AttnParams& p, int word) {
  const TileScheduler tiles(qm::cdiv(p.max_seqlen_q, 128), p.heads_q, p.batch, p.max_seqlen_k, 128 * 2, p.causal);
  const TileWord w(qm::cdiv(p.max_seqlen_q, 128), p.heads_q, p.batch);
  const Tile tile = w.unpack(word, tiles);
  TileInfo t;
  t.b = tile.batch;
  t.q_head = tile.head;
  t.Lq = qm::seqlen_q_of(p, t.b);
  t.Lk = qm::seqlen_k_of(p, t.b);
  t.q0 = tile.m_block * 128 - (p.causal ? qm::cdiv(t.Lq, 128) * 128 - t.Lq : 0);
  t.n_hi = p.causal ? min(qm::cdiv(t.Lk, 128), qm::cdiv(t.q0 + 128 + t.Lk - t.Lq, 128)) : qm::cdiv(t.Lk, 128);
  t.n_lo = qm::window_of(p) ? qm::floordiv(max(0, t.q0 + t.Lk - t.Lq - qm::window_of(p) + 1), 128) : 0;
  t.n_hi = kv_end(t.n_lo, t.n_hi);
  return t;
}

__device__ __forceinline__ void issue_qk(Consumer<KT>& c, Consumer<KT>::TileS& S, Storage& sm, int qi, int stage) {
  using namespace cute;
  T* q = sm.q[qi % kQBuf];
  asm volatile("" : "+l"(q));  // as Consumer::issue_qk: descriptors rebuilt at each call
  Tensor sQ = make_tensor(make_smem_ptr(q), KT::SmemLayoutQ{});
  Tensor sK = make_tensor(make_smem_ptr(&sm.k[0][0]), KT::SmemLayoutK{});
  auto thr = c.mma_qk.get_thread_slice(c.tid);
  Tensor tSrQ = thr.partition_fragment_A(sQ);
  Tensor tSrK = thr.partition_fragment_B(sK);
  gemm_issue<true, false>(c.mma_qk, tSrQ, tSrK(_, _, _, stage), S);
}
template <class TP>
__device__ __forceinline__ void issue_pv(Consumer<KT>& c, Consumer<KT>::TileO& acc, TP const& P, Storage& sm,
                                         int stage) {
  using namespace cute;
  Tensor sVt = make_tensor(make_smem_ptr(&sm.v[0][0]), KT::SmemLayoutVt{});
  auto thr = c.mma_pv.get_thread_slice(c.tid);
  Tensor tOrV = thr.partition_fragment_B(sVt);
  gemm_issue<false, true>(c.mma_pv, P, tOrV(_, _, _, stage), acc);
}

// The next tile (word < 0: none left) and its Q waited for
__device__ __forceinline__ int next_tile(const qm::AttnParams& p, Storage& sm, int iter, TileInfo& t) {
  const int word = take_tile(sm, iter);
  if (word < 0) return word;
  t = decode(p, word);
  wait_q(sm, iter);
  return word;
}

}  // namespace flat

extern "C" __global__ void __launch_bounds__(384, 1) FLAT_ENTRY(const qm::AttnParams p,
                                                                const __grid_constant__ qm::sm90::TmaDescs tma,
                                                                int* const tile_counter) {
  using namespace flat;
  extern __shared__ char smem_raw[];
  Storage& sm = storage(smem_raw);
  init(sm);

  if (warpgroup_index() == 0) {  // the producer: as the shipped kernel's, with kQBuf Q buffers
    producer_registers<KT>();
    if (elected_producer()) {
      prefetch_tma_descs<false>(tma);
      PipeState<KT::kStages> ps_k, ps_v;
      const int tile_count = TileScheduler(qm::cdiv(p.max_seqlen_q, 128), p.heads_q, p.batch, p.max_seqlen_k, 128 * 2, p.causal).count;
      const TileCounter claims{tile_counter};
      int iter = 0;
      for (int tile_t = claims.first(); tile_t < tile_count; tile_t = claims.next(tile_t)) {
        const TileScheduler tiles(qm::cdiv(p.max_seqlen_q, 128), p.heads_q, p.batch, p.max_seqlen_k, 128 * 2, p.causal);
        const TileWord word(qm::cdiv(p.max_seqlen_q, 128), p.heads_q, p.batch);
        const Tile tile = tiles.at(tile_t);
        const int kv_head = qm::floordiv(tile.head, p.heads_q / p.heads_kv);
        const int Lq = qm::seqlen_q_of(p, tile.batch), Lk = qm::seqlen_k_of(p, tile.batch);
        const int q0 = tile.m_block * 128 - (p.causal ? qm::cdiv(Lq, 128) * 128 - Lq : 0);
        const int n_hi = p.causal ? min(qm::cdiv(Lk, 128), qm::cdiv(q0 + 128 + Lk - Lq, 128)) : qm::cdiv(Lk, 128);
        const int n_lo = qm::window_of(p) ? qm::floordiv(max(0, q0 + Lk - Lq - qm::window_of(p) + 1), 128) : 0;
        const int n_end = kv_end(n_lo, n_hi);
        if (q0 >= Lq) continue;
        const int q_iter = iter++;
        hand_tile(sm, word.pack(tile_t, tile), q_iter);
        prefetch_q<KT>(tma, q_row(p, tile.batch, q0), tile.head, q_batch(p, tile.batch));
        produce_q(tma, sm, q_row(p, tile.batch, q0), tile.head, q_batch(p, tile.batch), q_iter);
#pragma unroll 1
        for (int n = n_end - 1; n >= n_lo; --n) {
          produce_kv<KT>(&tma.k, sm.k_full, sm.k_empty, sm.k, ps_k, n * 128, kv_head, tile.batch);
          ps_k.advance();
          produce_kv<KT>(&tma.v, sm.v_full, sm.v_empty, sm.v, ps_v, n * 128, kv_head, tile.batch);
          ps_v.advance();
        }
      }
      hand_tile(sm, -1, iter);
    }
  } else {
    consumer_registers<KT>();
    Consumer<KT> c(threadIdx.x - kWarpgroupThreads);
    PipeState<KT::kStages> ps_k, ps_v;
    const PingPong<2> turn(c.tid);
    turn.start();
    int iter = 0;
    TileInfo cur;
    if (next_tile(p, sm, iter, cur) >= 0) {
      int cur_q = iter++;
      c.reset();
      auto acc = c.alloc_acc();
      int t_n = cur.n_hi - 1;
      auto S = c.alloc_s();
      wait_full(sm.k_full, ps_k.stage, ps_k.phase);
      turn.wait_turn();
      issue_qk(c, S, sm, cur_q, ps_k.stage);
      turn.pass_turn();
      c.wait_gemms<0>(S);
      if (cur.n_hi - cur.n_lo == 1) release_q(sm, cur_q);
      release(sm.k_empty, ps_k.stage);
      ps_k.advance();
      {
        const float scale = c.scores<false>(S, p);
        c.mask(S, cur.mask(p), t_n);
        c.online_softmax(S, scale);
      }
      auto P = c.reshape(S);
      for (;;) {
        // the KV block S_next is for: the current tile's next one, or the next tile's first. At a
        // switch the finished tile's store coordinates go aside (done) and cur becomes the next tile.
        int nxt_n = t_n - 1;
        const bool switching = nxt_n < cur.n_lo;
        int done_b = 0, done_h = 0, done_q0 = 0, done_Lq = 0;
        if (switching) {
          done_b = cur.b, done_h = cur.q_head, done_q0 = cur.q0, done_Lq = cur.Lq;
          if (next_tile(p, sm, iter, cur) < 0) break;
          cur_q = iter++;
          nxt_n = cur.n_hi - 1;
          c.carry_rows();  // the finished tile's row sums aside; m = -inf, l = 0 for the next one
        }
        auto S_next = c.alloc_s();
        wait_full(sm.k_full, ps_k.stage, ps_k.phase);
        wait_full(sm.v_full, ps_v.stage, ps_v.phase);
        turn.wait_turn();
        issue_qk(c, S_next, sm, cur_q, ps_k.stage);
        c.rescale(acc);  // alpha of P's block (the finished tile's last, at a switch)
        issue_pv(c, acc, P, sm, ps_v.stage);
        turn.pass_turn();
        c.wait_gemms<1>(S_next);
        if (nxt_n == cur.n_lo) release_q(sm, cur_q);
        release(sm.k_empty, ps_k.stage);
        ps_k.advance();
        const float scale = c.scores<false>(S_next, p);
        c.mask(S_next, cur.mask(p), nxt_n);
        c.online_softmax(S_next, scale);
        c.softmax_done(S_next);
        c.wait_gemms<0>(acc, P);
        release(sm.v_empty, ps_v.stage);
        ps_v.advance();
#if FLAT_EARLY_S
        // FLAT_EARLY_S: at a switch the new tile's second S GEMM is issued before the finished tile's
        // O is stored, and that second step runs here, inline, so that no GEMM in flight crosses the
        // loop's back edge (carrying one spilled: perf-notes "sixteenth run")
        if (switching && nxt_n - 1 >= cur.n_lo) {
          P = c.reshape(S_next);
          auto S2 = c.alloc_s();
          wait_full(sm.k_full, ps_k.stage, ps_k.phase);
          turn.wait_turn();
          issue_qk(c, S2, sm, cur_q, ps_k.stage);
          turn.pass_turn();
          c.normalize_and_store(acc, p, done_b, done_h, done_q0, done_Lq, c.l_carried);
          cute::clear(acc);
          wait_full(sm.v_full, ps_v.stage, ps_v.phase);
          turn.wait_turn();
          c.rescale(acc);
          issue_pv(c, acc, P, sm, ps_v.stage);
          turn.pass_turn();
          c.wait_gemms<1>(S2);
          if (nxt_n - 1 == cur.n_lo) release_q(sm, cur_q);
          release(sm.k_empty, ps_k.stage);
          ps_k.advance();
          const float scale2 = c.scores<false>(S2, p);
          c.mask(S2, cur.mask(p), nxt_n - 1);
          c.online_softmax(S2, scale2);
          c.softmax_done(S2);
          c.wait_gemms<0>(acc, P);
          release(sm.v_empty, ps_v.stage);
          ps_v.advance();
          P = c.reshape(S2);
          t_n = nxt_n - 1;
          continue;
        }
#endif
        if (switching) {  // the finished tile's O, while the other warpgroup's GEMMs run
#if !FLAT_DIAG_NOSTORE
          c.normalize_and_store(acc, p, done_b, done_h, done_q0, done_Lq, c.l_carried);
#endif
          cute::clear(acc);
        }
        P = c.reshape(S_next);
        t_n = nxt_n;
      }
      // the last tile's last O += P V
      wait_full(sm.v_full, ps_v.stage, ps_v.phase);
      c.rescale(acc);
      issue_pv(c, acc, P, sm, ps_v.stage);
      Consumer<KT>::wait_gemms<0>(acc, P);
      release(sm.v_empty, ps_v.stage);
      ps_v.advance();
      c.normalize_and_store(acc, p, cur.b, cur.q_head, cur.q0, cur.Lq);
    }
    turn.finish();
  }
}
