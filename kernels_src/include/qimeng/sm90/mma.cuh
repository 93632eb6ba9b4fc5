// qimeng/sm90/mma.cuh -- warpgroup MMA (GMMA) for the consumer warpgroups: one warpgroup-wide GEMM
// call (S = Q K^T from shared memory, O += P V with P in registers) and the two register re-layouts
// the softmax needs: an accumulator seen as rows x columns, and an accumulator reused as the A
// operand of the next GMMA (TL's Reshape). tests/unit/lower/test_sm90_layouts.py checks both on the
// host against the MMAs' own coordinate maps.
#pragma once
#include "traits.cuh"

namespace qm::sm90 {

// GMMA accumulator ((2, 2, N/8), MMA_M, MMA_N) -> ((2, MMA_M), (2, N/8, MMA_N)): rows x columns of one
// thread. The inner 2 of the rows is row r / r + 8, the inner 2 of the columns two neighbours.
template <class Layout>
__host__ __device__ constexpr auto acc_rowcol(Layout l) {
  using namespace cute;
  static_assert(rank(Layout{}) == 3 && rank(get<0>(Layout{})) == 3, "a GMMA accumulator layout");
  return make_layout(make_layout(get<0, 1>(l), get<1>(l)), make_layout(get<0, 0>(l), get<0, 2>(l), get<2>(l)));
}

// A 16-bit copy of an accumulator as the A operand of an RS GMMA whose K is the accumulator's N:
// ((2, 2, N/8), MMA_M, MMA_N) -> ((2, 2, 2), MMA_M, N/16 * MMA_N). The registers stay where they are.
template <class Layout>
__host__ __device__ constexpr auto acc_as_operand_a(Layout l) {
  using namespace cute;
  auto n = logical_divide(get<0, 2>(l), Tile<_2>{});  // ((2, N/16))
  return make_layout(make_layout(get<0, 0>(l), get<0, 1>(l), get<0, 0>(n)), get<1>(l),
                     coalesce(make_layout(get<0, 1>(n), get<2>(l))));
}

// Issue one warpgroup-wide GEMM (every k-block) as one commit group, without waiting: the
// accumulator (and a register A) must not be touched before a warpgroup_wait that covers the group.
template <bool kZeroInit, bool kARegs, class TiledMma, class TA, class TB, class TC>
__device__ __forceinline__ void gemm_issue(TiledMma& mma, TA const& tA, TB const& tB, TC& tC) {
  using namespace cute;
  if constexpr (kARegs) warpgroup_fence_operand(const_cast<TA&>(tA));
  warpgroup_fence_operand(tC);
  warpgroup_arrive();
  if constexpr (kZeroInit) mma.accumulate_ = GMMA::ScaleOut::Zero;
  CUTE_UNROLL
  for (int kb = 0; kb < size<2>(tA); ++kb) {
    cute::gemm(mma, tA(_, _, kb), tB(_, _, kb), tC);
    mma.accumulate_ = GMMA::ScaleOut::One;
  }
  warpgroup_commit_batch();
}

}  // namespace qm::sm90
