// Experiment (not shipped): the shipped dense D 128 program's generated kernel with the consumers' tile
// loop unrolled by two, so that tile B's first S GEMM can be issued before tile A's O is normalised and
// stored (UNROLL2_EARLY 1) with nothing carried over the loop's back edge; UNROLL2_EARLY 0 is the same
// unrolled loop with the shipped order (the control). docs/perf-notes.md "sixteenth run".
#ifndef UNROLL2_EARLY
#define UNROLL2_EARLY 1
#endif
#ifndef QM_UNROLL2_ENTRY
#define QM_UNROLL2_ENTRY qm_unroll2_attn_bf16_hd128
#define QM_UNROLL2_T qm::sm90::bf16
#endif
#include <qimeng/sm90/fa3.cuh>

// ---- kernel attn (TL line 69): 384 threads = 1 producer + 2 consumer warpgroups
extern "C" __global__ void __launch_bounds__(384, 1) QM_UNROLL2_ENTRY(const qm::AttnParams p, const __grid_constant__ qm::sm90::TmaDescs tma, int* const tile_counter) {
  using KT = qm::sm90::Traits<QM_UNROLL2_T, 128, 128, 128, 3, 2, 40, 232>;
  static_assert(qm::sm90::smem_bytes<KT>() == 231424, "launch metadata and building blocks disagree on shared memory");
  // Allocate sQ, sK x STAGES, sV x STAGES (shared, 128-byte swizzled) and their stage barriers
  extern __shared__ char smem_raw[];
  auto& sm = qm::sm90::shared_storage<KT>(smem_raw);
  qm::sm90::init_barriers<KT>(sm);
  // grid (m_block : cdiv(max_seq_q, BLOCK_M), q_head : heads_q, b : batch) with tiles=persistent: one CTA per SM; its producer claims tiles from tile_counter
  if (qm::sm90::warpgroup_index() == 0) {  // L84: Role producer with warpgroups=1, regs=PRODUCER_REGS
    qm::sm90::producer_registers<KT>();  // setmaxnreg.dec
    if (qm::sm90::elected_producer()) {
      qm::sm90::prefetch_tma_descs<KT::kStoreOTma>(tma);
      qm::sm90::PipeState<KT::kStages> ps_k, ps_v;  // the K/V rings run on across tiles
      const int tile_count = qm::sm90::TileScheduler(qm::cdiv(p.max_seqlen_q, 128), p.heads_q, p.batch, p.max_seqlen_k, 128 * 2, p.causal).count;
      const qm::sm90::TileCounter claims{tile_counter};
      int iter = 0;  // the tiles handed to the consumers
      for (int tile_t = claims.first(); tile_t < tile_count; tile_t = claims.next(tile_t)) {
        const qm::sm90::TileScheduler tiles(qm::cdiv(p.max_seqlen_q, 128), p.heads_q, p.batch, p.max_seqlen_k, 128 * 2, p.causal);
        const qm::sm90::TileWord word(qm::cdiv(p.max_seqlen_q, 128), p.heads_q, p.batch);
        const qm::sm90::Tile tile = tiles.at(tile_t);
        const int t_m_block = tile.m_block;
        const int t_q_head = tile.head;
        const int t_b = tile.batch;
        // let kv_head = q_head / GROUP
        const int t_kv_head = qm::floordiv(t_q_head, (p.heads_q / p.heads_kv));
        // let Lq = seqlen_q[b]
        const int t_Lq = qm::seqlen_q_of(p, t_b);
        // let Lk = seqlen_k[b]
        const int t_Lk = qm::seqlen_k_of(p, t_b);
        // let q0 = m_block * BLOCK_M - select(CAUSAL, cdiv(Lq, BLOCK_M) * BLOCK_M - Lq, 0)
        const int t_q0 = ((t_m_block * 128) - (p.causal ? ((qm::cdiv(t_Lq, 128) * 128) - t_Lq) : 0));
        // let n_end = select(CAUSAL, min(cdiv(Lk, BLOCK_N), cdiv(q0 + BLOCK_M + Lk - Lq, BLOCK_N)), cdiv(Lk, BLOCK_N))
        const int t_n_end = (p.causal ? min(qm::cdiv(t_Lk, 128), qm::cdiv((((t_q0 + 128) + t_Lk) - t_Lq), 128)) : qm::cdiv(t_Lk, 128));
        // let n_start = select(WINDOW, max(0, q0 + Lk - Lq - WINDOW + 1) / BLOCK_N, 0)
        const int t_n_start = (qm::window_of(p) ? qm::floordiv(max(0, ((((t_q0 + t_Lk) - t_Lq) - qm::window_of(p)) + 1)), 128) : 0);
        const int n_lo = t_n_start, n_hi = t_n_end;
        if (t_q0 >= qm::seqlen_q_of(p, t_b)) continue;  // a query block past this sequence (varlen batches)
        const int q_iter = iter++;  // the tiles this CTA loads a Q for: the parity of sQ's barriers
        qm::sm90::hand_tile(sm, word.pack(tile_t, tile), q_iter);  // to the consumers, before its Q
        qm::sm90::prefetch_q<KT>(tma, qm::sm90::q_row(p, t_b, t_q0), t_q_head, qm::sm90::q_batch(p, t_b));  // into L2 while sQ is still in use
        // L85: Copy sQ <- Q[b, q_head, q0 : q0 + BLOCK_M] with via=tma (varlen rows: from the sequence's first token; once the last tile's Q is released)
        qm::sm90::produce_q<KT>(tma, sm, qm::sm90::q_row(p, t_b, t_q0), t_q_head, qm::sm90::q_batch(p, t_b), q_iter);
        #pragma unroll 1
        for (int t_n = n_hi - 1; t_n >= n_lo; --t_n) {  // Loop n in n_start .. n_end
          qm::sm90::produce_kv<KT>(&tma.k, sm.k_full, sm.k_empty, sm.k, ps_k, (t_n * 128), t_kv_head, t_b);  // L87: Copy sK <- K[b, kv_head, n * BLOCK_N : n * BLOCK_N + BLOCK_N] with via=tma
          ps_k.advance();
          qm::sm90::produce_kv<KT>(&tma.v, sm.v_full, sm.v_empty, sm.v, ps_v, (t_n * 128), t_kv_head, t_b);  // L88: Copy sV <- V[b, kv_head, n * BLOCK_N : n * BLOCK_N + BLOCK_N] with via=tma
          ps_v.advance();
        }
      }
      qm::sm90::hand_tile(sm, -1, iter);  // no tile left
    }
  } else {  // consumers: the tile loop unrolled by two tiles (tile A, then tile B)
    qm::sm90::consumer_registers<KT>();  // setmaxnreg.inc
    qm::sm90::Consumer<KT> c(threadIdx.x - qm::sm90::kWarpgroupThreads);
    qm::sm90::PipeState<KT::kStages> ps_k, ps_v;
    const qm::sm90::PingPong<2> turn(c.tid);
    turn.start();
    // a tile's coordinates and KV range from its word (as the generated kernel computes them)
#define UNR_DECODE(X, WORD)                                                                                        \
    const qm::sm90::TileScheduler X##tiles(qm::cdiv(p.max_seqlen_q, 128), p.heads_q, p.batch, p.max_seqlen_k, 128 * 2, p.causal); \
    const qm::sm90::TileWord X##word(qm::cdiv(p.max_seqlen_q, 128), p.heads_q, p.batch);                             \
    const qm::sm90::Tile X##tile = X##word.unpack(WORD, X##tiles);                                                  \
    const int X##q_head = X##tile.head;                                                                             \
    const int X##b = X##tile.batch;                                                                                 \
    const int X##Lq = qm::seqlen_q_of(p, X##b);                                                                     \
    const int X##Lk = qm::seqlen_k_of(p, X##b);                                                                     \
    const int X##q0 = ((X##tile.m_block * 128) - (p.causal ? ((qm::cdiv(X##Lq, 128) * 128) - X##Lq) : 0));          \
    const int X##n_hi = (p.causal ? min(qm::cdiv(X##Lk, 128), qm::cdiv((((X##q0 + 128) + X##Lk) - X##Lq), 128)) : qm::cdiv(X##Lk, 128)); \
    const int X##n_lo = (qm::window_of(p) ? qm::floordiv(max(0, ((((X##q0 + X##Lk) - X##Lq) - qm::window_of(p)) + 1)), 128) : 0); \
    const qm::sm90::MaskArgs X##mk{X##q0, X##Lk, p.causal, (X##Lk - X##Lq), qm::window_of(p)};
    // the first KV tile's S, waited for (issued already), then its softmax: P
#define UNR_FIRST_SOFTMAX(X, S)                                                                                    \
    c.wait_gemms<0>(S);                                                                                            \
    if (X##n_hi - X##n_lo == 1) qm::sm90::release_q(sm);                                                           \
    qm::sm90::release(sm.k_empty, ps_k.stage);                                                                     \
    ps_k.advance();                                                                                                \
    { const float scale = c.scores<false>(S, p); c.mask(S, X##mk, X##n_hi - 1); c.online_softmax(S, scale); }
    // the KV loop from the second KV tile on, and the last O += P V (waited for)
#define UNR_KV_LOOP(X, P, ACC)                                                                                     \
    for (int t_n = X##n_hi - 2; t_n >= X##n_lo; --t_n) {                                                           \
      auto S_next = c.alloc_s();                                                                                   \
      qm::sm90::wait_full(sm.k_full, ps_k.stage, ps_k.phase);                                                      \
      qm::sm90::wait_full(sm.v_full, ps_v.stage, ps_v.phase);                                                      \
      turn.wait_turn();                                                                                            \
      c.issue_qk(S_next, sm, ps_k.stage);                                                                          \
      c.rescale(ACC);                                                                                              \
      c.issue_pv(ACC, P, sm, ps_v.stage);                                                                          \
      turn.pass_turn();                                                                                            \
      c.wait_gemms<1>(S_next);                                                                                     \
      if (t_n == X##n_lo) qm::sm90::release_q(sm);                                                                 \
      qm::sm90::release(sm.k_empty, ps_k.stage);                                                                   \
      ps_k.advance();                                                                                              \
      const float scale = c.scores<false>(S_next, p);                                                              \
      c.mask(S_next, X##mk, t_n);                                                                                  \
      c.online_softmax(S_next, scale);                                                                             \
      c.softmax_done(S_next);                                                                                      \
      c.wait_gemms<0>(ACC, P);                                                                                     \
      qm::sm90::release(sm.v_empty, ps_v.stage);                                                                   \
      ps_v.advance();                                                                                              \
      P = c.reshape(S_next);                                                                                       \
    }                                                                                                              \
    qm::sm90::wait_full(sm.v_full, ps_v.stage, ps_v.phase);                                                        \
    c.rescale(ACC);                                                                                                \
    c.gemm_pv(ACC, P, sm, ps_v.stage);                                                                             \
    qm::sm90::release(sm.v_empty, ps_v.stage);                                                                     \
    ps_v.advance();
#define UNR_ISSUE_FIRST_S(S)                                                                                       \
    qm::sm90::wait_full(sm.k_full, ps_k.stage, ps_k.phase);                                                        \
    turn.wait_turn();                                                                                              \
    c.issue_qk(S, sm, ps_k.stage);                                                                                 \
    turn.pass_turn();
    for (int iter = 0;;) {
      const int tile_a = qm::sm90::take_tile(sm, iter);
      if (tile_a < 0) break;
      UNR_DECODE(a_, tile_a)
      qm::sm90::wait_q(sm, iter++);
      c.reset();
      auto acc = c.alloc_acc();
      if (a_n_hi > a_n_lo) {
        auto S = c.alloc_s();
        UNR_ISSUE_FIRST_S(S)
        UNR_FIRST_SOFTMAX(a_, S)
        auto P = c.reshape(S);
        UNR_KV_LOOP(a_, P, acc)
      } else {
        qm::sm90::release_q(sm);
      }
#if UNROLL2_EARLY == 2
      c.normalize_and_store(acc, p, a_b, a_q_head, a_q0, a_Lq);
      const int tile_b = qm::sm90::take_tile(sm, iter);
      if (tile_b < 0) break;
      UNR_DECODE(b_, tile_b)
      qm::sm90::wait_q(sm, iter++);
      c.reset();
      auto acc_b = c.alloc_acc();
      if (b_n_hi > b_n_lo) {
        auto S = c.alloc_s();
        UNR_ISSUE_FIRST_S(S)
        UNR_FIRST_SOFTMAX(b_, S)
        auto P = c.reshape(S);
        UNR_KV_LOOP(b_, P, acc_b)
      } else {
        qm::sm90::release_q(sm);
      }
      c.normalize_and_store(acc_b, p, b_b, b_q_head, b_q0, b_Lq);
#else
      // tile B: taken before tile A's O is stored, so that its first S GEMM runs beside that store
      const int tile_b = qm::sm90::take_tile(sm, iter);
      if (tile_b < 0) {
        c.normalize_and_store(acc, p, a_b, a_q_head, a_q0, a_Lq);
        break;
      }
      UNR_DECODE(b_, tile_b)
      qm::sm90::wait_q(sm, iter++);
      if (b_n_hi > b_n_lo) {
        auto S = c.alloc_s();
#if UNROLL2_EARLY
        UNR_ISSUE_FIRST_S(S)
        c.normalize_and_store(acc, p, a_b, a_q_head, a_q0, a_Lq);  // while S of tile B runs
        c.reset();
#else
        c.normalize_and_store(acc, p, a_b, a_q_head, a_q0, a_Lq);
        c.reset();
        UNR_ISSUE_FIRST_S(S)
#endif
        auto acc_b = c.alloc_acc();
        UNR_FIRST_SOFTMAX(b_, S)
        auto P = c.reshape(S);
        UNR_KV_LOOP(b_, P, acc_b)
        c.normalize_and_store(acc_b, p, b_b, b_q_head, b_q0, b_Lq);
      } else {
        c.normalize_and_store(acc, p, a_b, a_q_head, a_q0, a_Lq);
        qm::sm90::release_q(sm);
        c.reset();
        auto acc_b = c.alloc_acc();
        c.normalize_and_store(acc_b, p, b_b, b_q_head, b_q0, b_Lq);
      }
#endif
    }
    turn.finish();
  }
}
