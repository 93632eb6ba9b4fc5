// scripts/experiments/stagger_sm90.cu -- an experiment, not a shipped kernel: dense prefill on sm_90a
// with the consumer warpgroups on query tiles of their own, staggered in time, sharing one K/V ring.
//
// Why: in the shipped kernels both consumer warpgroups share one 128-row tile, so they end and start
// their tiles together, and the tensor pipe idles through both epilogues and first softmaxes (about
// 5500 cycles a tile at D 128; docs/perf-notes.md "twelfth run", Next). Here each warpgroup owns a
// 64-row sub-tile. Both still read the same K/V stage at the same time: warpgroup 1 starts its first
// sub-tile STAGGER_DELAY KV steps after warpgroup 0 and visits its keys rotated to the block warpgroup
// 0 is on (attention over one query row does not depend on the order of its keys), so the two
// consume one stream of K/V blocks while their tile boundaries lie apart.
//
// The producer hands out ring items: a K/V block for one warpgroup or for both (a tag per slot).
// Items differ only where the warpgroups are on different heads (or, under a causal mask, ranges).
// Every consumer thread arrives on every slot's empty barrier (a warpgroup steps over the other's
// slots), so no warpgroup lags the ring by a whole cycle; once a warpgroup has no sub-tile left, the
// producer arrives for it.
//
// Tiles: 128-row tiles claimed from the counter in the shipped kernels' order (scheduler.cuh), each
// split into a 64-row sub-tile per warpgroup; each warpgroup loads its own next Q once its last S GEMM
// is done. Built by scripts/experiments/build_stagger.py for the interleaved A/B of scripts/ab_sm90.py;
// the index entry gives Q's map 64-row boxes.
//
// Measured (docs/perf-notes.md "fourteenth run"): correct, and slower than the shipped kernel in every
// form. The stagger did not pay against its own delay-0 control; the ring machinery cost 12-15% a KV
// step (tag reads, stage broadcasts). The diagnostic switches below are the runs that found that.
// Known bug (run 12): B 1, H 32 / 8, Lq = Lk = 4099 under a causal mask fails the validator's bound
// (relative L2 5.6e-2 bf16); not found. The timed rows were all without a mask and correct.
#include <qimeng/sm90/fa3.cuh>

#ifndef STAGGER_DELAY
#define STAGGER_DELAY -1  // KV steps warpgroup 1 starts after warpgroup 0; < 0: half of the first sub-tile's
#endif
#ifndef STAGGER_PREGS  // the producer's registers (setmaxnreg): 40 x 128 + 232 x 256 = 168 x 384, all the CTA
#define STAGGER_PREGS 40  // was given at launch (48 left the consumers' setmaxnreg.inc waiting forever: run 5)
#endif
#ifndef STAGGER_SIMPLE_PRODUCER  // 1 (diagnostic; delay 0, no mask, whole tiles): the shipped producer loop (claim a tile,
#define STAGGER_SIMPLE_PRODUCER 0  // hand its halves to the two warpgroups, its K/V blocks as shared items)
#endif
#ifndef STAGGER_REVERSE  // diagnostic, simple producer only: keys from the last block down (the shipped order)
#define STAGGER_REVERSE 0
#endif
#ifndef STAGGER_NO_SHFL  // diagnostic, with STAGGER_NO_TAGS: no broadcast of the stage after its wait
#define STAGGER_NO_SHFL 0
#endif
#ifndef STAGGER_NO_TAGS  // diagnostic, simple producer only (every item for both): no slot tag read
#define STAGGER_NO_TAGS 0  // and the ring position from item 0
#endif
#ifndef STAGGER_TURNS  // 1: the warpgroups take turns issuing their GEMMs (pipeline.cuh's PingPong), as the
#define STAGGER_TURNS 0  // shipped D 128 kernel does; only for STAGGER_DELAY 0 and whole 128-row tiles,
#endif                   // where both warpgroups consume the same items in the same order

