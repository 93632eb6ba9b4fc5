// qimeng/gemm.cuh -- the TL "gemm" statements (tensor-core MMA over one tile).
//
//   gemm_rs<KT, OperandK >(acc_s, rQ, sK)   S  = Q K^T, Q already in registers
//   gemm_ss<KT, OperandK >(acc_s, sQ, sK)   S  = Q K^T, Q read from shared memory per k-step
//   gemm_rs<KT, OperandVt>(acc_o, rP, sV)   O += P V,  P in registers (from reshape_acc_to_a)
//
// B is read from shared memory with ldmatrix (.trans for V), one k-step ahead of the MMA.
// In the decode arrangement each warp reads only its 16-row slice of the K/V tile.
#pragma once
#include "traits.cuh"

namespace qm {

struct OperandK {};    // B operand = K tile (BLOCK_N x HEAD_DIM, row-major) -> N x K
struct OperandVt {};   // B operand = V tile seen as V^T (HEAD_DIM x BLOCK_N)

template <class KT, class Op>
__device__ __forceinline__ auto smem_operand_b(const typename KT::Element* ptr) {
  using namespace cute;
  const int slice = KT::kDecode ? KT::warp() : 0;
  if constexpr (is_same_v<Op, OperandK>) {
    Tensor s = make_tensor(make_smem_ptr(ptr), typename KT::SmemLayoutKV{});
    return local_tile(s, Shape<Int<KT::kMmaCols>, Int<KT::kHeadDim>>{}, make_coord(slice, 0));
  } else {
    Tensor s = make_tensor(make_smem_ptr(ptr), typename KT::SmemLayoutVt{});
    return local_tile(s, Shape<Int<KT::kHeadDim>, Int<KT::kMmaCols>>{}, make_coord(0, slice));
  }
}

template <class KT, class Op>
using LdsmB_t = cute::conditional_t<cute::is_same_v<Op, OperandK>,
                                    typename KT::Atoms::LdsmB, typename KT::Atoms::LdsmBt>;

// A from registers, B from shared memory
template <class KT, class Op, class Acc, class FragA>
__device__ __forceinline__ void gemm_rs(Acc& acc, const FragA& rA, const typename KT::Element* sB_ptr) {
  using namespace cute;
  using T = typename KT::Element;
  typename KT::TiledMma mma;
  auto thr = mma.get_thread_slice(KT::mma_tid());
  Tensor sB = smem_operand_b<KT, Op>(sB_ptr);
  Tensor rB = thr.partition_fragment_B(sB);
  auto cpB = make_tiled_copy_B(Copy_Atom<LdsmB_t<KT, Op>, T>{}, mma);
  auto thrB = cpB.get_thread_slice(KT::mma_tid());
  Tensor tsB = thrB.partition_S(sB);
  Tensor trB = thrB.retile_D(rB);
  static_assert(decltype(size<2>(rA) == size<2>(rB))::value, "K extent mismatch");
  static_assert(decltype(size<2>(trB) == size<2>(rB))::value, "copy/MMA k-step mismatch");
  copy(cpB, tsB(_, _, 0), trB(_, _, 0));
  CUTE_UNROLL
  for (int k = 0; k < size<2>(rA); ++k) {
    if (k + 1 < size<2>(rA)) copy(cpB, tsB(_, _, k + 1), trB(_, _, k + 1));
    cute::gemm(mma, rA(_, _, k), rB(_, _, k), acc);
  }
}

// A (the Q tile) and B from shared memory
template <class KT, class Op, class Acc>
__device__ __forceinline__ void gemm_ss(Acc& acc, const typename KT::Element* sA_ptr, const typename KT::Element* sB_ptr) {
  using namespace cute;
  using T = typename KT::Element;
  typename KT::TiledMma mma;
  auto thr = mma.get_thread_slice(KT::mma_tid());
  Tensor sA = make_tensor(make_smem_ptr(sA_ptr), typename KT::SmemLayoutQ{});
  Tensor sB = smem_operand_b<KT, Op>(sB_ptr);
  Tensor rA = thr.partition_fragment_A(sA);
  Tensor rB = thr.partition_fragment_B(sB);
  auto cpA = make_tiled_copy_A(Copy_Atom<typename KT::Atoms::LdsmA, T>{}, mma);
  auto thrA = cpA.get_thread_slice(KT::mma_tid());
  auto cpB = make_tiled_copy_B(Copy_Atom<LdsmB_t<KT, Op>, T>{}, mma);
  auto thrB = cpB.get_thread_slice(KT::mma_tid());
  Tensor tsA = thrA.partition_S(sA);
  Tensor trA = thrA.retile_D(rA);
  Tensor tsB = thrB.partition_S(sB);
  Tensor trB = thrB.retile_D(rB);
  static_assert(decltype(size<2>(rA) == size<2>(rB))::value, "K extent mismatch");
  static_assert(decltype(size<2>(trA) == size<2>(rA))::value, "copy/MMA k-step mismatch");
  copy(cpA, tsA(_, _, 0), trA(_, _, 0));
  copy(cpB, tsB(_, _, 0), trB(_, _, 0));
  CUTE_UNROLL
  for (int k = 0; k < size<2>(rA); ++k) {
    if (k + 1 < size<2>(rA)) {
      copy(cpA, tsA(_, _, k + 1), trA(_, _, k + 1));
      copy(cpB, tsB(_, _, k + 1), trB(_, _, k + 1));
    }
    cute::gemm(mma, rA(_, _, k), rB(_, _, k), acc);
  }
}

}  // namespace qm
