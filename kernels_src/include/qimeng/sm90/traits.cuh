// qimeng/sm90/traits.cuh -- compile-time traits of the Hopper (sm_90a) warp-specialised attention
// kernels: Traits<T, HEAD_DIM, BLOCK_M, BLOCK_N, STAGES, CONSUMER_WGS, PRODUCER_REGS, CONSUMER_REGS,
// STORE_O_TMA>.
//
// One producer warpgroup (warpgroup 0) issues TMA copies; CONSUMER_WGS warpgroups of 64 query rows
// each run the GMMAs and the softmax. Shared tiles are 128-byte swizzled, K-major, in 64-column
// chunks: exactly the bytes a TMA box {64, rows} with CU_TENSOR_MAP_SWIZZLE_128B writes, and the
// canonical layout a GMMA descriptor reads. V is read through a transposed (MN-major) view.
#pragma once
// GMMA atoms of every N (8..256 in steps of 8), not only the powers of two and 96 / 192: without it
// CuTe's selector splits a BLOCK_N of 80 or 176 into 64 x 16 atoms (five or eleven times the GMMA
// instructions for the same work). It must come before the first CuTe header, so the umbrella
// fa3.cuh includes this file first; the static_asserts below catch a build that missed it.
#ifndef CUTE_SM90_EXTENDED_MMA_SHAPES_ENABLED
#define CUTE_SM90_EXTENDED_MMA_SHAPES_ENABLED
#endif
#include <cstdint>
#include <cute/tensor.hpp>
#include <cute/atom/mma_traits_sm90_gmma.hpp>
#include <cute/arch/mma_sm90.hpp>
#include <cutlass/numeric_types.h>

namespace qm::sm90 {

using fp16 = cute::half_t;
using bf16 = cute::bfloat16_t;

constexpr int kWarpgroupThreads = 128;
constexpr int kSwizzleCols = 64;  // 16-bit values in one 128-byte swizzled row chunk (one TMA box)

template <class T_, int HEAD_DIM, int BLOCK_M, int BLOCK_N, int STAGES, int CONSUMER_WGS, int PRODUCER_REGS,
          int CONSUMER_REGS, int STORE_O_TMA = 0, int LAZY_RESCALE = 0>
struct Traits {
  using T = T_;
  static constexpr int kHeadDim = HEAD_DIM;
  static constexpr int kBlockM = BLOCK_M;
  static constexpr int kBlockN = BLOCK_N;
  static constexpr int kStages = STAGES;
  static constexpr int kConsumerWGs = CONSUMER_WGS;
  static constexpr int kConsumerThreads = kWarpgroupThreads * CONSUMER_WGS;
  static constexpr int kThreads = kWarpgroupThreads * (CONSUMER_WGS + 1);
  static constexpr int kProducerRegs = PRODUCER_REGS;
  static constexpr int kConsumerRegs = CONSUMER_REGS;
  // TL `Copy O[...] <- acc with via=tma`: O leaves through a shared [BLOCK_M, D] tile (the layout of
  // sQ) and bulk tensor stores, instead of register stores
  static constexpr bool kStoreOTma = STORE_O_TMA != 0;
  // TL `rescale=lazy` on the consumer: a warp moves its rows' running max only when one of them would grow
  // by more than kRescaleSlack (log2 units), and skips O's rescale otherwise (consumer.cuh online_softmax).
  // P then stays below 2^8, in range for f16 and bf16.
  static constexpr bool kLazyRescale = LAZY_RESCALE != 0;
  static constexpr float kRescaleSlack = 8.f;

  static_assert(sizeof(T) == 2, "the sm90 blocks take 16-bit inputs (f16, bf16)");
  static_assert(BLOCK_M == 64 * CONSUMER_WGS, "a GMMA computes 64 rows per consumer warpgroup");
  static_assert(HEAD_DIM % kSwizzleCols == 0 && HEAD_DIM <= 256, "HEAD_DIM: 64, 128, 192 or 256");
  static_assert(BLOCK_N % 16 == 0 && BLOCK_N <= 256, "BLOCK_N: a multiple of 16 up to 256 (GMMA N and K)");
  static_assert(BLOCK_M <= 256 && BLOCK_N <= 256, "a TMA box spans at most 256 rows");
  static_assert(PRODUCER_REGS % 8 == 0 && CONSUMER_REGS % 8 == 0 && PRODUCER_REGS >= 24 && CONSUMER_REGS <= 256,
                "setmaxnreg takes multiples of 8 in 24..256");
  // setmaxnreg only moves registers between the warpgroups of what the CTA was launched with: per thread
  // the register file over the threads, rounded down to a multiple of 8 (168 x 384, 128 x 512). More,
  // and the consumers' setmaxnreg.inc waits forever (48 + 2 x 232 at 384 threads hung: perf-notes,
  // "fourteenth run")
  static constexpr int kLaunchRegs = 65536 / kThreads / 8 * 8;
  static_assert(PRODUCER_REGS * kWarpgroupThreads + CONSUMER_REGS * kConsumerThreads <= kLaunchRegs * kThreads,
                "the roles' registers exceed what the CTA is launched with");