namespace st {
using namespace qm::sm90;

template <class KT>
struct Storage {
  SharedStorage<KT> base;  // sQ (warpgroup w's rows at 64 w), the K/V ring and its barriers
  alignas(8) uint64_t q_full[2];
  uint64_t tile_full[2][2];  // [warpgroup][slot]
  uint64_t tile_empty[2][2];
  // [warpgroup][slot]: the sub-tile's word (< 0: none left), its first KV block, and the ring items
  // issued before it was handed (where a warpgroup that joins late, or leaves, is in the ring)
  int tile[2][2][3];
  int tag_k[KT::kStages];  // which warpgroups the item in a slot is for: bit w
  int tag_v[KT::kStages];
};

template <class KT>
__device__ __forceinline__ void init(Storage<KT>& s) {
  if (threadIdx.x == 0) {
    for (int w = 0; w < 2; ++w) {
      TxBarrier::init(&s.q_full[w], 1);
      for (int i = 0; i < 2; ++i) {
        Barrier::init(&s.tile_full[w][i], 1);
        Barrier::init(&s.tile_empty[w][i], kWarpgroupThreads);
      }
    }
    for (int i = 0; i < KT::kStages; ++i) {
      TxBarrier::init(&s.base.k_full[i], 1);
      TxBarrier::init(&s.base.v_full[i], 1);
      Barrier::init(&s.base.k_empty[i], KT::kConsumerThreads);
      Barrier::init(&s.base.v_empty[i], KT::kConsumerThreads);
    }
    cutlass::arch::fence_barrier_init();
  }
  __syncthreads();
}

__device__ __forceinline__ void arrive_count(uint64_t* bar, int count) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0], %1;\n" ::"r"(cute::cast_smem_ptr_to_uint(bar)), "r"(count)
               : "memory");
}

template <class KT>
__device__ __forceinline__ void hand(Storage<KT>& s, int w, int i, int word, int first, int items) {
  const int slot = i & 1;
  Barrier::wait(&s.tile_empty[w][slot], ((static_cast<uint32_t>(i) >> 1) & 1u) ^ 1u);
  s.tile[w][slot][0] = word;
  s.tile[w][slot][1] = first;
  s.tile[w][slot][2] = items;
  Barrier::arrive(&s.tile_full[w][slot]);
}

template <class KT>
__device__ __forceinline__ int3 take(Storage<KT>& s, int w, int i) {
  const int slot = i & 1;
  Barrier::wait(&s.tile_full[w][slot], (static_cast<uint32_t>(i) >> 1) & 1u);
  const int word = *static_cast<volatile int*>(&s.tile[w][slot][0]);
  const int first = *static_cast<volatile int*>(&s.tile[w][slot][1]);
  const int items = *static_cast<volatile int*>(&s.tile[w][slot][2]);
  Barrier::arrive(&s.tile_empty[w][slot]);
  return make_int3(__shfl_sync(0xffffffff, word, 0), __shfl_sync(0xffffffff, first, 0),
                   __shfl_sync(0xffffffff, items, 0));
}

// one K/V block into the next slot of each ring, for the warpgroups in `tag`; `proxy`: warpgroups that
// have left, for whom the producer arrives on the empty barriers
template <class KT>
__device__ __forceinline__ void produce_item(const TmaDescs& tma, Storage<KT>& s, PipeState<KT::kStages>& ps, int tag,
                                             int proxy, int row0, int h, int b) {
  auto& sm = s.base;
  Barrier::wait(&sm.k_empty[ps.stage], ps.phase ^ 1u);
  s.tag_k[ps.stage] = tag;
  if (proxy) arrive_count(&sm.k_empty[ps.stage], kWarpgroupThreads * __popc(proxy));
  TxBarrier::arrive_and_expect_tx(&sm.k_full[ps.stage], KT::kKVBytes);
  tma_load_tile<KT::kBlockN, KT::kHeadDim>(&tma.k, &sm.k_full[ps.stage], sm.k[ps.stage], row0, h, b);
  Barrier::wait(&sm.v_empty[ps.stage], ps.phase ^ 1u);
  s.tag_v[ps.stage] = tag;
  if (proxy) arrive_count(&sm.v_empty[ps.stage], kWarpgroupThreads * __popc(proxy));
  TxBarrier::arrive_and_expect_tx(&sm.v_full[ps.stage], KT::kKVBytes);
  tma_load_tile<KT::kBlockN, KT::kHeadDim>(&tma.v, &sm.v_full[ps.stage], sm.v[ps.stage], row0, h, b);
  ps.advance();
}

