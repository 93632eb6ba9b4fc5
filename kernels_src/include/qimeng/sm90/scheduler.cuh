// qimeng/sm90/scheduler.cuh -- TL's `kernel ... grid (m_block : X, q_head : Y, b : Z) with tiles=persistent`:
// one CTA per SM walks the grid's tiles (t = blockIdx.x, blockIdx.x + gridDim.x, ...), so the producer
// loads the next tile's Q and K/V while the consumers finish the current one (no CTA launch, no
// cold pipeline between tiles).
//
// Order: heads are taken in groups whose K and V fit in L2 together; inside a group the query
// blocks run from the last to the first (under a causal mask the last see the most keys, so the
// longest tiles start first and the short ones fill the tail), the group's heads fastest, so the
// CTAs of one wave read the same few heads' K/V.
#pragma once
#include <cstdint>

namespace qm::sm90 {

constexpr int64_t kL2Bytes = 32ll << 20;  // what the K/V of one head group may take (H100: 50 MB of L2)

struct Tile {
  int m_block;
  int head;
  int batch;
};

struct TileScheduler {
  int m_blocks;  // X
  int heads;     // Y
  int hb;        // Y * Z: (head, batch) pairs, head fastest
  int group;     // heads per L2 group
  int count;     // X * Y * Z

  __host__ __device__ __forceinline__ TileScheduler(int m_blocks_, int heads_, int batch, int kv_len, int kv_row_bytes)
      : m_blocks(m_blocks_), heads(heads_), hb(heads_ * batch) {
    const int64_t per_head = int64_t(kv_len > 0 ? kv_len : 1) * kv_row_bytes * 2;  // K and V
    const int64_t g = kL2Bytes / per_head;
    group = g < 1 ? 1 : (g > hb ? hb : static_cast<int>(g));
    count = m_blocks * hb;
  }

  __host__ __device__ __forceinline__ Tile at(int t) const {
    const int per_group = group * m_blocks;
    const int g = t / per_group;
    const int r = t - g * per_group;
    const int first = g * group;
    const int size = hb - first < group ? hb - first : group;  // the last group may be partial
    const int pair = first + r % size;
    return Tile{m_blocks - 1 - r / size, pair % heads, pair / heads};
  }
};

// TL's plain grid (tiles=grid): this CTA's one tile is its block index
struct GridTile {
  static constexpr int count = 1;
  __device__ __forceinline__ Tile at(int) const {
    return Tile{static_cast<int>(blockIdx.x), static_cast<int>(blockIdx.y), static_cast<int>(blockIdx.z)};
  }
};

}  // namespace qm::sm90
