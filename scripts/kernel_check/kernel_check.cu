// Standalone check + timing of the qimeng attention kernels (no torch; CUDA runtime + fp64 CPU
// reference).  Built by scripts/kernel_check/build.sh once per build (kc_sm75 / kc_sm80 / kc_sm90a)
// together with the kernel objects of that build; QM_RECIPE (75 or 80) selects the kernel set.
//
//   kc_<build> check [--dtype fp16|bf16] [--d 64|128|256] [--family dense,varlen,paged,decode]
//                    [--big] [--seed N]
//   kc_<build> time  [--reps N]
//   kc_<build> ref-only ...     (CPU reference only, to size the checks; no GPU needed)
//
// Every check draws fresh random inputs, poisons every output buffer with NaN (0xFF bytes)
// before the launch, checks every CUDA return code and the launch error, and compares with an
// fp64 reference (max abs error, relative L2 error; any NaN in the checked output fails).
// Output lines: "RESULT key=value ..." (parsed by scripts/gpu_kernels_check.sh) and "TIME ...".
#include <qimeng/params.cuh>
#include <qimeng/configs.cuh>
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <cutlass/numeric_types.h>
#include "variants.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#define CK(x)                                                                                   \
  do {                                                                                          \
    cudaError_t e_ = (x);                                                                       \
    if (e_ != cudaSuccess) {                                                                    \
      fprintf(stderr, "CUDA error '%s' at %s:%d: %s\n", #x, __FILE__, __LINE__, cudaGetErrorString(e_)); \
      exit(2);                                                                                  \
    }                                                                                           \
  } while (0)

// ---------------------------------------------------------------------------------------------
// kernel declarations and the kernel table of this build
#define QM_DECL(NAME, DT, D)                                                                    \
  extern "C" __global__ void qm_prefill_dense_##NAME##_##DT##_d##D(const qm::AttnParams);       \
  extern "C" __global__ void qm_prefill_paged_##NAME##_##DT##_d##D(const qm::AttnParams);       \
  extern "C" __global__ void qm_decode_paged_##NAME##_##DT##_d##D(const qm::AttnParams);        \
  extern "C" __global__ void qm_combine_##NAME##_##DT##_d##D(const qm::AttnParams);

enum DType { F16 = 0, BF16 = 1 };
static const char* dt_name(int dt) { return dt == F16 ? "fp16" : "bf16"; }

struct KernelSet {
  const char* name;
  int dtype, D;
  const void *pf_dense, *pf_paged, *decode, *combine;
  int pf_bm, pf_bn, pf_threads, pf_smem;
  int dec_bm, dec_bn, dec_threads, dec_smem;
};

template <class Arch, class T, int D>
static KernelSet make_set(const char* name, int dt, const void* a, const void* b, const void* c, const void* d) {
  using P = typename qm::cfg::Prefill<Arch, T, D>::type;
  using Q = typename qm::cfg::Decode<Arch, T, D>::type;
  return KernelSet{name, dt, D, a, b, c, d,
                   P::kBlockM, P::kBlockN, P::kThreads, P::kSmemBytes,
                   Q::kBlockM, Q::kBlockN, Q::kThreads, Q::kSmemBytes};
}
#define QM_SET(ARCH, NAME, DT, DTE, D)                                                          \
  make_set<qm::ARCH, qm::DT, D>(#NAME, DTE, (const void*)qm_prefill_dense_##NAME##_##DT##_d##D, \
                                (const void*)qm_prefill_paged_##NAME##_##DT##_d##D,             \
                                (const void*)qm_decode_paged_##NAME##_##DT##_d##D,              \
                                (const void*)qm_combine_##NAME##_##DT##_d##D)

#if QM_RECIPE == 75
QM_DECL(sm75, fp16, 64)
QM_DECL(sm75, fp16, 128)
QM_DECL(sm75, fp16, 256)
static std::vector<KernelSet> kernel_sets() {
  return {QM_SET(Sm75, sm75, fp16, F16, 64), QM_SET(Sm75, sm75, fp16, F16, 128), QM_SET(Sm75, sm75, fp16, F16, 256)};
}
#elif QM_RECIPE == 80
QM_DECL(sm80, fp16, 64)
QM_DECL(sm80, fp16, 128)
QM_DECL(sm80, fp16, 256)
QM_DECL(sm80, bf16, 64)
QM_DECL(sm80, bf16, 128)
QM_DECL(sm80, bf16, 256)
static std::vector<KernelSet> kernel_sets() {
  return {QM_SET(Sm80, sm80, fp16, F16, 64), QM_SET(Sm80, sm80, fp16, F16, 128), QM_SET(Sm80, sm80, fp16, F16, 256),
          QM_SET(Sm80, sm80, bf16, BF16, 64), QM_SET(Sm80, sm80, bf16, BF16, 128), QM_SET(Sm80, sm80, bf16, BF16, 256)};
}
#else
#error "define QM_RECIPE=75 or 80"
#endif

__attribute__((weak)) std::vector<TimeVariant> qm_time_variants() { return {}; }

static std::string g_build = "?";   // from the binary name kc_<build>
#define QM_BUILD_NAME g_build.c_str()

// ---------------------------------------------------------------------------------------------
// host dtype helpers
static uint16_t to_bits(float x, int dt) {
  if (dt == F16) return cutlass::half_t(x).raw();
  return cutlass::bfloat16_t(x).raw();
}
static float from_bits(uint16_t b, int dt) {
  if (dt == F16) return float(cutlass::half_t::bitcast(b));
  return float(cutlass::bfloat16_t::bitcast(b));
}

// ---------------------------------------------------------------------------------------------
// a check case
enum Family { DENSE, VARLEN, PAGED, DECODE };
static const char* fam_name(int f) {
  static const char* n[] = {"dense", "varlen", "paged", "decode"};
  return n[f];
}

struct Case {
  int fam;
  std::vector<int> sq, sk;   // per sequence
  int hq = 8, hkv = 8;
  int causal = 0, window = 0;
  float softcap = 0.f;
  int page = 16;
  int split = 512;
  bool lse = false;          // prefill: also check the LSE output
  float mag = 1.f;           // input magnitude
  std::string desc() const {
    char buf[256];
    int mq = *std::max_element(sq.begin(), sq.end()), mk = *std::max_element(sk.begin(), sk.end());
    snprintf(buf, sizeof buf, "B=%zu sq<=%d sk<=%d hq=%d hkv=%d causal=%d win=%d cap=%g%s%s", sq.size(), mq, mk, hq, hkv,
             causal, window, softcap, (fam == PAGED || fam == DECODE) ? (" page=" + std::to_string(page)).c_str() : "",
             fam == DECODE ? (" split=" + std::to_string(split)).c_str() : "");
    return buf;
  }
};

struct SeqData {  // logical tensors of one sequence, values already rounded to the dtype
  int sq, sk;
  std::vector<uint16_t> q, k, v;   // [sq][hq][D], [sk][hkv][D]
  std::vector<float> qf, kf, vf;
};

// ---------------------------------------------------------------------------------------------
// fp64 reference for one (sequence, head, query row); returns false when no key is visible
static void ref_row(const Case& c, const SeqData& s, int D, int h, int i, double scale, double* out, double* lse2) {
  const int hk = h / (c.hq / c.hkv);
  const int off = s.sk - s.sq;
  std::vector<double> sc(s.sk);
  double mx = -INFINITY;
  for (int j = 0; j < s.sk; ++j) {
    bool vis = true;
    if (c.causal && j > i + off) vis = false;
    if (c.window > 0 && j < i + off - c.window) vis = false;
    if (!vis) { sc[j] = -INFINITY; continue; }
    const float* q = &s.qf[(size_t(i) * c.hq + h) * D];
    const float* k = &s.kf[(size_t(j) * c.hkv + hk) * D];
    double dot = 0;
    for (int d = 0; d < D; ++d) dot += double(q[d]) * double(k[d]);
    double x = dot * scale;
    if (c.softcap > 0) x = c.softcap * std::tanh(x / c.softcap);
    sc[j] = x;
    mx = std::max(mx, x);
  }
  for (int d = 0; d < D; ++d) out[d] = 0;
  if (mx == -INFINITY) { *lse2 = -INFINITY; return; }
  double sum = 0;
  for (int j = 0; j < s.sk; ++j) {
    if (sc[j] == -INFINITY) continue;
    const double p = std::exp(sc[j] - mx);
    sum += p;
    const float* v = &s.vf[(size_t(j) * c.hkv + hk) * D];
    for (int d = 0; d < D; ++d) out[d] += p * double(v[d]);
  }
  for (int d = 0; d < D; ++d) out[d] /= sum;
  *lse2 = (mx + std::log(sum)) / std::log(2.0);
}

static bool row_sampled(int i, int sq, int sk) {
  if (size_t(sq) * sk <= 300000) return true;
  return i < 4 || i >= sq - 4 || i % 5 == 0;
}

// ---------------------------------------------------------------------------------------------
struct DevBuf {
  void* p = nullptr;
  size_t n = 0;
  DevBuf() = default;
  explicit DevBuf(size_t bytes) { alloc(bytes); }
  void alloc(size_t bytes) {
    if (p) CK(cudaFree(p));
    n = bytes;
    CK(cudaMalloc(&p, std::max<size_t>(bytes, 16)));
  }
  ~DevBuf() { if (p) cudaFree(p); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  template <class T> T* as() const { return static_cast<T*>(p); }
};
template <class T>
static void upload(DevBuf& b, const std::vector<T>& h) {
  CK(cudaMemcpy(b.p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
}

static void launch(const void* fn, dim3 grid, dim3 block, int smem, const qm::AttnParams& p, cudaStream_t st = 0) {
  CK(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  void* args[] = {const_cast<qm::AttnParams*>(&p)};
  CK(cudaLaunchKernel(fn, grid, block, args, size_t(smem), st));
  CK(cudaGetLastError());
}

struct Result {
  double max_abs = 0, rel_l2 = 0, lse_err = 0;
  long nan = 0, checked = 0;
  bool ok = false;
  std::string diag;   // on failure: the worst rows
};

static uint64_t g_seed = 12345;
static bool g_ref_only = false;

static Result run_case(const KernelSet& ks, const Case& c) {
  const int D = ks.D, dt = ks.dtype, B = int(c.sq.size());
  std::mt19937_64 rng(g_seed++);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<SeqData> seqs(B);
  for (int b = 0; b < B; ++b) {
    SeqData& s = seqs[b];
    s.sq = c.sq[b]; s.sk = c.sk[b];
    auto fill = [&](std::vector<uint16_t>& bits, std::vector<float>& f, size_t n, float mag) {
      bits.resize(n); f.resize(n);
      for (size_t i = 0; i < n; ++i) { bits[i] = to_bits(nd(rng) * mag, dt); f[i] = from_bits(bits[i], dt); }
    };
    fill(s.q, s.qf, size_t(s.sq) * c.hq * D, c.mag);
    fill(s.k, s.kf, size_t(s.sk) * c.hkv * D, c.mag);
    fill(s.v, s.vf, size_t(s.sk) * c.hkv * D, 1.f);
  }
  const double scale = 1.0 / std::sqrt(double(D));
  int total_q = 0, max_sq = 0, max_sk = 0;
  std::vector<int> cuq(B + 1, 0), cuk(B + 1, 0);
  for (int b = 0; b < B; ++b) {
    cuq[b + 1] = cuq[b] + c.sq[b]; cuk[b + 1] = cuk[b] + c.sk[b];
    max_sq = std::max(max_sq, c.sq[b]); max_sk = std::max(max_sk, c.sk[b]);
  }
  total_q = cuq[B];

  // ---- reference (threads over (b, h)) ----
  std::vector<std::vector<double>> ref(B), ref_lse(B);
  for (int b = 0; b < B; ++b) { ref[b].assign(size_t(c.sq[b]) * c.hq * D, NAN); ref_lse[b].assign(size_t(c.sq[b]) * c.hq, NAN); }
  {
    std::atomic<int> next{0};
    const int nwork = B * c.hq;
    auto worker = [&]() {
      for (int w; (w = next.fetch_add(1)) < nwork;) {
        const int b = w / c.hq, h = w % c.hq;
        for (int i = 0; i < c.sq[b]; ++i)
          if (row_sampled(i, c.sq[b], c.sk[b]))
            ref_row(c, seqs[b], D, h, i, scale, &ref[b][(size_t(i) * c.hq + h) * D], &ref_lse[b][size_t(i) * c.hq + h]);
      }
    };
    int nt = std::max(1u, std::thread::hardware_concurrency());
    std::vector<std::thread> th;
    for (int t = 0; t < nt; ++t) th.emplace_back(worker);
    for (auto& t : th) t.join();
  }
  Result res;
  if (g_ref_only) { res.ok = true; return res; }

  // ---- device layouts ----
  qm::AttnParams p;
  memset(&p, 0, sizeof p);
  p.batch = B; p.heads_q = c.hq; p.heads_kv = c.hkv;
  p.max_seqlen_q = max_sq; p.max_seqlen_k = max_sk;
  p.causal = c.causal; p.window_left = c.window; p.softcap = c.softcap;
  p.softmax_scale_log2 = float(scale * 1.4426950408889634);
  p.page_size = c.page;
  const size_t el = 2;

  // Q / O
  const bool dense = c.fam == DENSE;
  std::vector<uint16_t> hq_buf(size_t(total_q) * c.hq * D);
  for (int b = 0; b < B; ++b) std::copy(seqs[b].q.begin(), seqs[b].q.end(), hq_buf.begin() + size_t(cuq[b]) * c.hq * D);
  DevBuf dq(hq_buf.size() * el), dO(hq_buf.size() * el), dcuq((B + 1) * 4), dcuk((B + 1) * 4), dsk(B * 4);
  upload(dq, hq_buf); upload(dcuq, cuq); upload(dcuk, cuk); upload(dsk, c.sk);
  p.q = dq.p; p.o = dO.p;
  p.q_token_stride = int64_t(c.hq) * D; p.q_head_stride = D; p.q_batch_stride = int64_t(max_sq) * c.hq * D;
  p.o_token_stride = int64_t(c.hq) * D; p.o_head_stride = D; p.o_batch_stride = int64_t(max_sq) * c.hq * D;
  if (!dense) p.cu_seqlens_q = dcuq.as<int>();

  // K / V
  DevBuf dk, dv, dkv, dcache, dbt, dlse, dpart;
  std::vector<int> bt;
  int bt_stride = 0;
  if (c.fam == DENSE) {
    // interleaved [B][Sk][2][Hkv][D]: exercises token strides != heads*D
    std::vector<uint16_t> h(size_t(B) * max_sk * 2 * c.hkv * D);
    for (int b = 0; b < B; ++b)
      for (int j = 0; j < c.sk[b]; ++j)
        for (int kv = 0; kv < 2; ++kv)
          std::copy_n((kv ? seqs[b].v : seqs[b].k).begin() + size_t(j) * c.hkv * D, c.hkv * D,
                      h.begin() + ((size_t(b) * max_sk + j) * 2 + kv) * c.hkv * D);
    dkv.alloc(h.size() * el);
    upload(dkv, h);
    p.k = dkv.as<uint16_t>(); p.v = dkv.as<uint16_t>() + size_t(c.hkv) * D;
    p.k_batch_stride = p.v_batch_stride = int64_t(max_sk) * 2 * c.hkv * D;
    p.k_token_stride = p.v_token_stride = int64_t(2) * c.hkv * D;
    p.k_head_stride = p.v_head_stride = D;
  } else if (c.fam == VARLEN) {
    std::vector<uint16_t> hk(size_t(cuk[B]) * c.hkv * D), hv(hk.size());
    for (int b = 0; b < B; ++b) {
      std::copy(seqs[b].k.begin(), seqs[b].k.end(), hk.begin() + size_t(cuk[b]) * c.hkv * D);
      std::copy(seqs[b].v.begin(), seqs[b].v.end(), hv.begin() + size_t(cuk[b]) * c.hkv * D);
    }
    dk.alloc(hk.size() * el); dv.alloc(hv.size() * el);
    upload(dk, hk); upload(dv, hv);
    p.k = dk.p; p.v = dv.p; p.cu_seqlens_k = dcuk.as<int>();
    p.k_token_stride = p.v_token_stride = int64_t(c.hkv) * D;
    p.k_head_stride = p.v_head_stride = D;
  } else {
    // vLLM-style cache [num_blocks][Hkv][page][2*D]: K = base, V = base + D, same strides;
    // pages handed out in a shuffled order, plus unused pages, block table rows padded.
    std::vector<int> nblk(B);
    int used = 0, maxb = 0;
    for (int b = 0; b < B; ++b) { nblk[b] = (c.sk[b] + c.page - 1) / c.page; used += nblk[b]; maxb = std::max(maxb, nblk[b]); }
    const int num_blocks = used + 7;
    std::vector<int> perm(num_blocks);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    bt_stride = maxb + 3;
    bt.assign(size_t(B) * bt_stride, -1);   // unused entries hold garbage (-1) on purpose
    int pi = 0;
    for (int b = 0; b < B; ++b)
      for (int x = 0; x < nblk[b]; ++x) bt[size_t(b) * bt_stride + x] = perm[pi++];
    const size_t slot = 2 * size_t(D), head = size_t(c.page) * slot, blk = size_t(c.hkv) * head;
    std::vector<uint16_t> h(size_t(num_blocks) * blk);
    for (auto& x : h) x = to_bits(nd(rng) * 100.f, dt);   // junk in unused slots/pages
    for (int b = 0; b < B; ++b)
      for (int j = 0; j < c.sk[b]; ++j) {
        const int page = bt[size_t(b) * bt_stride + j / c.page], sl = j % c.page;
        for (int hk = 0; hk < c.hkv; ++hk) {
          uint16_t* dst = &h[page * blk + hk * head + sl * slot];
          std::copy_n(seqs[b].k.begin() + (size_t(j) * c.hkv + hk) * D, D, dst);
          std::copy_n(seqs[b].v.begin() + (size_t(j) * c.hkv + hk) * D, D, dst + D);
        }
      }
    dcache.alloc(h.size() * el); dbt.alloc(bt.size() * 4);
    upload(dcache, h); upload(dbt, bt);
    p.k = dcache.as<uint16_t>(); p.v = dcache.as<uint16_t>() + D;
    p.k_batch_stride = p.v_batch_stride = int64_t(blk);
    p.k_head_stride = p.v_head_stride = int64_t(head);
    p.k_token_stride = p.v_token_stride = int64_t(slot);
    p.block_table = dbt.as<int>(); p.block_table_stride = bt_stride;
    p.seqlens_k = dsk.as<int>();
  }

  CK(cudaMemset(dO.p, 0xFF, dO.n));   // NaN poison
  if (c.fam == DECODE) {
    p.split_size = c.split;
    p.num_splits = (max_sk + c.split - 1) / c.split;
    if (p.num_splits < 1) p.num_splits = 1;
    dpart.alloc(size_t(p.num_splits) * total_q * c.hq * D * 4);
    dlse.alloc(size_t(p.num_splits) * total_q * c.hq * 4);
    CK(cudaMemset(dpart.p, 0xFF, dpart.n)); CK(cudaMemset(dlse.p, 0xFF, dlse.n));
    p.o_partial = dpart.as<float>(); p.lse = dlse.as<float>();
    const int group = c.hq / c.hkv;
    const int m_tiles = (group * max_sq + ks.dec_bm - 1) / ks.dec_bm;
    launch(ks.decode, dim3(p.num_splits, c.hkv * m_tiles, B), dim3(ks.dec_threads), ks.dec_smem, p);
    launch(ks.combine, dim3(c.hq, B), dim3(qm::cfg::kCombineThreads), 0, p);
  } else {
    if (c.lse) {
      dlse.alloc(size_t(total_q) * c.hq * 4);
      CK(cudaMemset(dlse.p, 0xFF, dlse.n));
      p.lse = dlse.as<float>();
    }
    const void* fn = c.fam == PAGED ? ks.pf_paged : ks.pf_dense;
    launch(fn, dim3((max_sq + ks.pf_bm - 1) / ks.pf_bm, c.hq, B), dim3(ks.pf_threads), ks.pf_smem, p);
  }
  CK(cudaDeviceSynchronize());

  std::vector<uint16_t> ho(hq_buf.size());
  CK(cudaMemcpy(ho.data(), dO.p, ho.size() * el, cudaMemcpyDeviceToHost));
  std::vector<float> hl;
  if (c.lse && c.fam != DECODE) {
    hl.resize(size_t(total_q) * c.hq);
    CK(cudaMemcpy(hl.data(), dlse.p, hl.size() * 4, cudaMemcpyDeviceToHost));
  }
  double num = 0, den = 0;
  struct RowErr { double err; int b, i, h, nan; double got0, ref0; };
  std::vector<RowErr> rows;
  for (int b = 0; b < B; ++b)
    for (int i = 0; i < c.sq[b]; ++i)
      for (int h = 0; h < c.hq; ++h) {
        const size_t base = (size_t(cuq[b] + i) * c.hq + h) * D;
        int row_nan = 0;
        for (int d = 0; d < D; ++d) {
          const float o = from_bits(ho[base + d], dt);
          if (std::isnan(o)) { res.nan++; row_nan++; }   // every row is written: NaN = unwritten
        }
        if (!row_sampled(i, c.sq[b], c.sk[b])) {
          if (row_nan) rows.push_back({1e30, b, i, h, row_nan, NAN, NAN});
          continue;
        }
        const double* r = &ref[b][(size_t(i) * c.hq + h) * D];
        double row_err = 0;
        for (int d = 0; d < D; ++d) {
          const float o = from_bits(ho[base + d], dt);
          const double e = double(o) - r[d];
          if (!std::isnan(o)) { res.max_abs = std::max(res.max_abs, std::fabs(e)); row_err = std::max(row_err, std::fabs(e)); }
          else row_err = 1e30;
          num += e * e; den += r[d] * r[d];
          res.checked++;
        }
        rows.push_back({row_err, b, i, h, row_nan, double(from_bits(ho[base], dt)), r[0]});
        if (!hl.empty()) {
          const double rl = ref_lse[b][size_t(i) * c.hq + h];
          const float gl = hl[size_t(cuq[b] + i) * c.hq + h];
          double e;
          if (std::isinf(rl)) e = (std::isinf(gl) && gl < 0) ? 0 : 1e9;
          else e = std::fabs(double(gl) - rl);
          if (std::isnan(gl)) e = 1e9;
          res.lse_err = std::max(res.lse_err, e);
        }
      }
  res.rel_l2 = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  const double tol = dt == F16 ? 2e-3 : 1e-2;
  res.ok = res.nan == 0 && res.rel_l2 <= tol && res.lse_err <= 3e-3 && res.checked > 0;
  if (!res.ok) {
    std::sort(rows.begin(), rows.end(), [](const RowErr& a, const RowErr& b) { return a.err > b.err; });
    char buf[160];
    long bad_rows = 0;
    for (auto& r : rows) bad_rows += r.err > 0.05;
    snprintf(buf, sizeof buf, "  rows_err>0.05=%ld/%zu worst:", bad_rows, rows.size());
    res.diag = buf;
    for (size_t k = 0; k < rows.size() && k < 6; ++k) {
      const RowErr& r = rows[k];
      snprintf(buf, sizeof buf, " [b=%d(sq=%d,sk=%d) i=%d h=%d err=%.3g nan=%d got0=%.4g ref0=%.4g]", r.b, c.sq[r.b], c.sk[r.b],
               r.i, r.h, r.err, r.nan, r.got0, r.ref0);
      res.diag += buf;
    }
  }
  return res;
}

// ---------------------------------------------------------------------------------------------
static std::vector<Case> make_cases(const KernelSet& ks, int fam_mask, bool big, std::mt19937_64& rng) {
  std::vector<Case> cs;
  const int lens[] = {1, 17, 127, 128, 129, 1000};
  const int ratios[] = {1, 4, 8};
  auto shuffled = [&](std::vector<int> v) { std::shuffle(v.begin(), v.end(), rng); return v; };
  if (fam_mask & (1 << DENSE)) {
    for (int li = 0; li < 6; ++li)
      for (int causal = 0; causal < 2; ++causal) {
        Case c; c.fam = DENSE; c.sq = {lens[li], lens[li]}; c.sk = c.sq; c.causal = causal;
        c.hkv = 8 / ratios[(li + causal) % 3]; c.lse = causal == 1;
        cs.push_back(c);
      }
    auto add = [&](int sq, int sk, int causal, int ratio, int win, float cap, float mag) {
      Case c; c.fam = DENSE; c.sq = {sq, sq}; c.sk = {sk, sk}; c.causal = causal; c.hkv = 8 / ratio;
      c.window = win; c.softcap = cap; c.mag = mag; c.lse = true; cs.push_back(c);
    };
    add(17, 1000, 1, 4, 0, 0.f, 1.f);       // chunked-prefill diagonal offset
    add(129, 17, 1, 8, 0, 0.f, 1.f);        // seqlen_k < seqlen_q: fully-masked rows -> 0
    add(1000, 127, 0, 1, 0, 0.f, 1.f);
    add(1000, 1000, 1, 4, 100, 0.f, 1.f);   // sliding window
    add(128, 300, 0, 1, 0, 30.f, 3.f);      // soft-cap, large logits
    add(300, 300, 1, 8, 37, 50.f, 2.f);     // window + soft-cap
    if (big) {
      add(4099, 4099, 0, 4, 0, 0.f, 1.f);
      add(4099, 4099, 1, 4, 0, 0.f, 1.f);
    }
  }
  if (fam_mask & (1 << VARLEN)) {
    std::vector<int> L(lens, lens + 6);
    for (int causal = 0; causal < 2; ++causal) {
      Case c; c.fam = VARLEN; c.sq = shuffled(L); c.sk = c.sq; c.causal = causal; c.hkv = 8 / ratios[1 + causal];
      c.lse = true; cs.push_back(c);
    }
    Case c; c.fam = VARLEN; c.sq = shuffled(L); c.sk = c.sq;
    for (auto& k : c.sk) k += int(rng() % 200);
    c.causal = 1; c.window = 64; c.hkv = 8; c.lse = true; cs.push_back(c);
  }
  if (fam_mask & (1 << PAGED)) {
    std::vector<int> L(lens, lens + 6);
    const int extra[] = {0, 16, 100, 300, 5, 1};
    for (int v = 0; v < 4; ++v) {
      Case c; c.fam = PAGED; c.sq = shuffled(L); c.sk = c.sq;
      for (int b = 0; b < 6; ++b) c.sk[b] += extra[(b + v) % 6];   // chunked prefill: sk >= sq
      c.causal = v > 0; c.hkv = 8 / ratios[v % 3]; c.page = 16;
      if (v == 2) c.window = 50;
      if (v == 3) { c.softcap = 20.f; c.mag = 2.f; c.page = 5; }
      cs.push_back(c);
    }
  }
  if (fam_mask & (1 << DECODE)) {
    std::vector<int> K = {1, 17, 127, 128, 129, 1000, 4099};
    for (int v = 0; v < 7; ++v) {
      Case c; c.fam = DECODE; c.sk = shuffled(K); c.sq.assign(c.sk.size(), 1);
      c.hkv = 8 / ratios[v % 3]; c.causal = v % 2; c.page = 16; c.split = 512;
      if (v == 3) { for (size_t b = 0; b < c.sq.size(); ++b) c.sq[b] = 1 + int(b % 3); c.hkv = 2; }  // 4 heads x 3 tokens
      if (v == 4) { for (size_t b = 0; b < c.sq.size(); ++b) c.sq[b] = 1 + int(b % 3); c.hkv = 1; }  // 8 x 3 = 24 rows: 2 m-tiles
      if (v == 5) { c.split = ks.dec_bn; c.window = 100; }
      if (v == 6) { c.softcap = 30.f; c.mag = 3.f; c.split = 4 * ks.dec_bn; c.page = 32; }
      cs.push_back(c);
    }
  }
  return cs;
}

// ---------------------------------------------------------------------------------------------
static void do_check(int argc, char** argv) {
  int want_dt = -1, want_d = 0, fam_mask = 0xF;
  g_seed = std::random_device{}() % 1000000007ull;   // fresh inputs every run unless --seed
  bool big = false;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--dtype" && i + 1 < argc) { std::string v = argv[++i]; want_dt = v == "bf16" ? BF16 : F16; }
    else if (a == "--d" && i + 1 < argc) want_d = atoi(argv[++i]);
    else if (a == "--big") big = true;
    else if (a == "--seed" && i + 1 < argc) g_seed = strtoull(argv[++i], nullptr, 10);
    else if (a == "--family" && i + 1 < argc) {
      std::string v = argv[++i];
      fam_mask = 0;
      for (int f = 0; f < 4; ++f) if (v.find(fam_name(f)) != std::string::npos) fam_mask |= 1 << f;
    }
  }
  printf("SEED build=%s seed=%llu (rerun with --seed %llu)\n", QM_BUILD_NAME, (unsigned long long)g_seed,
         (unsigned long long)g_seed);
  std::mt19937_64 rng(g_seed * 7 + 1);
  int n_ok = 0, n_fail = 0;
  for (const KernelSet& ks : kernel_sets()) {
    if (want_dt >= 0 && ks.dtype != want_dt) continue;
    if (want_d && ks.D != want_d) continue;
    for (const Case& c : make_cases(ks, fam_mask, big && ks.D == 128 && ks.dtype == F16, rng)) {
      Result r = run_case(ks, c);
      (r.ok ? n_ok : n_fail)++;
      printf("RESULT build=%s fam=%s dt=%s D=%d ok=%d rel_l2=%.3e max_abs=%.3e lse_err=%.2e nan=%ld checked=%ld | %s\n",
             QM_BUILD_NAME, fam_name(c.fam), dt_name(ks.dtype), ks.D, int(r.ok), r.rel_l2, r.max_abs, r.lse_err, r.nan,
             r.checked, c.desc().c_str());
      if (!r.ok) printf("DIAG%s\n", r.diag.c_str());
      fflush(stdout);
    }
  }
  printf("CHECKS build=%s passed=%d failed=%d\n", QM_BUILD_NAME, n_ok, n_fail);
  if (n_fail) exit(1);
}

// ---------------------------------------------------------------------------------------------
// device-side random fill for the timing buffers (host RNG over 100+ M values is too slow)
__global__ void fill_random_kernel(uint16_t* p, size_t n, unsigned long long seed, int dt) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    unsigned long long x = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
    x ^= x >> 31; x *= 0xBF58476D1CE4E5B9ull; x ^= x >> 27; x *= 0x94D049BB133111EBull; x ^= x >> 31;
    const float u = float(x >> 40) * (1.f / 16777216.f) * 4.f - 2.f;   // uniform(-2, 2)
    p[i] = dt == F16 ? __half_as_ushort(__float2half_rn(u)) : __bfloat16_as_ushort(__float2bfloat16_rn(u));
  }
}

static void do_time(int argc, char** argv) {
  int reps = 25;
  for (int i = 2; i < argc; ++i)
    if (std::string(argv[i]) == "--reps" && i + 1 < argc) reps = atoi(argv[++i]);
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  DevBuf flush(256ull << 20);
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0)); CK(cudaEventCreate(&e1));
  std::mt19937_64 rng(99);
  auto rand_fill = [&](DevBuf& b, int dt) {
    fill_random_kernel<<<1024, 256>>>(b.as<uint16_t>(), b.n / 2, rng(), dt);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
  };
  auto median_ms = [&](auto&& body) {
    std::vector<float> t;
    for (int r = 0; r < reps + 3; ++r) {
      CK(cudaMemsetAsync(flush.p, r & 0xFF, flush.n));   // flush L2
      CK(cudaEventRecord(e0));
      body();
      CK(cudaEventRecord(e1));
      CK(cudaEventSynchronize(e1));
      CK(cudaGetLastError());
      float ms;
      CK(cudaEventElapsedTime(&ms, e0, e1));
      if (r >= 3) t.push_back(ms);   // 3 warm-up runs (JIT, module load)
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  };
  struct PrefillTiming { std::string name; const void* fn; int dtype, D, bm, bn, threads, smem; };
  std::vector<PrefillTiming> todo;
  for (const KernelSet& ks : kernel_sets())
    if (ks.D == 128 || ks.dtype == F16)
      todo.push_back({std::string("prefill_dense"), ks.pf_dense, ks.dtype, ks.D, ks.pf_bm, ks.pf_bn, ks.pf_threads, ks.pf_smem});
  for (const TimeVariant& v : qm_time_variants())
    if (v.kind == 0) todo.push_back({std::string(v.name), v.fn, F16, v.D, v.bm, v.bn, v.threads, v.smem});
  for (const KernelSet& ks : kernel_sets())   // the same kernel again: run-to-run spread
    if (ks.D == 128 && ks.dtype == F16)
      todo.push_back({std::string("prefill_dense(repeat)"), ks.pf_dense, ks.dtype, ks.D, ks.pf_bm, ks.pf_bn, ks.pf_threads, ks.pf_smem});
  for (const PrefillTiming& ks : todo) {
    // dense prefill B=4, H=16, L=4096
    const int B = 4, H = 16, L = 4096, D = ks.D;
    DevBuf q(size_t(B) * L * H * D * 2), k(q.n), v(q.n), o(q.n);
    rand_fill(q, ks.dtype); rand_fill(k, ks.dtype); rand_fill(v, ks.dtype);
    qm::AttnParams p;
    memset(&p, 0, sizeof p);
    p.q = q.p; p.k = k.p; p.v = v.p; p.o = o.p;
    p.q_batch_stride = p.o_batch_stride = p.k_batch_stride = p.v_batch_stride = int64_t(L) * H * D;
    p.q_token_stride = p.o_token_stride = p.k_token_stride = p.v_token_stride = int64_t(H) * D;
    p.q_head_stride = p.o_head_stride = p.k_head_stride = p.v_head_stride = D;
    p.batch = B; p.heads_q = H; p.heads_kv = H; p.max_seqlen_q = L; p.max_seqlen_k = L;
    p.softmax_scale_log2 = float(1.4426950408889634 / std::sqrt(double(D)));
    for (int causal = 0; causal < 2; ++causal) {
      p.causal = causal;
      const float ms = median_ms([&] {
        launch(ks.fn, dim3((L + ks.bm - 1) / ks.bm, H, B), dim3(ks.threads), ks.smem, p);
      });
      const double flops = 4.0 * B * H * double(L) * L * D / (causal ? 2 : 1);
      printf("TIME build=%s kernel=%s dt=%s D=%d B=%d H=%d L=%d causal=%d tile=%dx%dw%d ms=%.4f TFLOPS=%.1f device=\"%s\"\n",
             QM_BUILD_NAME, ks.name.c_str(), dt_name(ks.dtype), D, B, H, L, causal, ks.bm, ks.bn, ks.threads / 32, ms,
             flops / ms * 1e-9, prop.name);
      fflush(stdout);
    }
  }
  // paged decode (split-KV + combine): B=16, Hq=32, Hkv=8, Lk=4096, page 16, split 512, 1 query token
  struct DecodeTiming { std::string name; const void *fn, *combine; int dtype, D, bm, bn, threads, smem; };
  std::vector<DecodeTiming> dtodo;
  const void* combine16 = nullptr;
  for (const KernelSet& ks : kernel_sets())
    if (ks.D == 128) {
      dtodo.push_back({std::string("decode_paged+combine"), ks.decode, ks.combine, ks.dtype, ks.D, ks.dec_bm, ks.dec_bn,
                       ks.dec_threads, ks.dec_smem});
      if (ks.dtype == F16) combine16 = ks.combine;
    }
  for (const TimeVariant& v : qm_time_variants())
    if (v.kind == 1 && combine16)
      dtodo.push_back({std::string(v.name) + "+combine", v.fn, combine16, F16, v.D, v.bm, v.bn, v.threads, v.smem});
  std::vector<std::pair<DecodeTiming, int>> druns;
  for (const DecodeTiming& ks : dtodo) {
    druns.push_back({ks, 512});
    if (ks.name == "decode_paged+combine" && ks.dtype == F16) { druns.push_back({ks, 256}); druns.push_back({ks, 1024}); }
  }
  for (const auto& dr : druns) {
    const DecodeTiming& ks = dr.first;
    const int B = 16, Hq = 32, Hkv = 8, L = 4096, D = ks.D, page = 16, split = dr.second;
    const int nblk = L / page;
    DevBuf cache(size_t(B) * nblk * Hkv * page * 2 * D * 2), q(size_t(B) * Hq * D * 2), o(q.n);
    rand_fill(cache, ks.dtype); rand_fill(q, ks.dtype);
    std::vector<int> bt(size_t(B) * nblk), sk(B, L);
    std::iota(bt.begin(), bt.end(), 0);
    std::shuffle(bt.begin(), bt.end(), rng);
    DevBuf dbt(bt.size() * 4), dsk(B * 4);
    upload(dbt, bt); upload(dsk, sk);
    const int ns = L / split;
    DevBuf part(size_t(ns) * B * Hq * D * 4), lse(size_t(ns) * B * Hq * 4);
    qm::AttnParams p;
    memset(&p, 0, sizeof p);
    p.q = q.p; p.o = o.p; p.k = cache.as<uint16_t>(); p.v = cache.as<uint16_t>() + D;
    p.q_batch_stride = p.o_batch_stride = int64_t(Hq) * D;
    p.q_token_stride = p.o_token_stride = int64_t(Hq) * D;
    p.q_head_stride = p.o_head_stride = D;
    p.k_batch_stride = p.v_batch_stride = int64_t(Hkv) * page * 2 * D;
    p.k_head_stride = p.v_head_stride = int64_t(page) * 2 * D;
    p.k_token_stride = p.v_token_stride = 2 * D;
    p.block_table = dbt.as<int>(); p.block_table_stride = nblk; p.seqlens_k = dsk.as<int>();
    p.page_size = page; p.split_size = split; p.num_splits = ns;
    p.o_partial = part.as<float>(); p.lse = lse.as<float>();
    p.batch = B; p.heads_q = Hq; p.heads_kv = Hkv; p.max_seqlen_q = 1; p.max_seqlen_k = L;
    p.softmax_scale_log2 = float(1.4426950408889634 / std::sqrt(double(D)));
    const int m_tiles = (Hq / Hkv + ks.bm - 1) / ks.bm;
    const float ms = median_ms([&] {
      launch(ks.fn, dim3(ns, Hkv * m_tiles, B), dim3(ks.threads), ks.smem, p);
      launch(ks.combine, dim3(Hq, B), dim3(qm::cfg::kCombineThreads), 0, p);
    });
    const double bytes = double(B) * L * Hkv * D * 2 * 2;
    printf("TIME build=%s kernel=%s dt=%s D=%d B=%d Hq=%d Hkv=%d Lk=%d split=%d tile=%dx%dw%d ms=%.4f KV_GBps=%.0f device=\"%s\"\n",
           QM_BUILD_NAME, ks.name.c_str(), dt_name(ks.dtype), D, B, Hq, Hkv, L, split, ks.bm, ks.bn, ks.threads / 32, ms,
           bytes / ms * 1e-6, prop.name);
    fflush(stdout);
  }
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s check|time|ref-only [options]\n", argv[0]);
    return 2;
  }
  {
    std::string a0 = argv[0];
    a0 = a0.substr(a0.find_last_of('/') + 1);
    g_build = a0.rfind("kc_", 0) == 0 ? a0.substr(3) : a0;
  }
  std::string mode = argv[1];
  if (mode == "ref-only") { g_ref_only = true; mode = "check"; }
  if (!g_ref_only) {
    int n = 0;
    CK(cudaGetDeviceCount(&n));
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("DEVICE build=%s name=\"%s\" cc=%d.%d sms=%d smem_optin=%zu\n", QM_BUILD_NAME, prop.name, prop.major, prop.minor,
           prop.multiProcessorCount, prop.sharedMemPerBlockOptin);
  }
  if (mode == "check") do_check(argc, argv);
  else if (mode == "time") do_time(argc, argv);
  else { fprintf(stderr, "unknown mode %s\n", mode.c_str()); return 2; }
  return 0;
}