// the consumer's next slot of a ring that holds an item for warpgroup `bit`, stepping over (and
// releasing) the other warpgroup's items
__device__ __forceinline__ void next_mine(uint64_t* full, uint64_t* empty, const int* tags, int bit, int& stage,
                                          uint32_t& phase, int stages, int& count) {
#if STAGGER_NO_TAGS  // diagnostic (simple producer only, where every item is for both): no tag read
  Barrier::wait(&full[stage], phase);
#if !STAGGER_NO_SHFL
  stage = __shfl_sync(0xffffffff, stage, 0);
#endif
  return;
#endif
  for (;;) {
    Barrier::wait(&full[stage], phase);
    const int tag = __shfl_sync(0xffffffff, *static_cast<const volatile int*>(&tags[stage]), 0);
    if (tag & bit) break;
    Barrier::arrive(&empty[stage]);
    ++count;
    if (++stage == stages) {
      stage = 0;
      phase ^= 1u;
    }
  }
  // the same in every lane; from lane 0, ptxas knows it is, and keeps the GMMA descriptors built
  // from the stage in uniform registers
  stage = __shfl_sync(0xffffffff, stage, 0);
}

// a sub-tile's coordinates in the word handed to a warpgroup, as scheduler.cuh's TileWord packs them
// (12 + 8 + 11 bits); the experiment assumes the grid fits (it has no unpacked fallback)
__device__ __forceinline__ int sub_word(int m, int head, int b) { return m | (head << 12) | (b << 20); }

struct SubTile {  // 64 query rows of one (batch, head) and their KV blocks [lo, hi)
  int b, head, kv_head, q0, lo, hi;
};

__device__ __forceinline__ SubTile sub_tile(const qm::AttnParams& p, int m, int head, int b, int block_n) {
  SubTile t;
  t.b = b;
  t.head = head;
  t.kv_head = head / (p.heads_q / p.heads_kv);
  const int lq = qm::seqlen_q_of(p, b), lk = qm::seqlen_k_of(p, b);
  t.q0 = m * 64 - (p.causal ? qm::cdiv(lq, 64) * 64 - lq : 0);
  t.hi = p.causal ? min(qm::cdiv(lk, block_n), qm::cdiv(t.q0 + 64 + lk - lq, block_n)) : qm::cdiv(lk, block_n);
  t.lo = qm::window_of(p) ? max(0, t.q0 + lk - lq - qm::window_of(p) + 1) / block_n : 0;
  return t;
}
__device__ __forceinline__ SubTile sub_tile(const qm::AttnParams& p, int word, int block_n) {
  return sub_tile(p, word & 0xfff, (word >> 12) & 0xff, word >> 20, block_n);
}

// this warpgroup's own Q (64 rows into its half of sQ), issued by one of its threads once its last S
// GEMM of the previous sub-tile is done with sQ: the producer never waits for a warpgroup's Q
template <class KT>
__device__ __forceinline__ void load_q(const TmaDescs& tma, const qm::AttnParams& p, Storage<KT>& s, int wg, int word,
                                    bool leader) {
  if (!leader) return;
  const SubTile u = sub_tile(p, word, KT::kBlockN);
  TxBarrier::arrive_and_expect_tx(&s.q_full[wg], 64 * KT::kHeadDim * sizeof(typename KT::T));
  tma_load_tile<64, KT::kHeadDim, KT::kBlockM>(&tma.q, &s.q_full[wg], s.base.q + wg * 64 * kSwizzleCols,
                                                q_row(p, u.b, u.q0), u.head, q_batch(p, u.b));
}

// the Q of this warpgroup's sub-tile number i (handed, not yet taken): its word read from the slot
// without releasing it (the loop's take at the sub-tile's start does). Every thread waits and reads
// (a branch on one thread before the wait cost the KV loop its uniform GMMA descriptors); one issues.
template <class KT>
__device__ __forceinline__ void prefetch_next_q(const TmaDescs& tma, const qm::AttnParams& p, Storage<KT>& s, int wg,
                                                int i, bool leader) {
  const int slot = i & 1;
  Barrier::wait(&s.tile_full[wg][slot], (static_cast<uint32_t>(i) >> 1) & 1u);
  const int word = __shfl_sync(0xffffffff, *static_cast<volatile int*>(&s.tile[wg][slot][0]), 0);
  if (word >= 0) load_q<KT>(tma, p, s, wg, word, leader);
}

}  // namespace st

