// qimeng/arch_atoms.cuh -- per-architecture MMA / copy atoms and the few raw instructions we need.
//
//   Sm75 (Turing):  mma.sync m16n8k8 (fp16 only), ldmatrix x2 (.trans x2 for V),
//                   global->shared staged through registers (no cp.async).
//   Sm80 (Ampere+, also used as the recipe for sm_86/89/90): mma.sync m16n8k16 (fp16/bf16),
//                   ldmatrix x4 (.trans x4 for V), cp.async.cg 16 B with zero-fill predication.
#pragma once
#include <cute/tensor.hpp>
#include <cute/atom/mma_atom.hpp>
#include <cute/atom/copy_atom.hpp>
#include <cute/arch/copy_sm75.hpp>
#include <cute/arch/copy_sm80.hpp>
#include <cute/arch/mma_sm75.hpp>
#include <cute/arch/mma_sm80.hpp>
#include <cutlass/numeric_types.h>

namespace qm {

struct Sm75 { static constexpr int kArch = 75; };
struct Sm80 { static constexpr int kArch = 80; };

using fp16 = cute::half_t;
using bf16 = cute::bfloat16_t;

template <class Arch, class T> struct ArchAtoms;

template <> struct ArchAtoms<Sm75, fp16> {
  using MmaOp = cute::SM75_16x8x8_F32F16F16F32_TN;   // D(f32) = A(f16,row) * B(f16,col) + C
  static constexpr int kMmaK = 8;
  using LdsmA  = cute::SM75_U32x2_LDSM_N;            // A 16x8 per warp step
  using LdsmB  = cute::SM75_U32x2_LDSM_N;            // B (K tile) 16(n) x 8(k)
  using LdsmBt = cute::SM75_U16x4_LDSM_T;            // B from V^T: transposed 16(n) x 8(k)
  static constexpr bool kCpAsync = false;
};

template <class T> struct ArchAtomsSm80 {
  static_assert(cute::is_same_v<T, fp16> || cute::is_same_v<T, bf16>, "fp16/bf16 only");
  using MmaOp = cute::conditional_t<cute::is_same_v<T, fp16>,
                                    cute::SM80_16x8x16_F32F16F16F32_TN,
                                    cute::SM80_16x8x16_F32BF16BF16F32_TN>;
  static constexpr int kMmaK = 16;
  using LdsmA  = cute::SM75_U32x4_LDSM_N;            // A 16x16 per warp step
  using LdsmB  = cute::SM75_U32x4_LDSM_N;            // B 16(n) x 16(k)
  using LdsmBt = cute::SM75_U16x8_LDSM_T;            // B from V^T, transposed 16x16
  static constexpr bool kCpAsync = true;
};
template <> struct ArchAtoms<Sm80, fp16> : ArchAtomsSm80<fp16> {};
template <> struct ArchAtoms<Sm80, bf16> : ArchAtomsSm80<bf16> {};

// ---------------------------------------------------------------------------------------------
// 16-byte global->shared copy with zero fill when !pred (cp.async.cg, SM80+).
__device__ __forceinline__ void cp_async_16(void* smem_dst, const void* gmem_src, bool pred) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  cute::SM80_CP_ASYNC_CACHEGLOBAL_ZFILL<cute::uint128_t>::copy(
      *reinterpret_cast<const cute::uint128_t*>(gmem_src),
      *reinterpret_cast<cute::uint128_t*>(smem_dst), pred);
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

// Register-staged 16-byte load (SM75 path).  Returns zeros when !pred; never touches memory then.
__device__ __forceinline__ uint4 ld_global_16(const void* gmem_src, bool pred) {
  uint4 r = make_uint4(0u, 0u, 0u, 0u);
  if (pred) r = __ldg(reinterpret_cast<const uint4*>(gmem_src));
  return r;
}
__device__ __forceinline__ void st_shared_16(void* smem_dst, const uint4& v) {
  *reinterpret_cast<uint4*>(smem_dst) = v;
}

// exp2 / tanh via the special-function unit (ex2.approx(-inf) == +0).
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
// tanh(x) = 1 - 2 / (1 + 2^(2 x log2 e)); ex2.approx + rcp: ~1e-6 relative (tanh.approx.f32 is
// only ~5e-4, which soft-capped logits of magnitude ~30 would turn into ~1e-2 absolute errors)
__device__ __forceinline__ float fast_tanh(float x) {
  return 1.f - __fdividef(2.f, 1.f + fast_exp2(x * 2.8853900817779268f));
}

}  // namespace qm
