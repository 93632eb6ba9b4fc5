// qimeng/reshape.cuh -- the TL "Reshape" statement between the two GEMMs: the fp32 accumulator
// fragment of P (C layout of S = QK^T) becomes the A-operand fragment of O += P V, converted to
// the element type.  No data moves between threads:
//   SM80 m16n8k16: A((c,r,h), m, k) = C((c,r), m, 2k+h)   (two n8 C tiles = one k16 A tile)
//   SM75 m16n8k8 : A((c,r),   m, k) = C((c,r), m, k)      (identical fragments)
// (Both maps were checked against CuTe's partition_A / partition_C coordinates.)
#pragma once
#include "traits.cuh"

namespace qm {

template <class KT, class Acc>
__device__ __forceinline__ auto reshape_acc_to_a(const Acc& acc_s) {
  using namespace cute;
  using T = typename KT::Element;
  typename KT::TiledMma mma;
  auto thr = mma.get_thread_slice(KT::mma_tid());
  auto dummy = make_tensor(make_smem_ptr(static_cast<T*>(nullptr)),
                           make_layout(Shape<Int<KT::kMmaRows>, Int<KT::kMmaCols>>{}));
  auto rP = thr.partition_fragment_A(dummy);
  CUTE_UNROLL
  for (int mi = 0; mi < size<1>(rP); ++mi) {
    CUTE_UNROLL
    for (int ki = 0; ki < size<2>(rP); ++ki) {
      CUTE_UNROLL
      for (int r = 0; r < 2; ++r) {
        if constexpr (KT::Atoms::kMmaK == 16) {
          CUTE_UNROLL
          for (int h = 0; h < 2; ++h)
            CUTE_UNROLL
            for (int c = 0; c < 2; ++c)
              rP(make_coord(make_coord(c, r, h), mi, ki)) = T(acc_s(make_coord(make_coord(c, r), mi, 2 * ki + h)));
        } else {
          CUTE_UNROLL
          for (int c = 0; c < 2; ++c)
            rP(make_coord(make_coord(c, r), mi, ki)) = T(acc_s(make_coord(make_coord(c, r), mi, ki)));
        }
      }
    }
  }
  return rP;
}

}  // namespace qm
