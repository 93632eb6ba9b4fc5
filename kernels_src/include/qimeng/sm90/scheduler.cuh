// qimeng/sm90/scheduler.cuh -- TL's `kernel ... grid (m_block : X, q_head : Y, b : Z) with tiles=persistent`:
// one CTA per SM; its producer claims tiles one at a time from a counter in global memory (zeroed by
// the host before each launch) and hands each tile to the consumers through shared memory (one word:
// its coordinates packed, see TileWord),
// so the producer loads the next tile's Q and K/V while the consumers finish the current one (no CTA
// launch, no cold pipeline between tiles), and an SM that finishes early takes more tiles (no static
// share that a slow SM or a long causal tile holds up).
//
// Order of the tiles (what the counter hands out):
//  - causal: heads in groups whose K and V fit in L2 together; inside a group the query blocks from
//    the last to the first (under a causal mask the last see the most keys: the longest tiles go
//    first and the short ones fill the tail), the group's heads fastest;
//  - not causal (every tile the same work): one (head, batch) at a time, its query blocks fastest,
//    so the CTAs running at once read the same few heads' K/V (a wave of 132 tiles covers ~8 heads
//    at 16 query blocks each; spreading it over the group's 32 heads measured 4-9% slower).
#pragma once
#include <cstdint>

