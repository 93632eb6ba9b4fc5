// Timing-only tile variants (see variants.cu); builds without variants.cu get an empty list.
#pragma once
#include <vector>
struct TimeVariant {
  const char* name;
  int kind;            // 0 = dense prefill, 1 = paged decode (split-KV; timed with the fp16 combine)
  const void* fn;
  int D, bm, bn, threads, smem;
};
std::vector<TimeVariant> qm_time_variants();
