// Host check of qm::sm90::TileScheduler (tiles=persistent): for grids of many shapes, the walk
// t = 0 .. count-1 visits every (m_block, head, batch) tile exactly once; inside an L2 group of
// heads, query blocks come last-first (the longest causal tiles first); a group's K/V fits in L2;
// not causal, the groups are one (head, batch) each (its query blocks consecutive). TileWord: the
// word the producer hands over unpacks to the same tile, packed exactly when the grid fits its fields.
// Split tail (split=tail): the walk hands out every tile before the tail whole and each tail tile as
// `parts` parts, each exactly once; tail_slot numbers the tail tiles 0 .. tail - 1; a part's word
// unpacks to it; part_range cuts a KV range into contiguous runs that cover it. Stream share (split=stream):
// see the last loop.
#include <qimeng/sm90/scheduler.cuh>
#include <cstdio>
#include <vector>

int main() {
  int bad = 0, grids = 0;
  const int kv_row_bytes[] = {64 * 2, 128 * 2, 256 * 2};
  for (int m_blocks : {1, 3, 8, 128}) for (int heads : {1, 5, 16, 64}) for (int batch : {1, 2, 7})
    for (int kv_len : {1, 1000, 16384, 131072}) for (int rb : kv_row_bytes) for (bool causal : {true, false}) {
      qm::sm90::TileScheduler s(m_blocks, heads, batch, kv_len, rb, causal);
      const qm::sm90::TileWord word(m_blocks, heads, batch);
      if (!causal && s.group != 1 && bad++ < 5) printf("not causal: groups of %d heads\n", s.group);
      ++grids;
      if (s.count != m_blocks * heads * batch) { ++bad; continue; }
      std::vector<int> seen(s.count, 0);
      int last_pair_group = -1, last_m = m_blocks;
      for (int t = 0; t < s.count; ++t) {
        const qm::sm90::Tile tile = s.at(t);
        if (tile.m_block < 0 || tile.m_block >= m_blocks || tile.head < 0 || tile.head >= heads ||
            tile.batch < 0 || tile.batch >= batch) {
          if (bad++ < 5) printf("grid %d x %d x %d: tile %d out of range (%d, %d, %d)\n", m_blocks, heads, batch, t,
                                tile.m_block, tile.head, tile.batch);
          continue;
        }
        seen[(tile.m_block * heads + tile.head) * batch + tile.batch] += 1;
        const int w = word.pack(t, tile);
        const qm::sm90::Tile back = word.unpack(w, s);
        if ((w < 0 || back.m_block != tile.m_block || back.head != tile.head || back.batch != tile.batch) && bad++ < 5)
          printf("grid %d x %d x %d: tile %d's word %d unpacks to (%d, %d, %d)\n", m_blocks, heads, batch, t, w,
                 back.m_block, back.head, back.batch);
        // within a group the query blocks never go up
        const int group = (tile.batch * heads + tile.head) / s.group;
        if (group == last_pair_group && tile.m_block > last_m) {
          if (bad++ < 5) printf("grid %d x %d x %d: tile %d goes from block %d up to %d\n", m_blocks, heads, batch, t,
                                last_m, tile.m_block);
        }
        if (group != last_pair_group) last_pair_group = group;
        last_m = tile.m_block;
      }
      for (int i = 0; i < s.count; ++i)
        if (seen[i] != 1 && bad++ < 5) printf("grid %d x %d x %d: tile %d visited %d times\n", m_blocks, heads, batch, i, seen[i]);
      const long long group_bytes = static_cast<long long>(s.group) * kv_len * rb * 2;
      if (s.group < 1 || (s.group > 1 && group_bytes > qm::sm90::kL2Bytes))
        if (bad++ < 5) printf("group of %d heads holds %lld bytes of K/V\n", s.group, group_bytes);
    }
  // split tail: ctas 132 (H100) and 7, parts 2 .. 7 (and 1 and 9: none, and clamped to 7)
  for (int m_blocks : {1, 8, 17}) for (int heads : {1, 16}) for (int batch : {1, 3})
    for (int ctas : {7, 132}) for (int parts : {1, 2, 3, 5, 7, 9}) for (bool causal : {false, true}) {
      const qm::sm90::TileScheduler s(m_blocks, heads, batch, 4096, 256, causal, ctas, parts);
      const qm::sm90::TileWord word(m_blocks, heads, batch);
      const int tiles = m_blocks * heads * batch, tail = tiles % ctas;
      const int k = causal || parts < 2 ? 1 : (parts > qm::sm90::kMaxParts ? qm::sm90::kMaxParts : parts);
      ++grids;
      if ((s.parts() != k || s.count != tiles + tail * (k - 1)) && bad++ < 5)
        printf("split %d x %d x %d on %d: parts %d count %d\n", m_blocks, heads, batch, ctas, s.parts(), s.count);
      std::vector<int> whole(tiles, 0), part_seen(tiles * qm::sm90::kMaxParts, 0);
      for (int t = 0; t < s.count; ++t) {
        const qm::sm90::Tile tile = s.at(t);
        const int n = (tile.m_block * heads + tile.head) * batch + tile.batch;
        const qm::sm90::Tile back = word.unpack(word.pack(t, tile), s);
        if ((back.m_block != tile.m_block || back.head != tile.head || back.batch != tile.batch ||
             back.part != tile.part) && bad++ < 5)
          printf("split: item %d's word unpacks to another part\n", t);
        if (tile.part < 0) {
          whole[n] += 1;
          continue;
        }
        if (k < 2 || tile.part >= k) {
          if (bad++ < 5) printf("split: item %d is part %d of %d\n", t, tile.part, k);
          continue;
        }
        part_seen[n * qm::sm90::kMaxParts + tile.part] += 1;
        const int slot = s.tail_slot(tile);
        if ((slot < 0 || slot >= tail || s.tile_at(s.first_tail() + slot).m_block != tile.m_block) && bad++ < 5)
          printf("split: item %d's tail slot %d (tail %d)\n", t, slot, tail);
      }
      for (int n = 0; n < tiles; ++n) {
        int parts_of_n = 0;
        for (int q = 0; q < qm::sm90::kMaxParts; ++q) parts_of_n += part_seen[n * qm::sm90::kMaxParts + q] == 1;
        const bool ok = whole[n] == 1 ? parts_of_n == 0 : (whole[n] == 0 && parts_of_n == k && k > 1);
        if (!ok && bad++ < 5) printf("split: tile %d whole %d times, %d of %d parts once\n", n, whole[n], parts_of_n, k);
      }
    }
  for (int lo : {0, 3}) for (int len : {0, 1, 2, 7, 16, 129}) for (int k = 1; k <= qm::sm90::kMaxParts; ++k) {
    int at = lo;
    for (int q = 0; q < k; ++q) {
      const qm::sm90::KvRange r = qm::sm90::part_range(lo, lo + len, q, k);
      if ((r.lo != at || r.hi < r.lo) && bad++ < 5) printf("part_range(%d, %d): part %d of %d is [%d, %d)\n", lo,
                                                           lo + len, q, k, r.lo, r.hi);
      at = r.hi;
    }
    const qm::sm90::KvRange all = qm::sm90::part_range(lo, lo + len, -1, k);
    if ((at != lo + len || all.lo != lo || all.hi != lo + len) && bad++ < 5) printf("part_range: runs end at %d\n", at);
    ++grids;
  }
  // the fields' limits: packed up to 512 query blocks, 256 heads, 2048 sequences; the corner tiles
  // of grids at and past them (their tile numbers would overflow the walk above)
  for (int m_blocks : {512, 513}) for (int heads : {256, 257}) for (int batch : {2048, 2049}) {
    const qm::sm90::TileWord word(m_blocks, heads, batch);
    const bool fits = m_blocks <= 512 && heads <= 256 && batch <= 2048;
    ++grids;
    if (word.packed != fits && bad++ < 5) printf("grid %d x %d x %d: packed %d\n", m_blocks, heads, batch, word.packed);
    const qm::sm90::TileScheduler small(1, 1, 1, 1, 2, false);  // unpack's fallback is not reached when packed
    for (int mb : {0, m_blocks - 1}) for (int h : {0, heads - 1}) for (int b : {0, batch - 1}) for (int part : {-1, 6}) {
      const int w = word.pack(7, qm::sm90::Tile{mb, h, b, part});
      if (!fits) {
        if (w != 7 && bad++ < 5) printf("grid %d x %d x %d: not packed, but the word is %d\n", m_blocks, heads, batch, w);
        continue;
      }
      const qm::sm90::Tile back = word.unpack(w, small);
      if ((w < 0 || back.m_block != mb || back.head != h || back.batch != b || back.part != part) && bad++ < 5)
        printf("tile (%d, %d, %d) packs to %d, unpacks to (%d, %d, %d)\n", mb, h, b, w, back.m_block, back.head,
               back.batch);
    }
  }
  // split=stream: the whole waves' tiles below the sharing region (CTA c: c, c + G, ...) and the CTAs' runs
  // cover every (tile, KV block) exactly once; a tile's parts are its only non-whole ones, its owner (the
  // run holding its first step) has bit 0 clear and every other part bit 0 set; the part blocks the
  // combine reads (owner 2 x owner + 1, party q 2 x (owner + q)) are the ones the parts' CTAs write (first
  // part 2 x cta, last part 2 x cta + 1), each written once
  for (int tiles : {1, 2, 5, 68, 132, 200, 256, 2048, 2051}) for (int kv : {1, 2, 7, 16, 128, 1000})
    for (int ctas : {1, 3, 132}) {
    if (!qm::sm90::StreamShare::shares(tiles, kv, ctas)) continue;
    ++grids;
    std::vector<int> covered(size_t(tiles) * kv, 0), written(2 * ctas, 0), parties_seen(tiles, 0);
    for (int c = 0; c < ctas; ++c) {
      const qm::sm90::StreamShare sh(tiles, kv, c, ctas);
      if ((sh.base % ctas || sh.base < 0 || sh.base > tiles) && bad++ < 5)
        printf("stream %d x %d / %d: region from tile %d\n", tiles, kv, ctas, sh.base);
      for (int t = c; t < sh.base; t += ctas)
        for (int n = 0; n < kv; ++n) covered[size_t(t) * kv + n] += 1;
      for (int t = sh.t0; t <= sh.t1; ++t) {
        const int part = sh.part_of(t, kv);
        const qm::sm90::KvRange r = sh.range(0, kv, part, kv);
        if ((t < sh.base || r.lo < 0 || r.hi > kv || r.lo >= r.hi || (part < 0) != (r.lo == 0 && r.hi == kv)) &&
            bad++ < 5)
          printf("stream %d x %d / %d: cta %d tile %d part %d runs [%d, %d)\n", tiles, kv, ctas, c, t, part, r.lo, r.hi);
        for (int n = r.lo; n < r.hi && n >= 0 && n < kv; ++n) covered[size_t(t) * kv + n] += 1;
        if (part < 0) continue;
        parties_seen[t] += 1;
        const int owner = sh.cta_of((t - sh.base) * kv, ctas);
        const int parties = sh.cta_of((t - sh.base) * kv + kv - 1, ctas) - owner + 1;
        const int q = c - owner;
        const int read = q == 0 ? 2 * owner + 1 : 2 * (owner + q), write = 2 * c + ((part & 1) ? 0 : 1);
        if ((q < 0 || q >= parties || (q == 0) != ((part & 1) == 0) || read != write) && bad++ < 5)
          printf("stream %d x %d / %d: cta %d tile %d part %d: owner %d of %d parties\n", tiles, kv, ctas, c, t, part,
                 owner, parties);
        if (write >= 0 && write < 2 * ctas) written[write] += 1;
      }
    }
    for (size_t i = 0; i < covered.size(); ++i)
      if (covered[i] != 1 && bad++ < 5) printf("stream %d x %d / %d: step %zu covered %d times\n", tiles, kv, ctas, i,
                                               covered[i]);
    for (int w : written)
      if (w > 1 && bad++ < 5) printf("stream %d x %d / %d: a part block written %d times\n", tiles, kv, ctas, w);
    const qm::sm90::StreamShare any(tiles, kv, 0, ctas);
    for (int t = any.base; t < tiles; ++t) {
      const int owner = any.cta_of((t - any.base) * kv, ctas);
      const int parties = any.cta_of((t - any.base) * kv + kv - 1, ctas) - owner + 1;
      if (parties_seen[t] != (parties > 1 ? parties : 0) && bad++ < 5)
        printf("stream %d x %d / %d: tile %d in %d parts, %d counted\n", tiles, kv, ctas, t, parties_seen[t], parties);
    }
  }
  printf("scheduler: %d grids: %s (%d mismatches)\n", grids, bad ? "FAILED" : "ok", bad);
  return bad ? 1 : 0;
}
