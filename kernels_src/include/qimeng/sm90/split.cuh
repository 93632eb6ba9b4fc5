// qimeng/sm90/split.cuh -- the split tail's combine (TL `kernel ... with split=tail`; scheduler.cuh
// says which tiles are split and into how many parts). Every part of a split tile leaves its
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
//   then, from byte kPartsOffset(ctas): per (slot, part, warp) kLaneFloat4 x 32 float4s, lane fastest
#pragma once
#include "consumer.cuh"
#include "scheduler.cuh"

namespace qm::sm90 {

template <class KT>
struct SplitTail {
  static constexpr int kWarps = KT::kConsumerThreads / 32;
  static constexpr int kAccFloats = KT::kBlockM * KT::kHeadDim / KT::kConsumerThreads;  // O per thread
  static constexpr int kLaneFloat4 = kAccFloats / 4 + 1;  // O, then {m[0], m[1], l[0], l[1]}
  static_assert(Consumer<KT>::kRows == 2, "a consumer thread holds 2 rows of its tile");

  // where the parts start: after the counters, on a 256-byte boundary
  __host__ __device__ static constexpr int64_t parts_offset(int ctas) {
    return (static_cast<int64_t>(1 + ctas * kWarps) * 4 + 255) / 256 * 256;
  }
  __host__ __device__ static constexpr int64_t part_bytes() { return int64_t(kWarps) * 32 * kLaneFloat4 * 16; }

  int* counter;
  float4* parts_base;
  __device__ __forceinline__ explicit SplitTail(int* tile_counter)
      : counter(tile_counter),
        parts_base(reinterpret_cast<float4*>(reinterpret_cast<char*>(tile_counter) +
                                              parts_offset(static_cast<int>(gridDim.x)))) {}

  __device__ __forceinline__ float4* lane_block(int slot, int part, int parts, int warp, int lane) const {
    return parts_base + ((static_cast<int64_t>(slot) * parts + part) * kWarps + warp) * (kLaneFloat4 * 32) + lane;
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
    using namespace cute;
    static_assert(decltype(size(acc))::value == kAccFloats, "O's registers per thread");
    const TileScheduler tiles = walk(p);
    const int parts = tiles.parts(), slot = tiles.tail_slot(tile);
    const int warp = c.tid / 32, lane = c.tid % 32;
    Tensor o = make_tensor(acc.data(), acc_rowcol(acc.layout()));
    constexpr int kCols = decltype(size<1>(o))::value;
    // every part stores, the last too: it cannot know it is last before it arrives
    float4* mine = lane_block(slot, tile.part, parts, warp, lane);
    CUTE_UNROLL
    for (int r = 0; r < 2; ++r) {
      CUTE_UNROLL
      for (int j = 0; j < kCols; j += 4)
        __stcg(mine + ((r * kCols + j) / 4) * 32, make_float4(o(r, j), o(r, j + 1), o(r, j + 2), o(r, j + 3)));
    }
    __stcg(mine + (kAccFloats / 4) * 32, make_float4(c.m[0], c.m[1], c.l[0], c.l[1]));
    __threadfence();  // this lane's part, visible on the GPU before the warp arrives
    __syncwarp();
    int before = 0;
    if (lane == 0) {
      int* arrivals = counter + 1 + slot * kWarps + warp;
      asm volatile("atom.acq_rel.gpu.global.add.s32 %0, [%1], 1;" : "=r"(before) : "l"(arrivals) : "memory");
    }
    // lane 0's count reaches the warp by a vote: broadcast by a shuffle, ptxas took the KV loop's GMMA
    // descriptors out of uniform registers (R2UR 17 -> 48 a KV tile, and 16 B of spills)
    if (!__any_sync(0xffffffffu, lane == 0 && before == parts - 1)) return false;
    __threadfence();  // the other parts' stores, seen through the arrivals they made before this one
    for (int q = 0; q < parts; ++q) {
      if (q == tile.part) continue;
      const float4* theirs = lane_block(slot, q, parts, warp, lane);
      const float4 ml = __ldcg(theirs + (kAccFloats / 4) * 32);
      const float m_q[2] = {ml.x, ml.y}, l_q[2] = {ml.z, ml.w};
      CUTE_UNROLL
      for (int r = 0; r < 2; ++r) {
        const float m_new = fmaxf(c.m[r], m_q[r]);
        const float m_fin = m_new == -INFINITY ? 0.f : m_new;  // a part that saw no key: -inf, l = 0
        const float a = exp2f(c.m[r] - m_fin), b = exp2f(m_q[r] - m_fin);
        c.l[r] = c.l[r] * a + l_q[r] * b;
        c.m[r] = m_new;
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
    return true;
  }
};

}  // namespace qm::sm90
