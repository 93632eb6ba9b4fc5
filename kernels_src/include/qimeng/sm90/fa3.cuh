// qimeng/sm90/fa3.cuh -- umbrella header of the Hopper (sm_90a) building blocks: warp-specialised
// attention with TMA copies into a ring of shared stages and warpgroup MMAs (FlashAttention-3 style).
#pragma once
// before any CuTe header (../lowering.cuh includes some): GMMA atoms of every N, see traits.cuh
#ifndef CUTE_SM90_EXTENDED_MMA_SHAPES_ENABLED
#define CUTE_SM90_EXTENDED_MMA_SHAPES_ENABLED
#endif
#include "../params.cuh"
#include "../lowering.cuh"
#include "traits.cuh"
#include "tma.cuh"
#include "pipeline.cuh"
#include "mma.cuh"
#include "consumer.cuh"
#include "scheduler.cuh"