#define STAGGER_KERNEL(NAME, TYPE, D, BN, STAGES, PREGS, CREGS)                                                 \
  extern "C" __global__ void __launch_bounds__(384, 1)                                                          \
      NAME(const qm::AttnParams p, const __grid_constant__ qm::sm90::TmaDescs tma, int* const tile_counter) {  \
    stagger_body<qm::sm90::Traits<TYPE, D, 128, BN, STAGES, 2, PREGS, CREGS>>(p, tma, tile_counter);         \
  }

template <class KT>
__device__ __forceinline__ void stagger_body(const qm::AttnParams& p, const qm::sm90::TmaDescs& tma, int* tile_counter) {
  using namespace qm::sm90;
  extern __shared__ char smem_raw[];
  const uintptr_t base = (reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023);
  auto& s = *reinterpret_cast<st::Storage<KT>*>(base);
  static_assert(sizeof(st::Storage<KT>) + 1024 <= 232448, "more shared memory than an H100 CTA may have");
  auto& sm = s.base;
  st::init<KT>(s);
  if (warpgroup_index() == 0) {
    producer_registers<KT>();
    if (!elected_producer()) return;
    prefetch_tma_descs<false>(tma);
    // 128-row tiles claimed from the counter in the shipped kernels' order (scheduler.cuh: one head at
    // a time without a mask, so the CTAs running at once read the same heads' K/V from L2), each
    // split into its two 64-row sub-tiles, handed to the warpgroups as they need one
    const TileScheduler tiles(qm::cdiv(p.max_seqlen_q, 128), p.heads_q, p.batch, p.max_seqlen_k,
                              KT::kHeadDim * 2, p.causal);
    const TileCounter claims{tile_counter};
    int tile_t = -1, half = 2;
    Tile tile{0, 0, 0};
    PipeState<KT::kStages> ps;
    if (STAGGER_SIMPLE_PRODUCER) {
      int handed_both = 0;
      for (int t = claims.first(); t < tiles.count; t = claims.next(t)) {
        const Tile tl = tiles.at(t);
        const st::SubTile u = st::sub_tile(p, 2 * tl.m_block, tl.head, tl.batch, KT::kBlockN);
        const int first = STAGGER_REVERSE ? u.hi - 1 : u.lo;
        st::hand<KT>(s, 0, handed_both, st::sub_word(2 * tl.m_block, tl.head, tl.batch), first, 0);
        st::hand<KT>(s, 1, handed_both, st::sub_word(2 * tl.m_block + 1, tl.head, tl.batch), first, 0);
        ++handed_both;
        #pragma unroll 1
        for (int i = 0; i < u.hi - u.lo; ++i) {
          const int x = STAGGER_REVERSE ? u.hi - 1 - i : u.lo + i;
          st::produce_item<KT>(tma, s, ps, 3, 0, x * KT::kBlockN, u.kv_head, u.b);
        }
      }
      st::hand<KT>(s, 0, handed_both, -1, 0, 0);
      st::hand<KT>(s, 1, handed_both, -1, 0, 0);
      return;
    }
    st::SubTile cur[2];
    int rot[2] = {0, 0}, pos[2] = {0, 0}, active[2] = {0, 0}, handed[2] = {0, 0};
    int gone = 0, items = 0, rounds = 0, delay = STAGGER_DELAY;
    bool open1 = false, claimed_all = false;
    for (;;) {
      for (int w = 0; w < 2; ++w) {
        if (active[w] && pos[w] == cur[w].hi - cur[w].lo) active[w] = 0;
        if (active[w] || (gone >> w & 1)) continue;
        if (w == 1 && !open1) {
          if (active[0] && rounds < delay) continue;
          open1 = true;
        }
        while (!claimed_all) {
          if (half == 2) {
            tile_t = tile_t < 0 ? claims.first() : claims.next(tile_t);
            if (tile_t >= tiles.count) {
              claimed_all = true;
              break;
            }
            tile = tiles.at(tile_t);
            half = 0;
          }
          const int m = 2 * tile.m_block + half++;
          const st::SubTile u = st::sub_tile(p, m, tile.head, tile.batch, KT::kBlockN);
          if (u.q0 >= qm::seqlen_q_of(p, tile.batch)) continue;  // past this sequence
          // keys rotated to the block the other warpgroup reads next, when this sub-tile reads it too
          int r = u.lo;
          const int o = 1 - w;
          if (active[o] && cur[o].b == u.b && cur[o].kv_head == u.kv_head) {
            int x = rot[o] + pos[o];
            if (x >= cur[o].hi) x -= cur[o].hi - cur[o].lo;
            if (x >= u.lo && x < u.hi) r = x;
          }
          cur[w] = u;
          rot[w] = r;
          pos[w] = 0;
          active[w] = 1;
          if (w == 0 && delay < 0) delay = (u.hi - u.lo) / 2;
          st::hand<KT>(s, w, handed[w]++, st::sub_word(m, tile.head, tile.batch), r, items);
          break;
        }
        if (!active[w]) {  // nothing left: the warpgroup leaves
          st::hand<KT>(s, w, handed[w], -1, 0, items);
          gone |= 1 << w;
        }
      }
      if (gone == 3) break;
      int blk[2];
      for (int w = 0; w < 2; ++w) {
        blk[w] = rot[w] + pos[w];
        if (active[w] && blk[w] >= cur[w].hi) blk[w] -= cur[w].hi - cur[w].lo;
      }
      if (active[0] && active[1] && cur[0].b == cur[1].b && cur[0].kv_head == cur[1].kv_head && blk[0] == blk[1]) {
        // shared items until either warpgroup's sub-tile ends, in a loop of few live values (the
        // general round above spills the producer's 40 registers)
        const int k = min(cur[0].hi - cur[0].lo - pos[0], cur[1].hi - cur[1].lo - pos[1]);
        const int lo = cur[0].lo, hi = cur[0].hi, h = cur[0].kv_head, b = cur[0].b;
        int x = blk[0];
        #pragma unroll 1
        for (int i = 0; i < k; ++i) {
          st::produce_item<KT>(tma, s, ps, 3, 0, x * KT::kBlockN, h, b);
          if (++x == hi) x = lo;
        }
        pos[0] += k;
        pos[1] += k;
        items += k;
        rounds += k - 1;
      } else {
        for (int w = 0; w < 2; ++w) {
          if (!active[w]) continue;
          // the producer arrives for a warpgroup that has left or not yet joined
          st::produce_item<KT>(tma, s, ps, 1 << w, gone | (open1 ? 0 : 2), blk[w] * KT::kBlockN, cur[w].kv_head,
                               cur[w].b);
          ++pos[w];
          ++items;
        }
      }
      ++rounds;
    }
    return;
  }
  consumer_registers<KT>();
  Consumer<KT> c(threadIdx.x - kWarpgroupThreads);
  const int wg = c.tid / kWarpgroupThreads, bit = 1 << wg;
  int k_stage = 0, v_stage = 0, k_count = 0, v_count = 0;
  uint32_t k_phase = 0, v_phase = 0;
  auto step_k = [&]() {
    if (++k_stage == KT::kStages) { k_stage = 0; k_phase ^= 1u; }
    ++k_count;
  };
  auto step_v = [&]() {
    if (++v_stage == KT::kStages) { v_stage = 0; v_phase ^= 1u; }
    ++v_count;
  };
  const bool q_leader = c.tid % kWarpgroupThreads == 0;
  const PingPong<2> turn(c.tid);
  if (STAGGER_TURNS) turn.start();
  st::prefetch_next_q<KT>(tma, p, s, wg, 0, q_leader);  // the first sub-tile's Q (outside the loop: a
  // one-thread branch in it cost the KV loop its uniform GMMA descriptors)
  for (int iter = 0;; ++iter) {
    const int3 got = st::take<KT>(s, wg, iter);
    if (!STAGGER_NO_TAGS && iter == 0) {  // where this warpgroup joins the ring (warpgroup 1 after the delay;
      // the simple producer's warpgroups both join at item 0)
      k_count = v_count = got.z;
      k_stage = v_stage = got.z % KT::kStages;
      k_phase = v_phase = static_cast<uint32_t>(got.z / KT::kStages) & 1u;
    }
    if (got.x < 0) {  // step over (and release) the items issued before the producer let this warpgroup go
      while (k_count < got.z) {
        Barrier::wait(&sm.k_full[k_stage], k_phase);
        Barrier::arrive(&sm.k_empty[k_stage]);
        step_k();
      }
      while (v_count < got.z) {
        Barrier::wait(&sm.v_full[v_stage], v_phase);
        Barrier::arrive(&sm.v_empty[v_stage]);
        step_v();
      }
      if (STAGGER_TURNS) turn.finish();
      break;
    }
    const st::SubTile u = st::sub_tile(p, got.x, KT::kBlockN);
    const int q0 = u.q0 - 64 * wg;  // the MMA's row coordinates count from the 128-row sQ's first row
    const int n = u.hi - u.lo;
    c.reset();
    auto acc = c.alloc_acc();
    const qm::sm90::MaskArgs mk{q0, qm::seqlen_k_of(p, u.b), p.causal,
                                qm::seqlen_k_of(p, u.b) - qm::seqlen_q_of(p, u.b), qm::window_of(p)};
    Barrier::wait(&s.q_full[wg], static_cast<uint32_t>(iter) & 1u);
    if (n > 0) {
      int blk = got.y;
      auto S = c.alloc_s();
      st::next_mine(sm.k_full, sm.k_empty, s.tag_k, bit, k_stage, k_phase, KT::kStages, k_count);
      if (STAGGER_TURNS) turn.wait_turn();
      c.issue_qk(S, sm, k_stage);
      if (STAGGER_TURNS) turn.pass_turn();
      c.wait_gemms<0>(S);
      release(sm.k_empty, k_stage);
      step_k();
      const float scale = c.template scores<false>(S, p);
      c.mask(S, mk, blk);
      c.online_softmax(S, scale);
      auto P = c.reshape(S);
      for (int i = 1; i < n; ++i) {
        if (STAGGER_REVERSE) blk = blk == u.lo ? u.hi - 1 : blk - 1;
        else if (++blk == u.hi) blk = u.lo;
        auto S_next = c.alloc_s();
        st::next_mine(sm.k_full, sm.k_empty, s.tag_k, bit, k_stage, k_phase, KT::kStages, k_count);
        st::next_mine(sm.v_full, sm.v_empty, s.tag_v, bit, v_stage, v_phase, KT::kStages, v_count);
        if (STAGGER_TURNS) turn.wait_turn();
        c.issue_qk(S_next, sm, k_stage);
        c.rescale(acc);
        c.issue_pv(acc, P, sm, v_stage);
        if (STAGGER_TURNS) turn.pass_turn();
        c.wait_gemms<1>(S_next);
        release(sm.k_empty, k_stage);
        step_k();
        const float scale = c.template scores<false>(S_next, p);
        c.mask(S_next, mk, blk);
        c.online_softmax(S_next, scale);
        c.softmax_done(S_next);
        c.wait_gemms<0>(acc, P);
        release(sm.v_empty, v_stage);
        step_v();
        P = c.reshape(S_next);
      }
      // every S GEMM of the sub-tile is done with sQ: the next sub-tile's Q may come in now
      st::prefetch_next_q<KT>(tma, p, s, wg, iter + 1, q_leader);
      st::next_mine(sm.v_full, sm.v_empty, s.tag_v, bit, v_stage, v_phase, KT::kStages, v_count);
      c.rescale(acc);
      c.gemm_pv(acc, P, sm, v_stage);
      release(sm.v_empty, v_stage);
      step_v();
    } else {
      st::prefetch_next_q<KT>(tma, p, s, wg, iter + 1, q_leader);
    }
    c.normalize_and_store(acc, p, u.b, u.head, q0, qm::seqlen_q_of(p, u.b));
  }
}

STAGGER_KERNEL(qm_stagger_attn_bf16_hd128, qm::sm90::bf16, 128, 128, 3, STAGGER_PREGS, 232)
STAGGER_KERNEL(qm_stagger_attn_f16_hd128, qm::sm90::fp16, 128, 128, 3, STAGGER_PREGS, 232)
