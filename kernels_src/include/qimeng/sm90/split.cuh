// qimeng/sm90/split.cuh -- the combine of a tile's parts: the split tail's (TL `kernel ... with split=tail`;
// scheduler.cuh says which tiles are split and into how many parts) and the stream share's (split=stream,
// StreamTail below). Every part of a split tile leaves its
// unnormalised O and its rows' max and sum in a workspace behind the tile counter, then arrives on a
// counter of its tile; the last part to arrive reads the others', merges them into its own registers
// (the online softmax's merge) and stores O as a whole tile does.
//
// Per warp: a warp holds the same 16 rows of its tile in every part (the same MMA layout), so a warp
// needs no other warp to combine, and no part waits for another: a CTA that waited could hold, as its
// next claimed tile, the part the other one waits for.
//
// The buffer `tile_counter` points to (the host sizes it for the parts it chose and passes as
// AttnParams::num_splits: qimeng_serve/runtime/split_tail.py):
//   int  [0]                           the claim counter (TileCounter)
//   int  [1 + slot * kWarps + warp]    arrivals, slot < gridDim.x (zeroed with the claim counter)
//   then, from byte parts_offset(ctas): per (slot, part, warp) kLaneFloat4 x 32 float4s, lane fastest
//   (split=stream: per (CTA, first or last part of its run, warp); the counters' slot is the tile's owner CTA)
#pragma once
#include "consumer.cuh"
#include "scheduler.cuh"

#ifndef QM_SM90_DIAG_SPLIT  // diagnostic builds (timing only, O incomplete / wrong): 1 parts neither store nor
#define QM_SM90_DIAG_SPLIT 0  // combine (what the split's schedule alone gains); 2 no combine (its cost)
#endif
#ifndef QM_SM90_SPLIT_PARTIAL16  // 1: a part's O leaves normalised, in the input dtype (half the bytes of fp32)
#define QM_SM90_SPLIT_PARTIAL16 0
#endif
#ifndef QM_SM90_SPLIT_FENCE  // 1: every lane fences its stores (__threadfence) before the warp arrives and after
#define QM_SM90_SPLIT_FENCE 1  // it learns it is last; 0: the warp barrier and lane 0's acq_rel atomic order them
#endif

