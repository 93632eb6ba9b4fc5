// qimeng/configs.cuh -- the tile configurations the hand-assembled kernels are instantiated with
// (and the host test launches with).  Traits<Arch, T, HEAD_DIM, BLOCK_M, BLOCK_N, WARPS, STAGES>.
//
//   recipe  family   D    BLOCK_M BLOCK_N WARPS  smem     notes
//   Sm80    prefill  64   128     64      4      32 KB    Q in registers
//   Sm80    prefill  128  128     32      4      48 KB    Q re-read from smem (gemm_ss); 128x64 spills
//   Sm80    prefill  256  128     32      8      96 KB    Q re-read from smem (gemm_ss); fits sm_86/89's 99 KB
//   Sm75    prefill  64   64      64      4      24 KB    Q in registers, K/V register-staged
//   Sm75    prefill  128  64      64      4      48 KB    Q in registers, K/V register-staged
//   Sm75    prefill  256  64      32      4      64 KB    Q in smem, K/V register-staged
//   Sm80    decode   64/128      16  64   4      34/68 KB  STAGES=4 (double-buffered K/V pairs)
//   Sm80    decode   256         16  64   4      74 KB     STAGES=2 (merge buffer sets the size)
//   Sm75    decode   64/128: 16x64, 4 warps (20/38 KB);  256: 16x32, 2 warps (41 KB)
#pragma once
#include "traits.cuh"

namespace qm {
namespace cfg {

template <class Arch, class T, int D> struct Prefill;
template <class T> struct Prefill<Sm80, T, 64>  { using type = Traits<Sm80, T, 64, 128, 64, 4, 2>; };
template <class T> struct Prefill<Sm80, T, 128> { using type = Traits<Sm80, T, 128, 128, 32, 4, 2>; };
template <class T> struct Prefill<Sm80, T, 256> { using type = Traits<Sm80, T, 256, 128, 32, 8, 2>; };
template <> struct Prefill<Sm75, fp16, 64>  { using type = Traits<Sm75, fp16, 64, 64, 64, 4, 2>; };
template <> struct Prefill<Sm75, fp16, 128> { using type = Traits<Sm75, fp16, 128, 64, 64, 4, 2>; };
template <> struct Prefill<Sm75, fp16, 256> { using type = Traits<Sm75, fp16, 256, 64, 32, 4, 2>; };

template <class Arch, class T, int D> struct Decode;
// D <= 128: double-buffered K/V pairs (STAGES=4, 68 KB at D=128); D = 256 keeps the ping-pong
// (STAGES=4 would need 136 KB: one CTA per SM, and more than sm_86/89 allow)
template <class T, int D> struct Decode<Sm80, T, D> { using type = Traits<Sm80, T, D, 16, 64, 4, D <= 128 ? 4 : 2>; };
template <> struct Decode<Sm75, fp16, 64>  { using type = Traits<Sm75, fp16, 64, 16, 64, 4, 2>; };
template <> struct Decode<Sm75, fp16, 128> { using type = Traits<Sm75, fp16, 128, 16, 64, 4, 2>; };
template <> struct Decode<Sm75, fp16, 256> { using type = Traits<Sm75, fp16, 256, 16, 32, 2, 2>; };

constexpr int kCombineThreads = 128;

}  // namespace cfg
}  // namespace qm