namespace qm::sm90 {

// what the K/V of one head group may take (H100: 50 MB of L2); a diagnostic build may set another
// budget (scripts/sm90_variants.py)
#ifndef QM_SM90_L2_GROUP_BYTES
#define QM_SM90_L2_GROUP_BYTES (32ll << 20)
#endif
constexpr int64_t kL2Bytes = QM_SM90_L2_GROUP_BYTES;
#ifndef QM_SM90_GROUP_NOT_CAUSAL  // 1: group heads for L2 without a causal mask too (diagnostic builds)
#define QM_SM90_GROUP_NOT_CAUSAL 0
#endif
#ifndef QM_SM90_DIAG_SKIP_TAIL  // 1 (diagnostic, timing only: the output is incomplete): the counter hands out
#define QM_SM90_DIAG_SKIP_TAIL 0  // whole waves only, dropping the last count % gridDim.x tiles, to time what
#endif                            // the last wave costs (perf-notes "fourteenth run", run 10)

struct Tile {
  int m_block;
  int head;
  int batch;
  int part = -1;  // split tail: which part of the tile's KV range (-1: the whole tile)
};

// The split tail (TL `kernel ... with split=tail`). Without a mask every tile is the same work, so T
// tiles on G CTAs end in a partial wave of T % G tiles while the other CTAs idle: D 128 at 2k, 68
// tiles of 2048, 4.6-5.8% of the kernel's time (perf-notes "fourteenth run", run 10). Those tiles
// are handed out in parts along the keys instead; each part leaves its unnormalised O and row max /
// sum in a workspace, and the last part of a tile to finish combines them and stores O (split.cuh).
// How many parts: the host's choice (qimeng_serve/runtime/split_tail.py), passed as AttnParams::num_splits
// with the workspace it sized for them; not computed here: its loop of divisions spilled the 24- to
// 40-register producers.
constexpr int kMaxParts = 7;  // the tile word's part field holds 0 (whole) .. 7
// A value read again where it is used: an empty asm the compiler cannot move, so what is computed from
// it is not hoisted out of the tile loop and held there (the 24- and 32-register producers spilled the
// split tail's scheduler values so held)
__device__ __forceinline__ int opaque(int v) {
  asm volatile("" : "+r"(v));
  return v;
}
__host__ __device__ __forceinline__ int clamp_parts(int parts) {
  return parts < 1 ? 1 : (parts > kMaxParts ? kMaxParts : parts);
}

// The KV blocks [lo, hi) of one part of [n_lo, n_hi): k near-equal runs, the first ones the shorter
struct KvRange {
  int lo;
  int hi;
};
__host__ __device__ __forceinline__ KvRange part_range(int n_lo, int n_hi, int part, int parts) {
  if (part < 0) return KvRange{n_lo, n_hi};
  const int n = n_hi > n_lo ? n_hi - n_lo : 0;
  return KvRange{n_lo + n * part / parts, n_lo + n * (part + 1) / parts};
}

// carry=pv (one KV loop across a CTA's tiles, qimeng_serve/lower/sm90_carry.py): the end of a tile's
// KV range, at least one block. A tile with no key to see (causal with Lk < Lq: its rows come before
// every key) runs block n_lo, which its mask hides entirely (P = 0, l = 0: O = 0, as the empty range
// stores), so the loop needs no branch for it. The producer and the consumers both take this end.
__host__ __device__ __forceinline__ int kv_end(int n_lo, int n_hi) { return n_hi > n_lo ? n_hi : n_lo + 1; }

// The stream share (TL `kernel ... with split=stream`; Stream-K's hybrid). Without a mask every tile is `kv`
// KV steps, and T tiles on G CTAs end in a partial wave of T % G tiles while the other CTAs idle: D 128,
// 68 of 132 at every sweep length, 4.6-5.8% of the kernel's time (perf-notes "fourteenth run"). Here the
// walk's first whole waves but one go out as whole tiles, CTA c taking tiles c, c + G, ...; the last G +
// T % G tiles (the sharing region: T % G when there is no whole wave) are cut into G equal runs of KV
// steps in walk order, one a CTA. A run covers whole tiles, but its first may start inside a tile (its
// steps before the run are the previous CTA's) and its last may end inside one; such a part of a tile is
// combined with the tile's other parts (split.cuh StreamTail). So each CTA runs the same number of steps and
// leaves at most two parts. Its first parts end spread over the region, but the owners' (each run's last)
// end together, and their merges cost about 11 us a launch: D 128 without a mask -3.4% at 1k, +1% at 8k
// (perf-notes "seventeenth run"). Sharing out the whole walk instead gave each CTA its own heads: 132
// heads' K/V at once missed L2, 0.55x at L 1k (run 1).
// The steps of a tile in the order the KV loop takes them: step j is KV tile kv - 1 - j (order=reverse).
struct StreamShare {
  int base;    // the first tile of the sharing region (the whole tiles before it: base / G waves)
  int steps;   // the region's KV steps
  int t0, t1;  // this CTA's run: its first and last tile (t1 < t0: an empty run)
  int j0;      // the first tile's steps that the previous CTA ran (0: the run starts the tile)
  int j1;      // the last tile's steps in the run, from the tile's first (kv: the run ends the tile)
  // 32-bit arithmetic (fits: shares); a 64-bit division is a call, and one in the consumers' tile head
  // pushed the KV loop's GMMA descriptors out of uniform registers (R2UR 17 -> 48 a KV tile)
  __host__ __device__ __forceinline__ static int region(int tiles, int ctas) {
    const int tail = tiles % ctas;
    return tail == 0 ? 0 : (tiles >= ctas ? ctas + tail : tail);
  }
  __host__ __device__ __forceinline__ StreamShare(int tiles, int kv, int cta, int ctas) {
    const int shared = region(tiles, ctas);
    base = tiles - shared;
    steps = shared * kv;
    const uint32_t g0 = static_cast<uint32_t>(steps) * static_cast<uint32_t>(cta) / static_cast<uint32_t>(ctas);
    const uint32_t g1 = static_cast<uint32_t>(steps) * static_cast<uint32_t>(cta + 1) / static_cast<uint32_t>(ctas);
    const int r0 = static_cast<int>(g0 / static_cast<uint32_t>(kv));
    const int r1 = g1 > g0 ? static_cast<int>((g1 - 1) / static_cast<uint32_t>(kv)) : r0 - 1;
    j0 = static_cast<int>(g0) - r0 * kv;
    j1 = static_cast<int>(g1) - r1 * kv;
    t0 = base + r0;
    t1 = base + r1;
  }
  // whether a launch can share: a partial wave to share out, every run at least one step (so the runs
  // that cut a tile are consecutive CTAs: StreamTail numbers them from the owner), and the region's steps
  // x ctas within the 32-bit arithmetic. Else the launch takes the counter's claims (StreamClaims)
  __host__ __device__ __forceinline__ static bool shares(int tiles, int kv, int ctas) {
    const int64_t steps = static_cast<int64_t>(region(tiles, ctas)) * kv;
    return steps > 0 && steps >= ctas && steps * ctas < (int64_t(1) << 32);
  }
  // the CTA whose run holds step `step` of the region (runs of floor(c * steps / ctas))
  __host__ __device__ __forceinline__ int cta_of(int step, int ctas) const {
    return static_cast<int>((static_cast<uint32_t>(step + 1) * static_cast<uint32_t>(ctas) + steps - 1) /
                            static_cast<uint32_t>(steps)) - 1;
  }
  // Tile::part of tile t of this CTA: -1 whole; else bit 0 set when the run starts inside it (an earlier
  // CTA ran its first steps), bit 1 when the run ends inside it
  __host__ __device__ __forceinline__ int part_of(int t, int kv) const {
    const int part = (t == t0 && j0 > 0 ? 1 : 0) | (t == t1 && j1 < kv ? 2 : 0);
    return part ? part : -1;
  }
  // the KV tiles [lo, hi) of tile t's part (part_of), within the tile's own [n_lo, n_hi)
  __host__ __device__ __forceinline__ KvRange range(int n_lo, int n_hi, int part, int kv) const {
    if (part < 0) return KvRange{n_lo, n_hi};
    const int first = part & 1 ? j0 : 0, end = part & 2 ? j1 : kv;  // its steps [first, end)
    const int hi = n_hi < kv - first ? n_hi : kv - first, lo = n_lo > kv - end ? n_lo : kv - end;
    return KvRange{lo < hi ? lo : hi, hi};  // a tile shorter than kv (varlen) may leave a part none
  }
};

// split=stream's claims: the whole waves' tiles c, c + G, ... below the sharing region, then this CTA's
// run in order (no counter); or, when the launch does not share (a mask, a window, a grid past the packed
// word, no partial wave: `on` false), the counter's claims (TileCounter)
struct StreamClaims {
  int* counter;
  StreamShare share;
  int end;   // tile numbers below this are handed out
  int kv;    // KV steps a tile
  bool on;
  __device__ __forceinline__ StreamClaims(int* counter_, int tiles, int kv_, bool on_)
      : counter(counter_), share(tiles, kv_ > 0 ? kv_ : 1, blockIdx.x, gridDim.x), kv(kv_ > 0 ? kv_ : 1),
        on(on_ && StreamShare::shares(tiles, kv_ > 0 ? kv_ : 1, gridDim.x)) {
    end = on ? share.t1 + 1 : tiles;
  }
  __device__ __forceinline__ int first() const {
    const int c = static_cast<int>(blockIdx.x);
    return on && c >= share.base ? share.t0 : c;
  }
  __device__ __forceinline__ int next(int previous) const {
    if (!on) return static_cast<int>(gridDim.x) + atomicAdd(counter, 1);
    const int t = previous + (previous < share.base ? static_cast<int>(gridDim.x) : 1);
    return previous < share.base && t >= share.base ? share.t0 : t;
  }
  template <class Sched>
  __device__ __forceinline__ Tile at(const Sched& tiles, int t) const {
    Tile tile = tiles.tile_at(t);
    tile.part = on ? share.part_of(t, kv) : -1;
    return tile;
  }
};

struct TileScheduler {
  int m_blocks;  // X
  int heads;     // Y
  int hb;        // Y * Z: (head, batch) pairs, head fastest
  int group;     // heads per L2 group
  int tiles;     // X * Y * Z
  int ctas;      // split tail: the grid's CTAs (0: no split)
  int n_parts;   // split tail: parts per tail tile (1: none)
  int count;     // what the counter hands out: the tiles, each of the tail's as n_parts parts

