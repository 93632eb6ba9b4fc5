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
// Tiles: a static contiguous share of the 64-row sub-tiles per CTA, heads fastest after the query
// blocks (consecutive sub-tiles share K/V). Built by scripts/experiments/build_stagger.py for the
// interleaved A/B of scripts/ab_sm90.py; the index entry gives Q's map 64-row boxes.
#include <qimeng/sm90/fa3.cuh>

#ifndef STAGGER_DELAY
#define STAGGER_DELAY -1  // KV steps warpgroup 1 starts after warpgroup 0; < 0: half of the first sub-tile's
#endif

namespace st {
using namespace qm::sm90;

template <class KT>
struct Storage {
  SharedStorage<KT> base;  // sQ (warpgroup w's rows at 64 w), the K/V ring and its barriers
  alignas(8) uint64_t q_full[2];
  uint64_t q_empty[2];
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
      Barrier::init(&s.q_empty[w], kWarpgroupThreads);
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

// 64 rows of Q for warpgroup w, into its half of sQ
template <class KT>
__device__ __forceinline__ void produce_q(const TmaDescs& tma, Storage<KT>& s, int w, int i, int row0, int h, int b) {
  Barrier::wait(&s.q_empty[w], (static_cast<uint32_t>(i) & 1u) ^ 1u);
  TxBarrier::arrive_and_expect_tx(&s.q_full[w], 64 * KT::kHeadDim * sizeof(typename KT::T));
  CUTE_UNROLL
  for (int chunk = 0; chunk < KT::kHeadDim / kSwizzleCols; ++chunk) {
    cute::SM90_TMA_LOAD_4D::copy(&tma.q, &s.q_full[w], static_cast<uint64_t>(cute::TMA::CacheHintSm90::EVICT_NORMAL),
                                 s.base.q + chunk * KT::kBlockM * kSwizzleCols + w * 64 * kSwizzleCols,
                                 chunk * kSwizzleCols, row0, h, b);
  }
}

// the consumer's next slot of a ring that holds an item for warpgroup `bit`, stepping over (and
// releasing) the other warpgroup's items
__device__ __forceinline__ void next_mine(uint64_t* full, uint64_t* empty, const int* tags, int bit, int& stage,
                                          uint32_t& phase, int stages, int& count) {
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

}  // namespace st

#define STAGGER_KERNEL(NAME, TYPE, D, BN, STAGES, PREGS, CREGS)                                                 \
  extern "C" __global__ void __launch_bounds__(384, 1)                                                          \
      NAME(const qm::AttnParams p, const __grid_constant__ qm::sm90::TmaDescs tma, int* const) {               \
    stagger_body<qm::sm90::Traits<TYPE, D, 128, BN, STAGES, 2, PREGS, CREGS>>(p, tma);                       \
  }

template <class KT>
__device__ __forceinline__ void stagger_body(const qm::AttnParams& p, const qm::sm90::TmaDescs& tma) {
  using namespace qm::sm90;
  extern __shared__ char smem_raw[];
  const uintptr_t base = (reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023);
  auto& s = *reinterpret_cast<st::Storage<KT>*>(base);
  static_assert(sizeof(st::Storage<KT>) + 1024 <= 232448, "more shared memory than an H100 CTA may have");
  auto& sm = s.base;
  st::init<KT>(s);
  const int mb = qm::cdiv(p.max_seqlen_q, 64);
  if (warpgroup_index() == 0) {
    producer_registers<KT>();
    if (!elected_producer()) return;
    prefetch_tma_descs<false>(tma);
    const int total = mb * p.heads_q * p.batch;
    const int c1 = static_cast<int>(static_cast<int64_t>(blockIdx.x + 1) * total / gridDim.x);
    int next = static_cast<int>(static_cast<int64_t>(blockIdx.x) * total / gridDim.x);
    PipeState<KT::kStages> ps;
    st::SubTile cur[2];
    int rot[2] = {0, 0}, pos[2] = {0, 0}, active[2] = {0, 0}, handed[2] = {0, 0};
    int gone = 0, items = 0, rounds = 0, delay = STAGGER_DELAY;
    bool open1 = false;
    for (;;) {
      for (int w = 0; w < 2; ++w) {
        if (active[w] && pos[w] == cur[w].hi - cur[w].lo) active[w] = 0;
        if (active[w] || (gone >> w & 1)) continue;
        if (w == 1 && !open1) {
          if (active[0] && rounds < delay) continue;
          open1 = true;
        }
        while (next < total && next < c1) {  // the CTA's next sub-tile: query blocks fastest, then heads
          const int t = next++;
          const int pair = t / mb, m = t - pair * mb;
          const int head = pair % p.heads_q, b = pair / p.heads_q;
          const st::SubTile u = st::sub_tile(p, m, head, b, KT::kBlockN);
          if (u.q0 >= qm::seqlen_q_of(p, b)) continue;  // past this sequence (varlen)
          // keys rotated to where the other warpgroup is, when it reads the same blocks
          int r = u.lo;
          const int o = 1 - w;
          if (active[o] && cur[o].b == u.b && cur[o].kv_head == u.kv_head && cur[o].lo == u.lo && cur[o].hi == u.hi) {
            r = rot[o] + pos[o];
            if (r >= u.hi) r -= u.hi - u.lo;
          }
          cur[w] = u;
          rot[w] = r;
          pos[w] = 0;
          active[w] = 1;
          if (w == 0 && delay < 0) delay = (u.hi - u.lo) / 2;
          st::hand<KT>(s, w, handed[w], t, r, items);
          st::produce_q<KT>(tma, s, w, handed[w], q_row(p, b, u.q0), head, q_batch(p, b));
          ++handed[w];
          break;
        }
        if (!active[w] && (next >= total || next >= c1)) {  // nothing left: the warpgroup leaves
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
        st::produce_item<KT>(tma, s, ps, 3, 0, blk[0] * KT::kBlockN, cur[0].kv_head, cur[0].b);
        ++pos[0];
        ++pos[1];
        ++items;
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
  for (int iter = 0;; ++iter) {
    const int3 got = st::take<KT>(s, wg, iter);
    if (iter == 0) {  // where this warpgroup joins the ring (warpgroup 1 after the delay)
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
      break;
    }
    const int pair = got.x / mb, m = got.x - pair * mb;
    const st::SubTile u = st::sub_tile(p, m, pair % p.heads_q, pair / p.heads_q, KT::kBlockN);
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
      c.issue_qk(S, sm, k_stage);
      c.wait_gemms<0>(S);
      if (n == 1) Barrier::arrive(&s.q_empty[wg]);
      release(sm.k_empty, k_stage);
      step_k();
      const float scale = c.template scores<false>(S, p);
      c.mask(S, mk, blk);
      c.online_softmax(S, scale);
      auto P = c.reshape(S);
      for (int i = 1; i < n; ++i) {
        if (++blk == u.hi) blk = u.lo;
        auto S_next = c.alloc_s();
        st::next_mine(sm.k_full, sm.k_empty, s.tag_k, bit, k_stage, k_phase, KT::kStages, k_count);
        st::next_mine(sm.v_full, sm.v_empty, s.tag_v, bit, v_stage, v_phase, KT::kStages, v_count);
        c.issue_qk(S_next, sm, k_stage);
        c.rescale(acc);
        c.issue_pv(acc, P, sm, v_stage);
        c.wait_gemms<1>(S_next);
        if (i == n - 1) Barrier::arrive(&s.q_empty[wg]);
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
      st::next_mine(sm.v_full, sm.v_empty, s.tag_v, bit, v_stage, v_phase, KT::kStages, v_count);
      c.rescale(acc);
      c.gemm_pv(acc, P, sm, v_stage);
      release(sm.v_empty, v_stage);
      step_v();
    } else {
      Barrier::arrive(&s.q_empty[wg]);
    }
    c.normalize_and_store(acc, p, u.b, u.head, q0, qm::seqlen_q_of(p, u.b));
  }
}

STAGGER_KERNEL(qm_stagger_attn_bf16_hd128, qm::sm90::bf16, 128, 128, 3, 40, 232)
STAGGER_KERNEL(qm_stagger_attn_f16_hd128, qm::sm90::fp16, 128, 128, 3, 40, 232)
