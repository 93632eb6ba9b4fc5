// Host check (no GPU) of the shared-memory offsets the SM80 building blocks compute by hand,
// against CuTe's own layouts, for every thread of every tile shape in use:
//   * LdsmOperand (gemm.cuh): each ldmatrix row of the Q, K and V^T operands, every (mn, k) step;
//   * ChunkOffsets (traits.cuh): each 16-byte chunk of the Q and K/V tile copies, every pass.
// Prints one line per tile shape and "checked N offsets, M wrong"; exits 1 when any is wrong.
#include <qimeng/qimeng.cuh>
#include <cstdio>

using namespace cute;

static long g_checked = 0, g_wrong = 0;

static void expect(long want, long got, const char* what, int tid, int mn, int k) {
  ++g_checked;
  if (want != got && g_wrong++ < 20)
    printf("  WRONG %s thread %d step (%d, %d): CuTe %ld, building block %ld\n", what, tid, mn, k, want, got);
}

// every ldmatrix row of one operand: the hand-computed byte offset against CuTe's partition
template <class Op, class TS>
static void check_operand(const Op& op, const TS& ts, const void* tile, const char* what, int tid) {
  for (int mn = 0; mn < int(size<1>(ts)); ++mn)
    for (int k = 0; k < int(size<2>(ts)); ++k) {
      const long want = reinterpret_cast<const char*>(&ts(0, mn, k)) - reinterpret_cast<const char*>(tile);
      expect(want, long(Op::offset(op.off, mn, k)), what, tid, mn, k);
    }
}

template <class KT, class Layout, int PASSES>
static void check_chunks(const char* what) {
  constexpr int CPR = KT::kChunksPerRow, RPP = KT::kRowsPerPass, CH = KT::kChunk;
  for (int t = 0; t < KT::kThreads; ++t) {
    const int cc = t % CPR, r0 = t / CPR;
    const qm::ChunkOffsets<KT, Layout, PASSES> L(r0, cc * CH);
    for (int i = 0; i < PASSES; ++i) expect(Layout{}(r0 + i * RPP, cc * CH), L(i), what, t, i, 0);
  }
}

template <class KT>
static void check() {
  using T = typename KT::Element;
  // tiles at an arbitrary 1 KB-aligned address: the offsets must not depend on it
  const T* tile = reinterpret_cast<const T*>(uintptr_t(1) << 20);
  const long before = g_wrong, checked = g_checked;
  typename KT::TiledMma mma;
  for (int t = 0; t < KT::kThreads; ++t) {
    const int mma_tid = KT::kDecode ? t % 32 : t, slice = KT::kDecode ? t / 32 : 0;
    auto thrA = make_tiled_copy_A(Copy_Atom<typename KT::Atoms::LdsmA, T>{}, mma).get_thread_slice(mma_tid);
    check_operand(qm::ldsm_operand_q<KT>(tile, mma_tid), thrA.partition_S(qm::smem_operand_q<KT>(tile)), tile, "Q", t);
    auto thrK = make_tiled_copy_B(Copy_Atom<qm::LdsmB_t<KT, qm::OperandK>, T>{}, mma).get_thread_slice(mma_tid);
    check_operand(qm::ldsm_operand_b<KT, qm::OperandK>(tile, mma_tid, slice),
                  thrK.partition_S(qm::smem_operand_b<KT, qm::OperandK>(tile, slice)), tile, "K", t);
    auto thrV = make_tiled_copy_B(Copy_Atom<qm::LdsmB_t<KT, qm::OperandVt>, T>{}, mma).get_thread_slice(mma_tid);
    check_operand(qm::ldsm_operand_b<KT, qm::OperandVt>(tile, mma_tid, slice),
                  thrV.partition_S(qm::smem_operand_b<KT, qm::OperandVt>(tile, slice)), tile, "V^T", t);
  }
  check_chunks<KT, typename KT::SmemLayoutQ, KT::kPassesQ>("Q chunk");
  check_chunks<KT, typename KT::SmemLayoutKV, KT::kPassesKV>("K/V chunk");
  printf("D=%d %dx%d %d warps stages %d: %ld offsets, %ld wrong\n", KT::kHeadDim, KT::kBlockM, KT::kBlockN,
         KT::kWarps, KT::kStages, g_checked - checked, g_wrong - before);
}

int main() {
  using qm::Sm80; using qm::fp16; using qm::bf16; using qm::Traits;
  // prefill tiles of the golden programs and the tile sweeps: 8 rows per copy pass (D = 128),
  // 32 (8 warps, D = 64) and 4 (D = 256, two swizzle phases per pass)
  check<Traits<Sm80, fp16, 64, 128, 64, 4, 2>>();
  check<Traits<Sm80, fp16, 64, 128, 64, 8, 2>>();
  check<Traits<Sm80, fp16, 128, 128, 64, 4, 2>>();
  check<Traits<Sm80, bf16, 128, 128, 32, 4, 2>>();
  check<Traits<Sm80, fp16, 256, 64, 32, 4, 2>>();
  // decode tiles: the warps split the kv columns
  check<Traits<Sm80, fp16, 128, 16, 128, 4, 2>>();
  check<Traits<Sm80, fp16, 256, 16, 64, 4, 2>>();
  printf("checked %ld offsets, %ld wrong\n", g_checked, g_wrong);
  return g_wrong == 0 && g_checked > 0 ? 0 : 1;
}
