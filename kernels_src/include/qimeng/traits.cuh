// qimeng/traits.cuh -- compile-time kernel traits: Traits<Arch, T, HEAD_DIM, BLOCK_M, BLOCK_N,
// WARPS, STAGES>.  Everything a building block needs to know about tiles, MMA partitioning and the
// shared-memory layouts comes from here.
//
// Two warp arrangements, selected by the tile shape:
//   * prefill  (BLOCK_M == 16*WARPS*k): the WARPS warps split the M (query-row) dimension; every
//     warp reads the whole K/V tile.  (FlashAttention-2 arrangement.)
//   * decode   (BLOCK_M == 16, BLOCK_N a multiple of 16*WARPS): the 16 packed query rows are
//     shared by all warps, and warp w owns kv columns [w*C, w*C + C) of each K/V tile,
//     C = BLOCK_N / WARPS: it runs its own online softmax over those columns; the warps' states
//     are merged once at the end (epilogue.cuh).
// STAGES = number of K/V tile buffers in shared memory:
//   2: the FA2 ping-pong (one K and one V buffer; the load of V[n] overlaps S=QK^T, the load of
//      K[n-1] overlaps softmax + O+=PV).  Every recipe.
//   4: two (K, V) buffer pairs; the pair n-1 is loaded while the whole iteration n computes
//      (one barrier per iteration).  cp.async recipes only (SM80); used by the decode kernels,
//      whose iterations are too short to hide a load behind half of one.
#pragma once
#include "arch_atoms.cuh"

#ifndef QM_FENCE_PV_ABOVE
#define QM_FENCE_PV_ABOVE 160   // see Traits::kFencePV
#endif

namespace qm {

// A copy of x that the compiler must treat as unknown.  Arithmetic derived from it is done where
// it is needed (inside the KV loop, once per use) instead of being hoisted in front of the loop,
// where every derived loop-invariant value would hold a register for the whole loop.
template <class I>
__device__ __forceinline__ I opaque(I x) {
  static_assert(sizeof(I) == 4, "32-bit values");
  asm volatile("" : "+r"(x));
  return x;
}

template <class Arch_, class T_, int HEAD_DIM, int BLOCK_M, int BLOCK_N, int WARPS, int STAGES>
struct Traits {
  using Arch = Arch_;
  using Element = T_;
  using Atoms = ArchAtoms<Arch_, T_>;

  static constexpr int kHeadDim = HEAD_DIM;
  static constexpr int kBlockM = BLOCK_M;
  static constexpr int kBlockN = BLOCK_N;
  static constexpr int kWarps = WARPS;
  static constexpr int kThreads = 32 * WARPS;
  static constexpr int kStages = STAGES;
  static constexpr int kArch = Arch_::kArch;
  static constexpr bool kCpAsync = Atoms::kCpAsync;

  static_assert(STAGES == 2 || (STAGES == 4 && Atoms::kCpAsync),
                "STAGES: 2 (K/V ping-pong, any recipe) or 4 (double-buffered K/V pairs, cp.async only)");
  static_assert(HEAD_DIM % 64 == 0, "HEAD_DIM must be a multiple of 64 (64/128/256)");

  static constexpr bool kDecode = (BLOCK_M == 16 && WARPS > 1);
  static_assert(kDecode ? (BLOCK_N % (16 * WARPS) == 0) : (BLOCK_M % (16 * WARPS) == 0 && BLOCK_N % 16 == 0),
                "prefill: BLOCK_M multiple of 16*WARPS; decode: BLOCK_M=16, BLOCK_N multiple of 16*WARPS");

  static constexpr int kMmaWarpsM = kDecode ? 1 : WARPS;     // warps in one TiledMMA
  static constexpr int kMmaRows = kDecode ? 16 : BLOCK_M;    // rows of S/O that one TiledMMA covers
  static constexpr int kMmaCols = kDecode ? BLOCK_N / WARPS : BLOCK_N;  // kv columns of S per TiledMMA
  static constexpr int kRowsPerWarp = kDecode ? 16 : BLOCK_M / WARPS;
  // Q lives in registers when it costs <= 32 registers per thread, else it is re-read from smem.
  static constexpr bool kQInRegs = kRowsPerWarp * HEAD_DIM <= 2048;
  // fp32 registers per thread of the O and S accumulators (192 at D = 128 with 128 x 64 on 4 warps)
  static constexpr int kAccRegs = kRowsPerWarp * (HEAD_DIM + kMmaCols) / 32;
  // Above QM_FENCE_PV_ABOVE (160) the SM80 O += P V starts a new basic block, so that ptxas does not
  // interleave it with the softmax (gemm.cuh); at 160 and below the interleaving fits in the
  // registers.  A source may define the macro before including qimeng.cuh, to time both schedules.
  static constexpr bool kFencePV = kAccRegs > QM_FENCE_PV_ABOVE;

  using TiledMma = cute::TiledMMA<cute::MMA_Atom<typename Atoms::MmaOp>,
                                  cute::Layout<cute::Shape<cute::Int<kMmaWarpsM>, cute::_1, cute::_1>>,
                                  cute::Tile<cute::Int<16 * kMmaWarpsM>, cute::_16, cute::Int<Atoms::kMmaK>>>;