  // split_ctas (gridDim.x, or 0) and parts (AttnParams::num_splits, <= 1: none) split the tail; only
  // without a mask (every tile the same work) and one (head, batch) per group, whose tiles tail_slot()
  // can number back
  __host__ __device__ __forceinline__ TileScheduler(int m_blocks_, int heads_, int batch, int kv_len, int kv_row_bytes,
                                                    bool causal, int split_ctas = 0, int parts = 1)
      : m_blocks(m_blocks_), heads(heads_), hb(heads_ * batch) {
    const int64_t per_head = int64_t(kv_len > 0 ? kv_len : 1) * kv_row_bytes * 2;  // K and V
    const int64_t g = causal || QM_SM90_GROUP_NOT_CAUSAL ? kL2Bytes / per_head : 1;
    group = g < 1 ? 1 : (g > hb ? hb : static_cast<int>(g));
    tiles = m_blocks * hb;
    const bool split = split_ctas > 0 && parts > 1 && !causal && group == 1;
    ctas = split ? split_ctas : 0;
    n_parts = split ? clamp_parts(parts) : 1;
    count = tiles + (ctas ? tiles % ctas : 0) * (n_parts - 1);
#if QM_SM90_DIAG_SKIP_TAIL && defined(__CUDA_ARCH__)
    if (count > static_cast<int>(gridDim.x)) count -= count % static_cast<int>(gridDim.x);
#endif
  }

  __host__ __device__ __forceinline__ int parts() const { return n_parts; }
  // the first tile of the tail (tiles: none)
  __host__ __device__ __forceinline__ int first_tail() const { return ctas ? tiles - tiles % ctas : tiles; }

  // item t of the counter: tile t, or in the split tail the (t - first_tail()) % parts()-th part of
  // tile first_tail() + (t - first_tail()) / parts() (a tile's parts are handed out together)
  __host__ __device__ __forceinline__ Tile at(int t) const {
    const int first = first_tail();
    if (t >= first) {
      const int k = parts();
      if (k > 1) {
        Tile tile = tile_at(first + (t - first) / k);
        tile.part = (t - first) % k;
        return tile;
      }
    }
    return tile_at(t);
  }

