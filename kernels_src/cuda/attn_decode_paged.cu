// Paged decode attention with split-KV, hand-assembled from qimeng building blocks in TL order.
//   qm_decode_paged_*:  grid = (num_splits, heads_kv * m_tiles, batch), block = 32*WARPS,
//       dynamic smem = Traits::kSmemBytes; m_tiles = ceil(group * max_seqlen_q / 16).
//       The GROUP query heads of one kv head (x the query tokens of the sequence) are packed into
//       the 16 rows of the M tile; each warp owns 16 kv columns of every 16*WARPS-wide K/V tile.
//       Writes o_partial [num_splits, total_q, heads_q, D] and lse [num_splits, total_q, heads_q].
//   qm_combine_*:  grid = (heads_q, batch), block = 128, no smem; merges the splits into O.
// Build with -DQM_RECIPE=75 (fp16) or 80 (fp16 + bf16).
#include <qimeng/qimeng.cuh>

template <class KT>
__device__ __forceinline__ void attn_decode_paged(const qm::AttnParams& p) {
  // grid decode
  const qm::TileCoord tc = qm::grid_decode_split<KT>(p);
  if (tc.row0 >= tc.rows) return;
  // lets
  const auto q = qm::make_q_rows<KT>(p, tc);
  const auto kv = qm::make_kv_paged<KT>(p, tc);
  const qm::MaskInfo mask = qm::make_mask<KT>(p, tc);
  const qm::BlockRange nr = qm::kv_block_range<KT>(mask, tc);
  const float scale = qm::softmax_scale_log2(p);
  // Allocate
  extern __shared__ __align__(128) char smem_raw[];
  const auto sm = qm::alloc_smem<KT>(smem_raw);
  auto rQ = qm::alloc_frag_q<KT>();
  auto acc_o = qm::alloc_acc_o<KT>();
  qm::SoftmaxState<KT> st;
  qm::CopyStage<KT> stage;
  // Copy Q, K[last] (+ V[last] when the K/V pairs are double-buffered)
  qm::copy_q_g2s<KT>(q, sm.q);
  qm::copy_kv_g2s<KT>(stage, kv.k, sm.k, nr.hi - 1);
  if constexpr (KT::kKVPairs > 1) qm::copy_kv_g2s<KT>(stage, kv.v, sm.v, nr.hi - 1);
  if constexpr (KT::kQInRegs) qm::copy_q_s2r<KT>(rQ, sm.q);
  // Loop over the kv blocks of this split, last to first
  if constexpr (KT::kKVPairs == 1) {
    // STAGES=2, FA2 ping-pong: V[n] lands during S = QK^T, K[n-1] during softmax + PV
    for (int n = nr.hi - 1; n >= nr.lo; --n) {
      auto acc_s = qm::alloc_acc_s<KT>();
      qm::copy_wait<KT>(stage, sm.k);
      qm::copy_kv_g2s<KT>(stage, kv.v, sm.v, n);
      if constexpr (KT::kQInRegs) qm::gemm_rs<KT, qm::OperandK>(acc_s, rQ, sm.k);
      else                        qm::gemm_ss<KT, qm::OperandK>(acc_s, sm.q, sm.k);
      qm::apply_softcap<KT>(acc_s, mask);
      qm::apply_mask<KT>(acc_s, mask, n);
      qm::copy_wait<KT>(stage, sm.v);
      qm::copy_kv_g2s<KT>(stage, kv.k, sm.k, n > nr.lo ? n - 1 : -1);
      qm::online_softmax_update<KT>(st, acc_s, scale);
      qm::rescale_acc<KT>(acc_o, st);
      auto rP = qm::reshape_acc_to_a<KT>(acc_s);
      qm::gemm_rs<KT, qm::OperandVt>(acc_o, rP, sm.v);
    }
  } else {
    // STAGES=4, double-buffered (K, V) pairs: K[n-1], V[n-1] land during the whole iteration n
    for (int n = nr.hi - 1, it = 0; n >= nr.lo; --n, ++it) {
      const auto cur = qm::kv_stage<KT>(sm, it);
      const auto nxt = qm::kv_stage<KT>(sm, it + 1);
      auto acc_s = qm::alloc_acc_s<KT>();
      qm::copy_wait<KT>(stage, cur.k);
      qm::copy_kv_g2s<KT>(stage, kv.k, nxt.k, n > nr.lo ? n - 1 : -1);
      qm::copy_kv_g2s<KT>(stage, kv.v, nxt.v, n > nr.lo ? n - 1 : -1);
      if constexpr (KT::kQInRegs) qm::gemm_rs<KT, qm::OperandK>(acc_s, rQ, cur.k);
      else                        qm::gemm_ss<KT, qm::OperandK>(acc_s, sm.q, cur.k);
      qm::apply_softcap<KT>(acc_s, mask);
      qm::apply_mask<KT>(acc_s, mask, n);
      qm::online_softmax_update<KT>(st, acc_s, scale);
      qm::rescale_acc<KT>(acc_o, st);
      auto rP = qm::reshape_acc_to_a<KT>(acc_s);
      qm::gemm_rs<KT, qm::OperandVt>(acc_o, rP, cur.v);
    }
  }
  // normalize (merge the warps' column slices), store the split partials
  qm::merge_and_store_partial<KT>(acc_o, st, q, sm, scale, p, tc);
}

#define QM_DECODE_PAGED(ARCH, NAME, DT, D)                                                      \
  extern "C" __global__ void __launch_bounds__(qm::cfg::Decode<qm::ARCH, qm::DT, D>::type::kThreads) \
  qm_decode_paged_##NAME##_##DT##_d##D(const qm::AttnParams p) {                                \
    attn_decode_paged<qm::cfg::Decode<qm::ARCH, qm::DT, D>::type>(p);                           \
  }
#define QM_COMBINE(NAME, DT, D)                                                                 \
  extern "C" __global__ void __launch_bounds__(qm::cfg::kCombineThreads)                       \
  qm_combine_##NAME##_##DT##_d##D(const qm::AttnParams p) {                                     \
    qm::combine_splits<qm::DT, D, qm::cfg::kCombineThreads>(p);                                 \
  }

#if QM_RECIPE == 75
QM_DECODE_PAGED(Sm75, sm75, fp16, 64)
QM_DECODE_PAGED(Sm75, sm75, fp16, 128)
QM_DECODE_PAGED(Sm75, sm75, fp16, 256)
QM_COMBINE(sm75, fp16, 64)
QM_COMBINE(sm75, fp16, 128)
QM_COMBINE(sm75, fp16, 256)
#elif QM_RECIPE == 80
QM_DECODE_PAGED(Sm80, sm80, fp16, 64)
QM_DECODE_PAGED(Sm80, sm80, fp16, 128)
QM_DECODE_PAGED(Sm80, sm80, fp16, 256)
QM_DECODE_PAGED(Sm80, sm80, bf16, 64)
QM_DECODE_PAGED(Sm80, sm80, bf16, 128)
QM_DECODE_PAGED(Sm80, sm80, bf16, 256)
QM_COMBINE(sm80, fp16, 64)
QM_COMBINE(sm80, fp16, 128)
QM_COMBINE(sm80, fp16, 256)
QM_COMBINE(sm80, bf16, 64)
QM_COMBINE(sm80, bf16, 128)
QM_COMBINE(sm80, bf16, 256)
#elif QM_RECIPE != 0   // 0: only the kernel body templates (for experiments)
#error "define QM_RECIPE=75 or 80"
#endif
