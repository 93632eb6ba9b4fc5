// qimeng/gemm.cuh -- the TL "gemm" statements (tensor-core MMA over one tile).
//
//   gemm_rs<KT, OperandK >(acc_s, rQ, sK)   S  = Q K^T, Q already in registers
//   gemm_ss<KT, OperandK >(acc_s, sQ, sK)   S  = Q K^T, Q read from shared memory per k-step
//   gemm_rs<KT, OperandVt>(acc_o, rP, sV)   O += P V,  P in registers (from reshape_acc_to_a)
//
// Operands are read from shared memory with ldmatrix (.trans for V) ahead of the MMAs that use
// them.  In the decode arrangement each warp reads only its 16-row slice of the K/V tile.
//
// SM80 recipe (ldmatrix x4, k = 16), written for register pressure (D = 128 with 128 x 64 tiles on
// 4 warps holds 128 fp32 registers of O and 64 of S per thread):
//   * each operand's ldmatrix addresses come from one register (LdsmOperand);
//   * O += P V may start a new basic block (Traits::kFencePV), so ptxas finishes the softmax
//     before the MMAs instead of interleaving the two.
// (The order of the MMAs and ldmatrix loads in the source changes nothing: ptxas reorders them.
// Streaming B one ldmatrix unit through all k-steps, to hold fewer B registers, compiled to the
// same register counts, or worse.)
// SM75 (ldmatrix x2, k = 8) keeps CuTe's copies: its tiles fit without these changes.
#pragma once
#include "traits.cuh"

namespace qm {

struct OperandK {};    // B operand = K tile (BLOCK_N x HEAD_DIM, row-major) -> N x K
struct OperandVt {};   // B operand = V tile seen as V^T (HEAD_DIM x BLOCK_N)

// The B operand tile of one warp (slice = the warp in the decode arrangement, else 0) as a CuTe
// tensor.  kPlain: the same tile over the un-swizzled layout (offsets before the swizzle).
template <class KT, class Op, bool kPlain = false, class P>
CUTE_HOST_DEVICE auto smem_operand_b(P ptr, int slice) {
  using namespace cute;
  auto layout_of = [](auto l) { if constexpr (kPlain) return get_nonswizzle_portion(l); else return l; };
  if constexpr (is_same_v<Op, OperandK>) {
    Tensor s = make_tensor(make_smem_ptr(ptr), layout_of(typename KT::SmemLayoutKV{}));
    return local_tile(s, Shape<Int<KT::kMmaCols>, Int<KT::kHeadDim>>{}, make_coord(slice, 0));
  } else {
    Tensor s = make_tensor(make_smem_ptr(ptr), layout_of(typename KT::SmemLayoutVt{}));
    return local_tile(s, Shape<Int<KT::kHeadDim>, Int<KT::kMmaCols>>{}, make_coord(0, slice));
  }
}

template <class KT, bool kPlain = false, class P>
CUTE_HOST_DEVICE auto smem_operand_q(P ptr) {
  using namespace cute;
  if constexpr (kPlain) return make_tensor(make_smem_ptr(ptr), get_nonswizzle_portion(typename KT::SmemLayoutQ{}));
  else return make_tensor(make_smem_ptr(ptr), typename KT::SmemLayoutQ{});
}

template <class KT>
__device__ __forceinline__ int operand_slice() { return KT::kDecode ? KT::warp() : 0; }

template <class KT, class Op>
using LdsmB_t = cute::conditional_t<cute::is_same_v<Op, OperandK>,
                                    typename KT::Atoms::LdsmB, typename KT::Atoms::LdsmBt>;

namespace detail {

template <bool kTrans>
__device__ __forceinline__ void ldsm_x4(uint32_t addr, uint32_t& d0, uint32_t& d1, uint32_t& d2, uint32_t& d3) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 750
  if constexpr (kTrans)
    asm volatile("ldmatrix.sync.aligned.x4.trans.m8n8.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(d0), "=r"(d1), "=r"(d2), "=r"(d3) : "r"(addr));
  else
    asm volatile("ldmatrix.sync.aligned.x4.m8n8.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(d0), "=r"(d1), "=r"(d2), "=r"(d3) : "r"(addr));
#endif
}

// Every step (mn, k) of a plain (un-swizzled) partition moves by a constant with bits 0-3 and 6-8
// clear: whole 16-column k slices inside a 64-column panel (bits 4-5), whole 8-row groups and
// panels (bits >= 9).
template <class L>
constexpr bool steps_commute_with_swizzle(L layout) {
  for (int mn = 0; mn < int(cute::size<1>(layout)); ++mn)
    for (int k = 0; k < int(cute::size<2>(layout)); ++k)
      if (((layout(0, mn, k) - layout(0, 0, 0)) & 0x1CF) != 0) return false;
  return true;
}

}  // namespace detail

// This thread's ldmatrix rows of one shared-memory operand tile, addressed from one register.
// The tiles use Swizzle<3,3,3> over 8 x 64-element atoms (traits.cuh): element offset bits 3-5 are
// XORed with bits 6-8.  Step (mn, k) of the partition starts at the un-swizzled offset P + c, P
// this thread's row at step (0, 0) and c a compile-time constant whose bits 0-3 and 6-8 are clear
// (static_assert below).  An ldmatrix row is 8 elements at column 0 or 8 of a 16-column k slice,
// so bits 4-5 of P are clear too, and
//   swizzle(P + c) = (swizzle(P) ^ (c & 0x30)) + (c & ~0x3F):
// one XOR with a constant per k-step and an immediate offset per ldmatrix, from swizzle(P), which
// CuTe computes once.  CuTe's own partition carries the swizzled k-steps as run-time strides, and
// the compiler hoists their four sums per operand out of the KV loop: 12 registers live through
// it at D = 128.  tests/unit/kernels checks these offsets against CuTe's for every thread.
template <bool kTrans, class TS, class TP>
struct LdsmOperand {
  using PlainLayout = cute::remove_cvref_t<decltype(cute::declval<const TP&>().layout())>;  // static strides
  static_assert(detail::steps_commute_with_swizzle(PlainLayout{}), "operand tile steps break the swizzle identity");
  static constexpr int kBytes = int(sizeof(typename TS::value_type));
  uint32_t off;    // byte offset from the tile of this thread's row at step (0, 0), swizzled