namespace qm::sm90 {

// What a part of a tile leaves in the workspace, per consumer warp: 32 lanes x kLaneFloat4 float4s,
// lane fastest; the parts start after the arrival counters (one int per slot and warp, behind the claim
// counter), on a 256-byte boundary
template <class KT>
struct PartLayout {
  static constexpr int kWarps = KT::kConsumerThreads / 32;
  static constexpr int kAccFloats = KT::kBlockM * KT::kHeadDim / KT::kConsumerThreads;  // O per thread
  static constexpr bool kHalf = QM_SM90_SPLIT_PARTIAL16 != 0;
  // 16-byte units a lane leaves: O (fp32, or normalised in the input dtype), then {m[0], m[1], l[0], l[1]}
  static constexpr int kOUnits = kAccFloats / (kHalf ? 8 : 4);
  static constexpr int kLaneFloat4 = kOUnits + 1;
  static_assert(Consumer<KT>::kRows == 2, "a consumer thread holds 2 rows of its tile");
  __host__ __device__ static constexpr int64_t parts_offset(int ctas) {
    return (static_cast<int64_t>(1 + ctas * kWarps) * 4 + 255) / 256 * 256;
  }
  __host__ __device__ static constexpr int64_t part_bytes() { return int64_t(kWarps) * 32 * kLaneFloat4 * 16; }
  __device__ __forceinline__ static float4* parts_base(int* tile_counter) {
    return reinterpret_cast<float4*>(reinterpret_cast<char*>(tile_counter) + parts_offset(static_cast<int>(gridDim.x)));
  }
  // lane `lane` of warp `warp` in part block `block`
  __device__ __forceinline__ static float4* lane_of(float4* base, int64_t block, int warp, int lane) {
    return base + (block * kWarps + warp) * (kLaneFloat4 * 32) + lane;
  }
};

// What the split tail does at the end of a part of a tile: this warp stores its O, m and l (at block(me)),
// then arrives on `arrivals` (one counter per tile and warp). True for the last of
// the tile's `parties` parts to arrive: it has merged every other part (block(q), q != me) into acc, c.m
// and c.l, and stores O. No part waits for another: a CTA that waited could hold, as its next tile, the
// part the other one waits for.
template <class KT, class TileO, class Block>
__device__ __forceinline__ bool combine_parts(Consumer<KT>& c, TileO& acc, int* arrivals, int parties, int me,
                                              Block block) {
  using L = PartLayout<KT>;
  constexpr int kAccFloats = L::kAccFloats, kOUnits = L::kOUnits;
  constexpr bool kHalf = L::kHalf;
  using namespace cute;
  static_assert(decltype(size(acc))::value == kAccFloats, "O's registers per thread");
  const int lane = c.tid % 32;
  Tensor o = make_tensor(acc.data(), acc_rowcol(acc.layout()));
  constexpr int kCols = decltype(size<1>(o))::value;
  // every part stores, the last too: it cannot know it is last before it arrives
  float4* mine = block(me);
  CUTE_UNROLL
  for (int r = 0; r < 2; ++r) {
    if constexpr (kHalf) {
      const float inv = Consumer<KT>::inverse_row_sum(c.l[r]);
      CUTE_UNROLL
      for (int j = 0; j < kCols; j += 8) {
        uint32_t w[4];
        CUTE_UNROLL
        for (int i = 0; i < 4; ++i) {
          cutlass::AlignedArray<typename KT::T, 2> pair;
          pair[0] = static_cast<typename KT::T>(o(r, j + 2 * i) * inv);
          pair[1] = static_cast<typename KT::T>(o(r, j + 2 * i + 1) * inv);
          w[i] = reinterpret_cast<uint32_t const&>(pair);
        }
        __stcg(reinterpret_cast<uint4*>(mine + ((r * kCols + j) / 8) * 32), make_uint4(w[0], w[1], w[2], w[3]));
      }
    } else {
      CUTE_UNROLL
      for (int j = 0; j < kCols; j += 4)
        __stcg(mine + ((r * kCols + j) / 4) * 32, make_float4(o(r, j), o(r, j + 1), o(r, j + 2), o(r, j + 3)));
    }
  }
  __stcg(mine + kOUnits * 32, make_float4(c.m[0], c.m[1], c.l[0], c.l[1]));
  if (QM_SM90_SPLIT_FENCE) __threadfence();  // this lane's part, visible on the GPU before the warp arrives
  __syncwarp();  // (0: orders the lanes' stores before lane 0's release, which is cumulative)
  int before = 0;
  if (lane == 0) {
    asm volatile("atom.acq_rel.gpu.global.add.s32 %0, [%1], 1;" : "=r"(before) : "l"(arrivals) : "memory");
  }
  // lane 0's count reaches the warp by a vote: broadcast by a shuffle, ptxas took the KV loop's GMMA
  // descriptors out of uniform registers (R2UR 17 -> 48 a KV tile, and 16 B of spills)
  if (!__any_sync(0xffffffffu, lane == 0 && before == parties - 1)) return false;
  if (QM_SM90_DIAG_SPLIT == 2) return true;
  // the other parts' stores, seen through the arrivals they made before this one (0: lane 0's acquire,
  // passed on to the lanes by the warp barrier)
  if (QM_SM90_SPLIT_FENCE) __threadfence();
  else __syncwarp();
  for (int q = 0; q < parties; ++q) {
    if (q == me) continue;
    const float4* theirs = block(q);
    const float4 ml = __ldcg(theirs + kOUnits * 32);
    const float m_q[2] = {ml.x, ml.y}, l_q[2] = {ml.z, ml.w};
    CUTE_UNROLL
    for (int r = 0; r < 2; ++r) {
      const float m_new = fmaxf(c.m[r], m_q[r]);
      const float m_fin = m_new == -INFINITY ? 0.f : m_new;  // a part that saw no key: -inf, l = 0
      const float a = exp2f(c.m[r] - m_fin), b = exp2f(m_q[r] - m_fin);
      c.l[r] = c.l[r] * a + l_q[r] * b;
      c.m[r] = m_new;
      if constexpr (kHalf) {
        // its O was normalised by its row sum: the quad's four parts of l_q
        float sum = l_q[r] + __shfl_xor_sync(0xffffffffu, l_q[r], 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        const float bs = b * sum;
        CUTE_UNROLL
        for (int j = 0; j < kCols; j += 8) {
          const uint4 v = __ldcg(reinterpret_cast<const uint4*>(theirs + ((r * kCols + j) / 8) * 32));
          const uint32_t w[4] = {v.x, v.y, v.z, v.w};
          CUTE_UNROLL
          for (int i = 0; i < 4; ++i) {
            const auto pair = reinterpret_cast<cutlass::AlignedArray<typename KT::T, 2> const&>(w[i]);
            o(r, j + 2 * i) = o(r, j + 2 * i) * a + static_cast<float>(pair[0]) * bs;
            o(r, j + 2 * i + 1) = o(r, j + 2 * i + 1) * a + static_cast<float>(pair[1]) * bs;
          }
        }
      } else {
        CUTE_UNROLL
        for (int j = 0; j < kCols; j += 4) {
          const float4 v = __ldcg(theirs + ((r * kCols + j) / 4) * 32);
          o(r, j) = o(r, j) * a + v.x * b;
          o(r, j + 1) = o(r, j + 1) * a + v.y * b;
          o(r, j + 2) = o(r, j + 2) * a + v.z * b;
          o(r, j + 3) = o(r, j + 3) * a + v.w * b;
        }
      }
    }
  }
  return true;
}

template <class KT>
struct SplitTail {
  using L = PartLayout<KT>;
  static constexpr int kWarps = L::kWarps;
  int* counter;
  float4* parts_base;
  __device__ __forceinline__ explicit SplitTail(int* tile_counter)
      : counter(tile_counter), parts_base(L::parts_base(tile_counter)) {}

  __device__ __forceinline__ float4* lane_block(int slot, int part, int parts, int warp, int lane) const {
    return L::lane_of(parts_base, static_cast<int64_t>(slot) * parts + part, warp, lane);
  }

  // The end of a part: store this warp's O, m and l, arrive on the tile's counter. True for the last
  // part of the tile to arrive: it has merged every other part into acc, c.m and c.l, and stores O.
  // The tile walk's scheduler (grid (cdiv(max_seqlen_q, BLOCK_M), heads_q, batch), not causal: the
  // lowering checks), from the parameters read again: values the tile's head computed and this reused
  // would live through the KV loop, and did push its GMMA descriptors out of uniform registers
  // (+31 R2UR a KV tile).
  __device__ __forceinline__ static TileScheduler walk(const AttnParams& p) {
    const int seq_q = opaque(p.max_seqlen_q);
    return TileScheduler(cdiv(seq_q, KT::kBlockM), opaque(p.heads_q), opaque(p.batch), 0, 0, false, opaque(gridDim.x),
                         opaque(p.num_splits));
  }
  template <class TileO>
  __device__ __forceinline__ bool finish(Consumer<KT>& c, TileO& acc, const AttnParams& p, const Tile& tile) const {
    if (QM_SM90_DIAG_SPLIT == 1) return false;
    const TileScheduler tiles = walk(p);
    const int parts = tiles.parts(), slot = tiles.tail_slot(tile);
    const int warp = c.tid / 32, lane = c.tid % 32;
    return combine_parts<KT>(c, acc, counter + 1 + slot * kWarps + warp, parts, tile.part,
                             [&](int q) { return lane_block(slot, q, parts, warp, lane); });
  }
};

// split=stream (scheduler.cuh StreamShare): a tile cut by the CTAs' runs has one part in each CTA its steps
// fall in. The part with the tile's first steps (its owner: bit 0 of the part clear) is the last part of its
// CTA's run; every other part is the first of its CTA's run. So a CTA leaves at most two parts, and they
// go to its own two blocks: its first part's to block 2 x cta, its last part's to 2 x cta + 1. The
// arrival counters are the owner CTA's (one a warp). Workspace: the counters, then 2 x gridDim.x blocks of
// kBlockBytes.
template <class KT>
struct StreamTail {
  using L = PartLayout<KT>;
  int* counter;
  float4* parts_base;
  __device__ __forceinline__ explicit StreamTail(int* tile_counter)
      : counter(tile_counter), parts_base(L::parts_base(tile_counter)) {}

  // The walk's tiles and KV steps a tile, as the producer's StreamClaims counted them, from the parameters
  // read again (grid (cdiv(max_seqlen_q, BLOCK_M), heads_q, batch), not causal: the lowering checks)
  struct Walk {
    int m_blocks, heads, tiles, kv;
  };
  __device__ __forceinline__ static Walk walk(const AttnParams& p) {
    const int m_blocks = cdiv(opaque(p.max_seqlen_q), KT::kBlockM), heads = opaque(p.heads_q);
    const int kv = cdiv(opaque(p.max_seqlen_k), KT::kBlockN);
    return Walk{m_blocks, heads, m_blocks * heads * opaque(p.batch), kv > 0 ? kv : 1};
  }
  // the consumers' KV range of a tile's part (Tile::part; -1: the whole [n_lo, n_hi))
  __device__ __forceinline__ static KvRange range(int n_lo, int n_hi, int part, const AttnParams& p) {
    if (part < 0) return KvRange{n_lo, n_hi};
    const Walk w = walk(p);
    return StreamShare(w.tiles, w.kv, blockIdx.x, gridDim.x).range(n_lo, n_hi, part, w.kv);
  }

  // A part's O leaves normalised, in the input dtype, through the tile's own store (Consumer::store_rows)
  // into its block, and the tile's last part to arrive merges the blocks from memory, acc no longer live.
  // So the epilogue stores acc once, as a whole tile does. (The first form stored acc in fp32 from its own
  // store site, as SplitTail does, and merged into acc: its KV loop moved 66 schedule lines and it ran
  // 1.6-3% slower with nothing shared; perf-notes "seventeenth run".) A block: BLOCK_M x D elements, then
  // BLOCK_M {m, l} (the row's max and whole sum).
  using T = typename KT::T;
  static constexpr int64_t kBlockBytes = int64_t(KT::kBlockM) * KT::kHeadDim * sizeof(T) + KT::kBlockM * 8;
  __device__ __forceinline__ T* block_o(int64_t block) const {
    return reinterpret_cast<T*>(reinterpret_cast<char*>(parts_base) + block * kBlockBytes);
  }
  __device__ __forceinline__ float2* block_ml(int64_t block) const {
    return reinterpret_cast<float2*>(reinterpret_cast<char*>(block_o(block)) + int64_t(KT::kBlockM) * KT::kHeadDim * sizeof(T));
  }
  // this CTA's block for a part: its run's first part 2 x cta, its last 2 x cta + 1
  __device__ __forceinline__ static int64_t own_block(const Tile& tile) {
    return 2 * int64_t(blockIdx.x) + ((tile.part & 1) ? 0 : 1);
  }
  struct Dest {
    T* out;          // row q0 + i of the tile goes to out + (q0 + i) x stride
    int64_t stride;
  };
  // where the tile's rows go: O (a whole tile), or the part's block
  __device__ __forceinline__ Dest dest(const AttnParams& p, const Tile& tile, int b, int h, int q0) const {
    if (tile.part < 0) return Dest{Consumer<KT>::o_base(p, b, h), p.o_token_stride};
    return Dest{block_o(own_block(tile)) - int64_t(q0) * KT::kHeadDim, KT::kHeadDim};
  }
  // After a part's store: its rows' max and sum into its block, the warp's arrival; the tile's last part to
  // arrive merges the parties' blocks into O, each warp its own 16 rows (lane: a row, half its columns)
  __device__ __forceinline__ void merge(Consumer<KT>& c, const AttnParams& p, const Tile& tile, int b, int h, int q0,
                                        int seqlen_q) const {
    if (QM_SM90_DIAG_SPLIT == 1) return;  // diagnostic: no arrival, no merge (the parts' O never reaches O)
    constexpr int D = KT::kHeadDim, kHalf = D / 2;
    const Walk w = walk(p);
    const int ctas = static_cast<int>(gridDim.x);
    const int t = (tile.batch * w.heads + tile.head) * w.m_blocks + (w.m_blocks - 1 - tile.m_block);  // tile_at^-1
    const StreamShare share(w.tiles, w.kv, blockIdx.x, ctas);
    const int first = (t - share.base) * w.kv;
    const int owner = share.cta_of(first, ctas);
    const int parties = share.cta_of(first + w.kv - 1, ctas) - owner + 1;
    const int warp = c.tid / 32, lane = c.tid % 32;
    float2* ml = block_ml(own_block(tile));
    CUTE_UNROLL
    for (int r = 0; r < Consumer<KT>::kRows; ++r) {
      float l = c.l[r];  // the thread's part of the row's sum: the quad's four make it whole
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      if (lane % 4 == 0) __stcg(ml + c.tile_row(r), make_float2(c.m[r], l));
    }
    if (QM_SM90_SPLIT_FENCE) __threadfence();  // this lane's rows, visible on the GPU before the warp arrives
    __syncwarp();
    int before = 0;
    if (lane == 0) {
      int* arrivals = counter + 1 + owner * L::kWarps + warp;
      asm volatile("atom.acq_rel.gpu.global.add.s32 %0, [%1], 1;" : "=r"(before) : "l"(arrivals) : "memory");
    }
    if (!__any_sync(0xffffffffu, lane == 0 && before == parties - 1)) return;
    if (QM_SM90_SPLIT_FENCE) __threadfence();
    else __syncwarp();
    const int row = 16 * warp + lane / 2, col0 = (lane % 2) * kHalf;  // the warp's rows, as the MMA holds them
    float m_all = -INFINITY;
    for (int q = 0; q < parties; ++q) m_all = fmaxf(m_all, __ldcg(block_ml(q == 0 ? 2 * int64_t(owner) + 1 : 2 * int64_t(owner + q)) + row).x);
    const float m_fin = m_all == -INFINITY ? 0.f : m_all;  // no part saw a key: every weight 0, O = 0
    float o[kHalf];
    CUTE_UNROLL
    for (int i = 0; i < kHalf; ++i) o[i] = 0.f;
    float l_all = 0.f;
    for (int q = 0; q < parties; ++q) {
      const int64_t block = q == 0 ? 2 * int64_t(owner) + 1 : 2 * int64_t(owner + q);
      const float2 v = __ldcg(block_ml(block) + row);
      const float wq = v.y * exp2f(v.x - m_fin);  // its O was normalised by its own sum
      l_all += wq;
      const uint4* src = reinterpret_cast<const uint4*>(block_o(block) + int64_t(row) * D + col0);
      CUTE_UNROLL
      for (int u = 0; u < kHalf / 8; ++u) {
        const uint4 x = __ldcg(src + u);
        const uint32_t words[4] = {x.x, x.y, x.z, x.w};
        CUTE_UNROLL
        for (int k = 0; k < 4; ++k) {
          const auto pair = reinterpret_cast<cutlass::AlignedArray<T, 2> const&>(words[k]);
          o[8 * u + 2 * k] += wq * static_cast<float>(pair[0]);
          o[8 * u + 2 * k + 1] += wq * static_cast<float>(pair[1]);
        }
      }
    }
    if (static_cast<unsigned>(q0 + row) >= static_cast<unsigned>(seqlen_q)) return;
    const float inv = l_all == 0.f ? 1.f : 1.f / l_all;
    T* dst = Consumer<KT>::o_base(p, b, h) + int64_t(q0 + row) * p.o_token_stride + col0;
    const bool wide = (reinterpret_cast<uintptr_t>(dst) % 16 == 0);
    CUTE_UNROLL
    for (int u = 0; u < kHalf / 8; ++u) {
      uint32_t words[4];
      CUTE_UNROLL
      for (int k = 0; k < 4; ++k) {
        cutlass::AlignedArray<T, 2> pair;
        pair[0] = static_cast<T>(o[8 * u + 2 * k] * inv);
        pair[1] = static_cast<T>(o[8 * u + 2 * k + 1] * inv);
        words[k] = reinterpret_cast<uint32_t const&>(pair);
      }
      if (wide) {
        *reinterpret_cast<uint4*>(dst + 8 * u) = make_uint4(words[0], words[1], words[2], words[3]);
      } else {
        CUTE_UNROLL
        for (int k = 0; k < 4; ++k) *reinterpret_cast<uint32_t*>(dst + 8 * u + 2 * k) = words[k];
      }
    }
  }
};

}  // namespace qm::sm90