  // Shared memory: rows of HEAD_DIM elements, 8x64 atoms with a 3-bit XOR swizzle on 16-byte
  // chunks (conflict-free ldmatrix and 16-byte cp.async).
  using SmemAtom = decltype(cute::composition(
      cute::Swizzle<3, 3, 3>{},
      cute::Layout<cute::Shape<cute::_8, cute::_64>, cute::Stride<cute::_64, cute::_1>>{}));
  using SmemLayoutQ = decltype(cute::tile_to_shape(
      SmemAtom{}, cute::Shape<cute::Int<BLOCK_M>, cute::Int<HEAD_DIM>>{}));
  using SmemLayoutKV = decltype(cute::tile_to_shape(
      SmemAtom{}, cute::Shape<cute::Int<BLOCK_N>, cute::Int<HEAD_DIM>>{}));
  // V^T view (HEAD_DIM x BLOCK_N) of the V tile, for the B operand of O += P V.
  using SmemLayoutVt = decltype(cute::composition(
      SmemLayoutKV{},
      cute::make_layout(cute::Shape<cute::Int<HEAD_DIM>, cute::Int<BLOCK_N>>{}, cute::GenRowMajor{})));

  static constexpr int kSmemQ = BLOCK_M * HEAD_DIM * int(sizeof(T_));
  static constexpr int kSmemK = BLOCK_N * HEAD_DIM * int(sizeof(T_));
  static constexpr int kSmemV = kSmemK;
  // decode epilogue: per-warp fp32 O (rows padded by 8 floats) staged over the K/V region
  static constexpr int kMergeStride = HEAD_DIM + 8;
  static constexpr int kSmemMerge = kDecode ? WARPS * 16 * kMergeStride * 4 : 0;
  static constexpr int kKVPairs = STAGES / 2;               // (K, V) buffer pairs
  static constexpr int kSmemKV = kKVPairs * (kSmemK + kSmemV);
  static constexpr int kSmemKVRegion = kSmemKV > kSmemMerge ? kSmemKV : kSmemMerge;
  static constexpr int kSmemBytes = kSmemQ + kSmemKVRegion;
  static_assert(!kDecode || kSmemQ >= WARPS * 16 * 2 * 4, "decode merge keeps (max,sum) in the Q region");

  // global<->shared 16-byte chunk mapping: a tile row of HEAD_DIM elements = kChunksPerRow chunks
  static constexpr int kChunk = 16 / int(sizeof(T_));        // elements per 16-byte chunk
  static constexpr int kChunksPerRow = HEAD_DIM / kChunk;
  static_assert(kThreads % kChunksPerRow == 0, "threads must cover whole rows");
  static constexpr int kRowsPerPass = kThreads / kChunksPerRow;
  static_assert(BLOCK_M % kRowsPerPass == 0 && BLOCK_N % kRowsPerPass == 0, "tile rows vs threads");
  static constexpr int kPassesQ = BLOCK_M / kRowsPerPass;
  static constexpr int kPassesKV = BLOCK_N / kRowsPerPass;
  // SM75: K/V tiles are prefetched into registers when that costs <= 8 x 16 B per thread,
  // otherwise they are copied synchronously (load batch -> store batch).
  static constexpr bool kRegStage = !kCpAsync && kPassesKV <= 8;

  // +8 rows in any of the smem tiles is +8*64 elements (swizzle period 8 rows, 64-col panels):
  // the chunk offset of row r0 + i*kRowsPerPass needs only min(8/kRowsPerPass, passes) bases.
  static constexpr int kSmemRow8 = 8 * 64;

  __device__ static __forceinline__ int tid() { return int(threadIdx.x); }
  __device__ static __forceinline__ int warp() { return int(threadIdx.x) / 32; }
  // thread index inside the TiledMMA, and the first kv column of this thread's S fragment
  __device__ static __forceinline__ int mma_tid() { return kDecode ? int(threadIdx.x) % 32 : int(threadIdx.x); }
  __device__ static __forceinline__ int warp_col0() { return kDecode ? kMmaCols * (int(threadIdx.x) / 32) : 0; }
};

// Shared-memory element offsets of this thread's 16-byte chunks (row r0 + i*kRowsPerPass, col).
// Row r + 8 of a tile sits exactly kSmemRow8 elements after row r (same swizzle phase, next 8x64
// atom of the column panel), so only the rows r0 + j*RPP with j*RPP < 8 need the swizzled layout;
// every other pass is one of those bases plus a constant that folds into the instruction.  (Each
// pass's offset computed on its own cost one register per pass, live across the KV loop.)
template <class KT, class SmemLayout, int PASSES>
struct ChunkOffsets {
  static constexpr int RPP = KT::kRowsPerPass;
  static constexpr int P0 = RPP >= 8 ? 1 : 8 / RPP;
  static constexpr int NB = P0 < PASSES ? P0 : PASSES;
  static_assert(RPP >= 8 ? RPP % 8 == 0 : 8 % RPP == 0, "");
  static_assert(SmemLayout{}(8, 0) == KT::kSmemRow8 && SmemLayout{}(9, 24) == SmemLayout{}(1, 24) + KT::kSmemRow8,
                "smem tiles: row r + 8 must be row r plus kSmemRow8 elements");
  int base[NB];
  CUTE_HOST_DEVICE ChunkOffsets(int r0, int col) {
    CUTE_UNROLL
    for (int j = 0; j < NB; ++j) base[j] = SmemLayout{}(r0 + j * RPP, col);
  }
  // i is a compile-time constant in the callers' unrolled loops
  CUTE_HOST_DEVICE int operator()(int i) const {
    return base[i % NB] + ((i / NB) * NB * RPP / 8) * KT::kSmemRow8;
  }
};

}  // namespace qm
