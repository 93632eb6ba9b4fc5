// Extra tile variants, for timing only (sm_90a build): the kernel bodies of
// kernels_src/cuda/attn_prefill.cu and attn_decode_paged.cu instantiated with other Traits.
#undef QM_RECIPE
#define QM_RECIPE 0
#include "../../kernels_src/cuda/attn_prefill.cu"
#include "../../kernels_src/cuda/attn_decode_paged.cu"
#include <vector>
#include "variants.h"

#define QM_VARIANT(NAME, BODY, D, BM, BN, W, S)                                                 \
  using NAME##_t = qm::Traits<qm::Sm80, qm::fp16, D, BM, BN, W, S>;                             \
  extern "C" __global__ void __launch_bounds__(NAME##_t::kThreads) NAME(const qm::AttnParams p) { \
    BODY<NAME##_t>(p);                                                                          \
  }

QM_VARIANT(qm_var_prefill_fp16_d128_128x64w4s2, attn_prefill_dense, 128, 128, 64, 4, 2)   // FA2's A100 tile
QM_VARIANT(qm_var_prefill_fp16_d128_128x32w4s4, attn_prefill_dense, 128, 128, 32, 4, 4)
QM_VARIANT(qm_var_prefill_fp16_d256_64x32w4s2, attn_prefill_dense, 256, 64, 32, 4, 2)     // run-1/2 default
QM_VARIANT(qm_var_prefill_fp16_d256_64x64w4s2, attn_prefill_dense, 256, 64, 64, 4, 2)
QM_VARIANT(qm_var_decode_fp16_d128_16x64w4s2, attn_decode_paged, 128, 16, 64, 4, 2)       // ping-pong decode

#define QM_V(NAME, KIND) TimeVariant{#NAME, KIND, (const void*)NAME, NAME##_t::kHeadDim, NAME##_t::kBlockM, \
                                     NAME##_t::kBlockN, NAME##_t::kThreads, NAME##_t::kSmemBytes}
std::vector<TimeVariant> qm_time_variants() {
  return {QM_V(qm_var_prefill_fp16_d128_128x64w4s2, 0), QM_V(qm_var_prefill_fp16_d128_128x32w4s4, 0),
          QM_V(qm_var_prefill_fp16_d256_64x32w4s2, 0),  QM_V(qm_var_prefill_fp16_d256_64x64w4s2, 0),
          QM_V(qm_var_decode_fp16_d128_16x64w4s2, 1)};
}
