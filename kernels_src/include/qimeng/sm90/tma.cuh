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

// The kernel's second parameter. Layout (512 bytes, 64-byte aligned maps) is part of the ABI
// (docs/kernels.md "Hopper"; qimeng_serve/runtime/tma_sm90.py packs it). `o` is encoded only for a
// kernel that stores O by TMA (Traits::kStoreOTma; its manifest's tensor_maps name "o"), else zeros.
struct TmaDescs {
  CUtensorMap q;
  CUtensorMap k;
  CUtensorMap v;
  CUtensorMap o;
};
static_assert(sizeof(CUtensorMap) == 128 && sizeof(TmaDescs) == 512, "TmaDescs ABI");

// Fetch the maps the kernel uses into the descriptor cache before the first copy.
template <bool kWithO>
__device__ __forceinline__ void prefetch_tma_descs(const TmaDescs& d) {
  cute::prefetch_tma_descriptor(&d.q);
  cute::prefetch_tma_descriptor(&d.k);
  cute::prefetch_tma_descriptor(&d.v);
  if constexpr (kWithO) cute::prefetch_tma_descriptor(&d.o);
}

// rows [row0, row0 + ROWS) of (batch b, head h) into a [ROWS, D] tile: D / 64 boxes of {64, ROWS},
// each completing on `bar` (which expects ROWS * D * sizeof(T) bytes in all). CHUNK_ROWS: the rows
// between the tile's 64-column chunks, when it is a slice of a taller tile (as tma_store_tile).
template <int ROWS, int HEAD_DIM, int CHUNK_ROWS = ROWS, class T>
__device__ __forceinline__ void tma_load_tile(const CUtensorMap* map, uint64_t* bar, T* smem, int row0, int h, int b) {
  CUTE_UNROLL
  for (int chunk = 0; chunk < HEAD_DIM / kSwizzleCols; ++chunk) {
    cute::SM90_TMA_LOAD_4D::copy(map, bar, static_cast<uint64_t>(cute::TMA::CacheHintSm90::EVICT_NORMAL),
                                 smem + chunk * CHUNK_ROWS * kSwizzleCols, chunk * kSwizzleCols, row0, h, b);
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

// a [ROWS, D] tile in shared memory (its 64-column chunks CHUNK_ROWS rows apart: a slice of a taller
// tile) to rows [row0, row0 + ROWS) of (batch b, head h): D / 64 bulk tensor stores of {64, ROWS}
// boxes, committed as one bulk group of the calling thread. Rows past the tensor's end are not
// written. The shared tile must be written and fenced (tma_store_fence) before the call, and stay
// untouched until the thread's cute::tma_store_wait says the stores have read it.
template <int ROWS, int CHUNK_ROWS, int HEAD_DIM, class T>
__device__ __forceinline__ void tma_store_tile(const CUtensorMap* map, const T* smem, int row0, int h, int b) {
  CUTE_UNROLL
  for (int chunk = 0; chunk < HEAD_DIM / kSwizzleCols; ++chunk) {
    cute::SM90_TMA_STORE_4D::copy(map, smem + chunk * CHUNK_ROWS * kSwizzleCols, chunk * kSwizzleCols, row0, h, b);
  }
  cute::tma_store_arrive();
}

}  // namespace qm::sm90
