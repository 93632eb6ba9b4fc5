#include <qimeng/sm90/mma.cuh>
#include <qimeng/sm90/pipeline.cuh>
#include <cstdio>
#include <map>
#include <vector>
using namespace cute;
template <class G> int check_gather_copies() {
  int bad = 0;
  constexpr int BN = G::kSegs * G::kSegRows;
  std::vector<int> written(BN * G::kUnitsPerRow, 0);
  for (int t = 0; t < 128; ++t) for (int i = 0; i < G::kSegsPerWarp; ++i) for (int j = 0; j < G::kCopiesPerSeg; ++j)
    for (int q = 0; q < G::kPanelCopies; ++q) {
      if ((t / 32) + G::kWarps * i >= G::kSegs) continue;  // the warps past the tile's last segment
      int row = G::copy_row(t, i, j), unit = G::copy_unit(t, q);
      if (row >= BN) { if (bad++ < 9) printf("gather copy t%d i%d j%d: row %d\n", t, i, j, row); continue; }
      written[row * G::kUnitsPerRow + unit] += 1;
      if (G::copy_offset(t, i, j, q) != G::unit_offset(row, unit)) {
        if (bad++ < 9) printf("gather copy t%d i%d j%d q%d: %d vs %d\n", t, i, j, q, G::copy_offset(t, i, j, q), G::unit_offset(row, unit));
      }
    }
  for (int x = 0; x < BN * G::kUnitsPerRow; ++x)
    if (written[x] != 1) { if (bad++ < 9) printf("gather: unit %d of the tile written %d times\n", x, written[x]); }
  return bad;
}
template <class KT> int check() {
  int bad = 0;
  using T = typename KT::T;
  T* base = reinterpret_cast<T*>(uintptr_t(1) << 20);  // 1024-byte aligned, as the kernel's tiles
  auto addr = [&](auto& ref) { return int(&ref - base); };
  constexpr int BM = KT::kBlockM, BN = KT::kBlockN, D = KT::kHeadDim;
  // 1. K-major SW128 tiles hold row r, column c where a {64, rows} TMA box with 128B swizzle puts it
  auto sq = typename KT::SmemLayoutQ{};
  for (int r = 0; r < BM; ++r) for (int c = 0; c < D; ++c) {
    int chunk = c / 64, cc = c % 64;
    int tma = chunk * BM * 64 + r * 64 + (((cc / 8) ^ (r % 8)) * 8) + cc % 8;
    int off = addr(make_tensor(make_smem_ptr(base), sq)(r, c)); if (off != tma) { if (bad++ < 3) printf("Q (%d,%d): layout %d tma %d\n", r, c, off, tma); }
  }
  auto sk = typename KT::SmemLayoutK{};
  auto svt = typename KT::SmemLayoutVt{};
  for (int s = 0; s < KT::kStages; ++s) for (int r = 0; r < BN; ++r) for (int c = 0; c < D; ++c) {
    int chunk = c / 64, cc = c % 64;
    int tma = s * BN * D + chunk * BN * 64 + r * 64 + (((cc / 8) ^ (r % 8)) * 8) + cc % 8;
    int ok = addr(make_tensor(make_smem_ptr(base), sk)(r, c, s)), ov = addr(make_tensor(make_smem_ptr(base), svt)(c, r, s));
    if (ok != tma) { if (bad++ < 6) printf("K (%d,%d,%d): %d vs %d\n", r, c, s, ok, tma); }
    if (ov != tma) { if (bad++ < 9) printf("Vt (%d,%d,%d): %d vs %d\n", c, r, s, ov, tma); }
  }
  // 1b. the paged gather's cp.async (PagedGather::unit_offset) writes each 16-byte unit where the layout has it
  using G = qm::sm90::PagedGather<KT>;
  for (int r = 0; r < BN; ++r) for (int unit = 0; unit < G::kUnitsPerRow; ++unit) for (int e = 0; e < 8; ++e) {
    int want = addr(make_tensor(make_smem_ptr(base), sk)(r, unit * 8 + e, 0));
    int got = G::unit_offset(r, unit) / int(sizeof(T)) + e;
    if (got != want) { if (bad++ < 9) printf("gather (%d,%d): %d vs layout %d\n", r, unit * 8 + e, got, want); }
  }
  // 1c. its copies (both lane layouts): thread t's copy (j, q) of its i-th segment writes row
  // copy_row(t, i, j), unit copy_unit(t, q), at unit_offset of them; together they write every unit of
  // the tile once
  bad += check_gather_copies<qm::sm90::PagedGather<KT, false>>();
  bad += check_gather_copies<qm::sm90::PagedGather<KT, true>>();
  // 2. S fragment -> A operand of O += P V: each register keeps the (row, key) it had
  typename KT::TiledMmaQK mqk; typename KT::TiledMmaPV mpv;
  auto cS = make_identity_tensor(Shape<Int<BM>, Int<BN>>{});
  std::map<int, std::vector<std::pair<int,int>>> rowcols;
  for (int t = 0; t < KT::kConsumerThreads; ++t) {
    auto tScS = mqk.get_thread_slice(t).partition_C(cS);
    auto tSrS = partition_fragment_C(mqk, Shape<Int<BM>, Int<BN>>{});
    auto LS = tSrS.layout();
    std::vector<std::pair<int,int>> at(size(tSrS));
    for (int i = 0; i < size(tSrS); ++i) at[LS(i)] = {int(get<0>(tScS(i))), int(get<1>(tScS(i)))};
    auto LA = qm::sm90::acc_as_operand_a(LS);
    auto tOcP = mpv.get_thread_slice(t).partition_A(cS);
    if (size(LA) != size(tOcP)) { printf("A sizes differ %d %d\n", int(size(LA)), int(size(tOcP))); return 1; }
    for (int j = 0; j < size(tOcP); ++j) {
      auto want = std::make_pair(int(get<0>(tOcP(j))), int(get<1>(tOcP(j))));
      if (at[LA(j)] != want) { if (bad++ < 12) printf("t%d A[%d]: reg holds (%d,%d) want (%d,%d)\n", t, j, at[LA(j)].first, at[LA(j)].second, want.first, want.second); }
    }
    // 3. rows x columns: one row index = one query row; neighbours in the inner column mode
    auto rc = qm::sm90::acc_rowcol(LS);
    auto rcc = make_tensor(tScS.data(), qm::sm90::acc_rowcol(tScS.layout()));
    for (int r = 0; r < size<0>(rc); ++r) for (int c = 0; c < size<1>(rc); ++c) {
      int row = get<0>(rcc(r, c)), col = get<1>(rcc(r, c));
      if (row != int(get<0>(rcc(r, 0)))) { if (bad++ < 15) printf("rowcol row differs\n"); }
      rowcols[row].push_back({t, col});
      if (c % 2 == 1 && col != int(get<1>(rcc(r, c - 1))) + 1) { if (bad++ < 18) printf("pair not adjacent\n"); }
    }
    // 4. the O accumulator: the same rows in the same order as S (alpha and l are per S row), and
    //    neighbouring columns in pairs (the 4-byte stores of the epilogue)
    auto cO = make_identity_tensor(Shape<Int<BM>, Int<D>>{});
    auto tOcO = mpv.get_thread_slice(t).partition_C(cO);
    auto oc = make_tensor(tOcO.data(), qm::sm90::acc_rowcol(tOcO.layout()));
    if (size<0>(oc) != size<0>(rcc)) { if (bad++ < 30) printf("O rows %d S rows %d\n", int(size<0>(oc)), int(size<0>(rcc))); }
    for (int r = 0; r < size<0>(oc); ++r) for (int c = 0; c < size<1>(oc); ++c) {
      if (int(get<0>(oc(r, c))) != int(get<0>(rcc(r, 0)))) { if (bad++ < 33) printf("t%d O row %d differs from S\n", t, r); }
      if (c % 2 == 1 && int(get<1>(oc(r, c))) != int(get<1>(oc(r, c - 1))) + 1) { if (bad++ < 36) printf("O pair\n"); }
      // the epilogue's quad transpose (Consumer::store_row_16B): pair j at column 8 j + 2 (t % 4)
      if (c % 2 == 0 && int(get<1>(oc(r, c))) != 8 * (c / 2) + 2 * (t % 4)) {
        if (bad++ < 39) printf("t%d O col of pair %d: %d\n", t, c / 2, int(get<1>(oc(r, c))));
      }
    }
  }
  // every row: 4 threads of one quad, every column exactly once
  for (auto& [row, v] : rowcols) {
    std::vector<int> seen(BN, 0); int t0 = v[0].first;
    for (auto [t, c] : v) { seen[c]++; if ((t ^ t0) & ~3) { if (bad++ < 21) printf("row %d spans threads %d and %d\n", row, t0, t); } }
    for (int c = 0; c < BN; ++c) if (seen[c] != 1) { if (bad++ < 24) printf("row %d col %d seen %d\n", row, c, seen[c]); }
  }
  if (int(rowcols.size()) != BM) { printf("rows covered %d\n", int(rowcols.size())); bad++; }
  printf("D=%d BN=%d: %s (%d mismatches)\n", D, BN, bad ? "FAIL" : "ok", bad);
  return bad;
}
int main() {
  using namespace qm::sm90;
  int bad = check<Traits<bf16, 128, 128, 128, 2, 2, 24, 240>>();
  bad += check<Traits<fp16, 64, 128, 128, 2, 2, 24, 240>>();
  bad += check<Traits<bf16, 256, 128, 64, 2, 2, 24, 240>>();
  bad += check<Traits<bf16, 64, 192, 96, 3, 3, 24, 160>>();  // the shipped D = 64 and D = 256 tiles
  bad += check<Traits<fp16, 256, 128, 80, 2, 2, 24, 240>>();
  return bad ? 1 : 0;
}
