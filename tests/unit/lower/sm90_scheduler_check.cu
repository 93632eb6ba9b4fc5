// Host check of qm::sm90::TileScheduler (tiles=persistent): for grids of many shapes, the walk
// t = 0 .. count-1 visits every (m_block, head, batch) tile exactly once; inside an L2 group of
// heads, query blocks come last-first (the longest causal tiles first); a group's K/V fits in L2;
// not causal, the groups are one (head, batch) each (its query blocks consecutive).
#include <qimeng/sm90/scheduler.cuh>
#include <cstdio>
#include <vector>

int main() {
  int bad = 0, grids = 0;
  const int kv_row_bytes[] = {64 * 2, 128 * 2, 256 * 2};
  for (int m_blocks : {1, 3, 8, 128}) for (int heads : {1, 5, 16, 64}) for (int batch : {1, 2, 7})
    for (int kv_len : {1, 1000, 16384, 131072}) for (int rb : kv_row_bytes) for (bool causal : {true, false}) {
      qm::sm90::TileScheduler s(m_blocks, heads, batch, kv_len, rb, causal);
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
  printf("scheduler: %d grids: %s (%d mismatches)\n", grids, bad ? "FAILED" : "ok", bad);
  return bad ? 1 : 0;
}
