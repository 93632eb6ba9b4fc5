// qimeng/sm90/tma.cuh -- bulk tensor copies (TMA) of [rows, D] tiles into the 128-byte-swizzled tiles
// of traits.cuh. The tensor maps are encoded on the host (qimeng_serve/runtime/tma_sm90.py, through
// the driver's cuTensorMapEncodeTiled) and reach the kernel as its second parameter, a
// __grid_constant__ TmaDescs: the device cannot encode a tensor map itself.
//
// Each map is 4-D over a [batch, heads, positions, D] tensor with any strides: dims (D, positions,
// heads, batch), box {64, rows, 1, 1}, 128-byte swizzle, out-of-bounds elements filled with zeros
// (rows past the sequence end arrive as zeros, which the masks then hide).
#pragma once
#include <cuda.h>
#include <cute/arch/copy_sm90_tma.hpp>
#include "traits.cuh"

namespace qm::sm90 {

// The kernel's second parameter. Layout (384 bytes, 64-byte aligned maps) is part of the ABI
// (docs/kernels.md "Hopper"; qimeng_serve/runtime/tma_sm90.py packs it).
struct TmaDescs {
  CUtensorMap q;
  CUtensorMap k;
  CUtensorMap v;
};
static_assert(sizeof(CUtensorMap) == 128 && sizeof(TmaDescs) == 384, "TmaDescs ABI");

// Fetch the three maps into the descriptor cache before the first copy.
__device__ __forceinline__ void prefetch_tma_descs(const TmaDescs& d) {
  cute::prefetch_tma_descriptor(&d.q);
  cute::prefetch_tma_descriptor(&d.k);
  cute::prefetch_tma_descriptor(&d.v);
}

// rows [row0, row0 + ROWS) of (batch b, head h) into a [ROWS, D] tile: D / 64 boxes of {64, ROWS},
// each completing on `bar` (which expects ROWS * D * sizeof(T) bytes in all).
template <int ROWS, int HEAD_DIM, class T>
__device__ __forceinline__ void tma_load_tile(const CUtensorMap* map, uint64_t* bar, T* smem, int row0, int h, int b) {
  CUTE_UNROLL
  for (int chunk = 0; chunk < HEAD_DIM / kSwizzleCols; ++chunk) {
    cute::SM90_TMA_LOAD_4D::copy(map, bar, static_cast<uint64_t>(cute::TMA::CacheHintSm90::EVICT_NORMAL),
                                 smem + chunk * ROWS * kSwizzleCols, chunk * kSwizzleCols, row0, h, b);
  }
}

// the same rows into L2 only (no shared memory, no barrier): a later tma_load_tile of them hits L2
template <int ROWS, int HEAD_DIM>
__device__ __forceinline__ void tma_prefetch_tile(const CUtensorMap* map, int row0, int h, int b) {
  CUTE_UNROLL
  for (int chunk = 0; chunk < HEAD_DIM / kSwizzleCols; ++chunk) {
    cute::SM90_TMA_LOAD_4D::PREFETCH::copy(map, chunk * kSwizzleCols, row0, h, b);
  }
}

}  // namespace qm::sm90
