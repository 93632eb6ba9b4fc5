// qimeng/sm90/fa3.cuh -- umbrella header of the Hopper (sm_90a) building blocks: warp-specialised
// attention with TMA copies into a ring of shared stages and warpgroup MMAs (FlashAttention-3 style).
#pragma once
// traits.cuh first: it enables CuTe's GMMA atoms of every N, which must precede any CuTe header
// (../lowering.cuh includes some)
#include "traits.cuh"
#include "../params.cuh"
#include "../lowering.cuh"
#include "tma.cuh"
#include "pipeline.cuh"
#include "mma.cuh"
#include "consumer.cuh"
#include "scheduler.cuh"
#include "split.cuh"