  CUTE_HOST_DEVICE LdsmOperand(const void* tile, const TS& ts)
      : off(uint32_t(reinterpret_cast<const char*>(&ts(0, 0, 0)) - reinterpret_cast<const char*>(tile))) {}
  // byte offset from the tile of this thread's row at step (mn, k); mn, k constants after unrolling
  CUTE_HOST_DEVICE static uint32_t offset(uint32_t off_now, int mn, int k) {
    const int c = PlainLayout{}(0, mn, k) - PlainLayout{}(0, 0, 0);
    return (off_now ^ uint32_t((c & 0x30) * kBytes)) + uint32_t((c & ~0x3F) * kBytes);
  }
  template <class Dst>
  __device__ __forceinline__ static void load(uint32_t tile_addr, uint32_t off_now, int mn, int k, Dst&& dst) {
    auto d = cute::recast<uint32_t>(dst);
    static_assert(decltype(cute::size(d))::value == 4, "ldmatrix x4 fills 4 registers");
    detail::ldsm_x4<kTrans>(tile_addr + offset(off_now, mn, k), d(0), d(1), d(2), d(3));
  }
};

template <bool kTrans, class TS, class TP>
CUTE_HOST_DEVICE LdsmOperand<kTrans, TS, TP> make_ldsm_operand(const void* tile, const TS& ts, const TP&) {
  return LdsmOperand<kTrans, TS, TP>(tile, ts);
}

// B operand (K, or V^T with .trans) of the SM80 recipe for thread mma_tid of the TiledMMA
template <class KT, class Op>
CUTE_HOST_DEVICE auto ldsm_operand_b(const typename KT::Element* ptr, int mma_tid, int slice) {
  using namespace cute;
  using T = typename KT::Element;
  typename KT::TiledMma mma;
  auto thrB = make_tiled_copy_B(Copy_Atom<LdsmB_t<KT, Op>, T>{}, mma).get_thread_slice(mma_tid);
  return make_ldsm_operand<is_same_v<Op, OperandVt>>(
      ptr, thrB.partition_S(smem_operand_b<KT, Op>(ptr, slice)),
      thrB.partition_S(smem_operand_b<KT, Op, true>(static_cast<const T*>(nullptr), slice)));
}

// A operand (the Q tile) of the SM80 recipe
template <class KT>
CUTE_HOST_DEVICE auto ldsm_operand_q(const typename KT::Element* ptr, int mma_tid) {
  using namespace cute;
  using T = typename KT::Element;
  typename KT::TiledMma mma;
  auto thrA = make_tiled_copy_A(Copy_Atom<typename KT::Atoms::LdsmA, T>{}, mma).get_thread_slice(mma_tid);
  return make_ldsm_operand<false>(ptr, thrA.partition_S(smem_operand_q<KT>(ptr)),
                                  thrA.partition_S(smem_operand_q<KT, true>(static_cast<const T*>(nullptr))));
}

// fill the registers of k-step k of a fragment view (all its mn steps)
template <class Op, class View>
__device__ __forceinline__ void ldsm_kstep(uint32_t tile_addr, uint32_t off, View& view, int k) {
  CUTE_UNROLL
  for (int mn = 0; mn < cute::size<1>(view); ++mn) Op::load(tile_addr, off, mn, k, view(cute::_, mn, k));
}

// A from registers, B from shared memory
template <class KT, class Op, class Acc, class FragA>
__device__ __forceinline__ void gemm_rs(Acc& acc, const FragA& rA, const typename KT::Element* sB_ptr) {
  using namespace cute;
  using T = typename KT::Element;
  typename KT::TiledMma mma;
  auto thr = mma.get_thread_slice(KT::mma_tid());
  Tensor sB = smem_operand_b<KT, Op>(sB_ptr, operand_slice<KT>());
  Tensor rB = thr.partition_fragment_B(sB);
  auto cpB = make_tiled_copy_B(Copy_Atom<LdsmB_t<KT, Op>, T>{}, mma);
  auto thrB = cpB.get_thread_slice(KT::mma_tid());
  Tensor trB = thrB.retile_D(rB);
  static_assert(decltype(size<2>(rA) == size<2>(rB))::value, "K extent mismatch");
  static_assert(decltype(size<2>(trB) == size<2>(rB))::value, "copy/MMA k-step mismatch");
  if constexpr (KT::Atoms::kMmaK == 16) {
    const auto opB = ldsm_operand_b<KT, Op>(sB_ptr, KT::mma_tid(), operand_slice<KT>());
    using OpB = decltype(opB);
    // opaque: the addresses derived from it are computed here, per call, not held through the loop
    const uint32_t offB = opaque(opB.off), tileB = cast_smem_ptr_to_uint(sB_ptr);
    if constexpr (KT::kFencePV && is_same_v<Op, OperandVt>) {
      // Never taken (offB is an offset inside the tile), but it ends the basic block, and ptxas
      // schedules within blocks: the softmax and Reshape above complete before these MMAs start.
      // Interleaved, the fp32 scores not yet exponentiated, the packed P and V's fragments are
      // live together (128 x 64 tiles at D = 128 spilled 56 B inside the KV loop).
      if (offB == 0xffffffffu) __trap();
    }
    ldsm_kstep<OpB>(tileB, offB, trB, 0);
    CUTE_UNROLL
    for (int k = 0; k < size<2>(rA); ++k) {
      if (k + 1 < size<2>(rA)) ldsm_kstep<OpB>(tileB, offB, trB, k + 1);
      cute::gemm(mma, rA(_, _, k), rB(_, _, k), acc);
    }
  } else {
    Tensor tsB = thrB.partition_S(sB);
    copy(cpB, tsB(_, _, 0), trB(_, _, 0));
    CUTE_UNROLL
    for (int k = 0; k < size<2>(rA); ++k) {
      if (k + 1 < size<2>(rA)) copy(cpB, tsB(_, _, k + 1), trB(_, _, k + 1));
      cute::gemm(mma, rA(_, _, k), rB(_, _, k), acc);
    }
  }
}

// A (the Q tile) and B from shared memory
template <class KT, class Op, class Acc>
__device__ __forceinline__ void gemm_ss(Acc& acc, const typename KT::Element* sA_ptr, const typename KT::Element* sB_ptr) {
  using namespace cute;
  using T = typename KT::Element;
  typename KT::TiledMma mma;
  auto thr = mma.get_thread_slice(KT::mma_tid());
  Tensor sA = smem_operand_q<KT>(sA_ptr);
  Tensor sB = smem_operand_b<KT, Op>(sB_ptr, operand_slice<KT>());
  Tensor rA = thr.partition_fragment_A(sA);
  Tensor rB = thr.partition_fragment_B(sB);
  auto cpA = make_tiled_copy_A(Copy_Atom<typename KT::Atoms::LdsmA, T>{}, mma);
  auto thrA = cpA.get_thread_slice(KT::mma_tid());
  auto cpB = make_tiled_copy_B(Copy_Atom<LdsmB_t<KT, Op>, T>{}, mma);
  auto thrB = cpB.get_thread_slice(KT::mma_tid());
  Tensor trA = thrA.retile_D(rA);
  Tensor trB = thrB.retile_D(rB);
  static_assert(decltype(size<2>(rA) == size<2>(rB))::value, "K extent mismatch");
  static_assert(decltype(size<2>(trA) == size<2>(rA))::value, "copy/MMA k-step mismatch");
  if constexpr (KT::Atoms::kMmaK == 16) {
    const auto opA = ldsm_operand_q<KT>(sA_ptr, KT::mma_tid());
    const auto opB = ldsm_operand_b<KT, Op>(sB_ptr, KT::mma_tid(), operand_slice<KT>());
    using OpA = decltype(opA);
    using OpB = decltype(opB);
    const uint32_t offA = opaque(opA.off), offB = opaque(opB.off);
    const uint32_t tileA = cast_smem_ptr_to_uint(sA_ptr), tileB = cast_smem_ptr_to_uint(sB_ptr);
    ldsm_kstep<OpA>(tileA, offA, trA, 0);
    ldsm_kstep<OpB>(tileB, offB, trB, 0);
    CUTE_UNROLL
    for (int k = 0; k < size<2>(rA); ++k) {
      if (k + 1 < size<2>(rA)) {
        ldsm_kstep<OpA>(tileA, offA, trA, k + 1);
        ldsm_kstep<OpB>(tileB, offB, trB, k + 1);
      }
      cute::gemm(mma, rA(_, _, k), rB(_, _, k), acc);
    }
  } else {
    Tensor tsA = thrA.partition_S(sA);
    Tensor tsB = thrB.partition_S(sB);
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
}

}  // namespace qm