  using BM = cute::Int<BLOCK_M>;
  using BN = cute::Int<BLOCK_N>;
  using HD = cute::Int<HEAD_DIM>;
  using NS = cute::Int<STAGES>;

  // [rows, D] tiles, K-major, 128-byte swizzle; the stage is the outermost mode of K and V
  using SmemLayoutQ = decltype(cute::tile_to_shape(cute::GMMA::Layout_K_SW128_Atom<T>{}, cute::Shape<BM, HD>{}));
  using SmemLayoutK = decltype(cute::tile_to_shape(cute::GMMA::Layout_K_SW128_Atom<T>{}, cute::Shape<BN, HD, NS>{}));
  // V^T as the B operand of O += P V: (D, BLOCK_N, stage) over the bytes of V's [BLOCK_N, D] tiles
  using SmemLayoutVt = decltype(cute::composition(
      SmemLayoutK{}, cute::make_ordered_layout(cute::Shape<HD, BN, NS>{}, cute::Step<cute::_2, cute::_1, cute::_3>{})));

  // the consumer warpgroups split the rows: warpgroup w owns rows [64 w, 64 w + 64)
  using AtomLayout = cute::Layout<cute::Shape<cute::Int<CONSUMER_WGS>, cute::_1, cute::_1>>;
  using TiledMmaQK = decltype(cute::make_tiled_mma(
      cute::GMMA::ss_op_selector<T, T, float, cute::Shape<BM, BN, HD>>(), AtomLayout{}));
  using TiledMmaPV = decltype(cute::make_tiled_mma(
      cute::GMMA::rs_op_selector<T, T, float, cute::Shape<BM, HD, BN>, cute::GMMA::Major::K, cute::GMMA::Major::MN>(),
      AtomLayout{}));

  // one GMMA spans the whole tile width: S = Q K^T is BLOCK_N wide, O += P V is HEAD_DIM wide
  static_assert(cute::size<1>(typename TiledMmaQK::Shape_MNK{}) == BLOCK_N, "S = Q K^T split into narrower GMMAs");
  static_assert(cute::size<1>(typename TiledMmaPV::Shape_MNK{}) == HEAD_DIM, "O += P V split into narrower GMMAs");

  static constexpr uint32_t kQBytes = BLOCK_M * HEAD_DIM * sizeof(T);
  static constexpr uint32_t kKVBytes = BLOCK_N * HEAD_DIM * sizeof(T);
};

// O's shared tile, for kernels that store O by TMA (none otherwise: an empty member)
template <class T, int ELEMS>
struct OTile {
  alignas(1024) T o[ELEMS];
};
template <class T>
struct OTile<T, 0> {};

// Shared memory of one CTA: the tiles (each on a 1024-byte boundary, as the 128-byte swizzle needs)
// and the stage barriers (mbarriers: full = the TMA landed, empty = every consumer thread let go).
template <class KT>
struct SharedStorage {
  using T = typename KT::T;
  alignas(1024) T q[KT::kBlockM * KT::kHeadDim];
  alignas(1024) T k[KT::kStages][KT::kBlockN * KT::kHeadDim];
  alignas(1024) T v[KT::kStages][KT::kBlockN * KT::kHeadDim];
  OTile<T, KT::kStoreOTma ? KT::kBlockM * KT::kHeadDim : 0> out;
  alignas(8) uint64_t q_full;
  uint64_t q_empty;
  uint64_t k_full[KT::kStages];
  uint64_t k_empty[KT::kStages];
  uint64_t v_full[KT::kStages];
  uint64_t v_empty[KT::kStages];
  // tiles=persistent: the tile words the producer hands the consumers (two slots, full/empty each)
  uint64_t tile_full[2];
  uint64_t tile_empty[2];
  int tile[2];
};

// dynamic shared memory is only 16-byte aligned: ask for 1024 bytes more and align by hand
template <class KT>
constexpr int smem_bytes() {
  return static_cast<int>(sizeof(SharedStorage<KT>)) + 1024;
}

template <class KT>
__device__ __forceinline__ SharedStorage<KT>& shared_storage(char* raw) {
  const uintptr_t base = (reinterpret_cast<uintptr_t>(raw) + 1023) & ~uintptr_t(1023);
  return *reinterpret_cast<SharedStorage<KT>*>(base);
}

}  // namespace qm::sm90