  // which tail tile a part belongs to (0 .. tiles % ctas - 1): tile_at inverted for groups of one
  __host__ __device__ __forceinline__ int tail_slot(const Tile& tile) const {
    return (tile.batch * heads + tile.head) * m_blocks + (m_blocks - 1 - tile.m_block) - first_tail();
  }

  __host__ __device__ __forceinline__ Tile tile_at(int t) const {
    const int per_group = group * m_blocks;
    const int g = t / per_group;
    const int r = t - g * per_group;
    const int first = g * group;
    const int size = hb - first < group ? hb - first : group;  // the last group may be partial
    const int pair = first + r % size;
    return Tile{m_blocks - 1 - r / size, pair % heads, pair / heads};
  }
};

// What the producer hands the consumers for a tile: its coordinates packed into one int when the
// grid fits the fields (bits 0-8 the query block, 9-16 the head, 17-27 the sequence, 28-30 the part
// + 1; non-negative, so -1 still ends), else the item's number, which the consumers decode with
// TileScheduler::at. The packed word spares the consumers at()'s chain of divisions (0.42 us per
// tile, on their critical path between tiles); one word, not several: a second word shuffled from
// shared memory pushed the GMMA descriptors out of uniform registers (+32 R2UR per KV tile).
struct TileWord {
  bool packed;  // the same in every thread: from kernel parameters
  __host__ __device__ __forceinline__ TileWord(int m_blocks, int heads, int batch)
      : packed(m_blocks <= (1 << 9) && heads <= (1 << 8) && batch <= (1 << 11)) {}
  __host__ __device__ __forceinline__ int pack(int t, const Tile& tile) const {
    return packed ? tile.m_block | (tile.head << 9) | (tile.batch << 17) | ((tile.part + 1) << 28) : t;
  }
  __host__ __device__ __forceinline__ Tile unpack(int w, const TileScheduler& tiles) const {
    return packed ? Tile{w & 0x1ff, (w >> 9) & 0xff, (w >> 17) & 0x7ff, (w >> 28) - 1} : tiles.at(w);
  }
};

// The producer's tile claims: its CTA's first tile is blockIdx.x, each later one the next unclaimed
// (gridDim.x + the counter's old value). counter: two ints, zero before the launch (the claims, then
// the CTAs whose claims are over). A diagnostic build may set QM_SM90_STATIC_TILES 1: each CTA then
// takes every gridDim.x-th tile from its first (no counter; the order per CTA is fixed before the launch).
//
// retire() leaves the counter zero for the next launch on the stream, so the host keeps one counter
// per stream and zeroes it once (runtime/tile_counter.py) instead of enqueuing a fill before every launch.
#ifndef QM_SM90_STATIC_TILES
#define QM_SM90_STATIC_TILES 0
#endif
struct TileCounter {
  int* counter;
  __device__ __forceinline__ int first() const { return static_cast<int>(blockIdx.x); }
  __device__ __forceinline__ int next(int previous) const {
    return static_cast<int>(gridDim.x) + (QM_SM90_STATIC_TILES ? previous : atomicAdd(counter, 1));
  }
  // Once, by the thread that claimed, after its last claim: the last CTA to get here zeroes both ints.
  // Every other CTA has made its last claim by then (the fences order each CTA's claims before its
  // count), and no CTA reads the counter again in this launch.
  __device__ __forceinline__ void retire() const {
    __threadfence();
    if (atomicAdd(counter + 1, 1) == static_cast<int>(gridDim.x) - 1) {
      __threadfence();
      atomicExch(counter, 0);
      atomicExch(counter + 1, 0);
    }
  }
};

// TL's plain grid (tiles=grid): this CTA's one tile is its block index, the query blocks taken from
// the last: CTAs start in block-index order, and under a causal mask the last query blocks see the
// most keys, so the long tiles start first and the short ones fill the tail (FlashAttention-2's
// order; paged prefill causal +2-11% at L 8k-16k, full level: session 10, run 3). A diagnostic build
// may set QM_SM90_GRID_HEAVY_FIRST 0 for block-index order.
#ifndef QM_SM90_GRID_HEAVY_FIRST
#define QM_SM90_GRID_HEAVY_FIRST 1
#endif
struct GridTile {
  static constexpr int count = 1;
  __device__ __forceinline__ Tile at(int) const {
    const int m = QM_SM90_GRID_HEAVY_FIRST ? static_cast<int>(gridDim.x - 1 - blockIdx.x) : static_cast<int>(blockIdx.x);
    return Tile{m, static_cast<int>(blockIdx.y), static_cast<int>(blockIdx.z)};
  }
};

}  // namespace qm::sm90
