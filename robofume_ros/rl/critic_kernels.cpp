// Fused CPU kernels for StackedQ's hand-written forward and backward (networks._StackedMLP).
//
// The critic evaluates B states x N actions (7,936 rows at batch 256 with Cal-QL's 31 actions per
// state). Its large matmuls run in oneDNN; what is left are passes over (M, H) activations that
// PyTorch runs as separate ops (broadcast, add, ReLU, cast, mask, column sums), each reading and
// writing the whole array. Each kernel below does one such group in a single pass over the rows,
// in fp32 arithmetic, for fp32 or bf16 storage:
//   first_layer_fwd   h1 = relu(hz[row / N] + a @ W_a)                  (broadcast + addmm_ + relu_)
//   out_fwd           q = h @ w_out + b_out in fp32                      (h.float() + addmv)
//   out_bwd           dh = g w_out^T * (h > 0); dw_out = h^T g; db = sum(dh)   (outer + mask + 2 sums)
//   first_layer_bwd   dh1 *= (h1 > 0) in place; dhz = per-state sum of dh1; dW_a = a^T dh1
// and flush_denormal_all_threads (FTZ/DAZ for the whole intra-op thread pool).
// Rows are split over the intra-op threads (at::parallel_for); column sums are accumulated per
// thread and added at the end. Loaded by robofume_ros/rl/native.py (torch.utils.cpp_extension).
#include <torch/extension.h>
#include <ATen/Parallel.h>
#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

inline float to_f(float x) { return x; }
inline float to_f(c10::BFloat16 x) {
  uint32_t u = static_cast<uint32_t>(x.x) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
template <typename T> inline T from_f(float f);
template <> inline float from_f<float>(float f) { return f; }
template <> inline c10::BFloat16 from_f<c10::BFloat16>(float f) {
  // round to nearest even, NaN kept NaN (as c10's own conversion)
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint32_t r = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  c10::BFloat16 b;
  b.x = static_cast<uint16_t>(std::isnan(f) ? 0x7FC0u : r);
  return b;
}

void check_cpu_contig(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

// Rows [0, rows) split into one contiguous block per thread; fn(block, begin, end).
template <typename F> void for_blocks(int64_t rows, F fn) {
  const int64_t nb = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), rows));
  at::parallel_for(0, nb, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) fn(b, rows * b / nb, rows * (b + 1) / nb);
  });
}
int64_t n_blocks(int64_t rows) { return std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), rows)); }

// fp32 or bf16 storage only (the two dtypes the critic runs in)
template <typename F> void dispatch(at::ScalarType t, const char* name, F fn) {
  if (t == at::kFloat) {
    fn(float{});
  } else if (t == at::kBFloat16) {
    fn(c10::BFloat16{});
  } else {
    TORCH_CHECK(false, name, ": float32 or bfloat16 tensors expected, got ", t);
  }
}

// ---- 16-lane fp32 vectors over fp32 or bf16 storage (AVX-512; a scalar build elsewhere) ----
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>
constexpr int64_t W = 16;
using vec = __m512;
using vmask = __mmask16;
inline vmask tail_mask(int64_t n) { return n >= W ? vmask(0xFFFF) : vmask((1u << n) - 1u); }
inline vec vload(const float* p, vmask k) { return _mm512_maskz_loadu_ps(k, p); }
inline vec vload(const c10::BFloat16* p, vmask k) {
  __m256i h = _mm256_maskz_loadu_epi16(k, p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
inline void vstore(float* p, vec v, vmask k) { _mm512_mask_storeu_ps(p, k, v); }
inline void vstore(c10::BFloat16* p, vec v, vmask k) {
#if defined(__AVX512BF16__)
  __m256i r = (__m256i)_mm512_cvtneps_pbh(v);   // round to nearest even, NaN stays NaN
#else
  __m512i u = _mm512_castps_si512(v);
  __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r32 = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF))), 16);
  r32 = _mm512_mask_mov_epi32(r32, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_set1_epi32(0x7FC0));
  __m256i r = _mm512_cvtepi32_epi16(r32);
#endif
  _mm256_mask_storeu_epi16(p, k, r);
}
inline vec vset(float x) { return _mm512_set1_ps(x); }
inline vec vzero() { return _mm512_setzero_ps(); }
inline vec vfma(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
inline vec vadd(vec a, vec b) { return _mm512_add_ps(a, b); }
inline vec vmul(vec a, vec b) { return _mm512_mul_ps(a, b); }
// ReLU mask as threshold_backward applies it: kept unless a <= 0 (a NaN activation keeps its gradient)
inline vmask vpos(vec a) { return _mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_NLE_UQ); }
inline vec vkeep(vmask k, vec a) { return _mm512_maskz_mov_ps(k, a); }   // a where k, else 0
inline vec vrelu(vec a) { return _mm512_max_ps(_mm512_setzero_ps(), a); }   // NaN stays NaN, as torch.relu
inline float vsum(vec a) { return _mm512_reduce_add_ps(a); }
#else
constexpr int64_t W = 1;
using vec = float;
using vmask = bool;
inline vmask tail_mask(int64_t n) { return n > 0; }
template <typename T> inline vec vload(const T* p, vmask) { return to_f(*p); }
template <typename T> inline void vstore(T* p, vec v, vmask) { *p = from_f<T>(v); }
inline vec vset(float x) { return x; }
inline vec vzero() { return 0.f; }
inline vec vfma(vec a, vec b, vec c) { return a * b + c; }
inline vec vadd(vec a, vec b) { return a + b; }
inline vec vmul(vec a, vec b) { return a * b; }
inline vmask vpos(vec a) { return !(a <= 0.f); }
inline vec vkeep(vmask k, vec a) { return k ? a : 0.f; }
inline vec vrelu(vec a) { return a < 0.f ? 0.f : a; }
inline float vsum(vec a) { return a; }
#endif

constexpr int64_t MAX_A = 16;   // action dims whose W_a rows (or dW_a sums) are held in registers

template <typename T>
void first_layer_fwd_impl(const T* hz, const T* a, const float* wa, T* out, int64_t B, int64_t N, int64_t A, int64_t H) {
  // per 16-column chunk: W_a's chunk in registers, then every row of a few states (they stay in L2)
  const int64_t tile = std::max<int64_t>(1, 256 / N);
  for_blocks(B, [&](int64_t, int64_t s0, int64_t s1) {
    for (int64_t t0 = s0; t0 < s1; t0 += tile) {
      const int64_t t1 = std::min(s1, t0 + tile);
      for (int64_t j = 0; j < H; j += W) {
        const vmask k = tail_mask(H - j);
        vec w[MAX_A];
        for (int64_t c = 0; c < A; ++c) w[c] = vload(wa + c * H + j, k);
        for (int64_t s = t0; s < t1; ++s) {
          const vec hv = vload(hz + s * H + j, k);
          for (int64_t m = s * N; m < (s + 1) * N; ++m) {
            const T* am = a + m * A;
            vec acc = hv;
            for (int64_t c = 0; c < A; ++c) acc = vfma(vset(to_f(am[c])), w[c], acc);
            vstore(out + m * H + j, vrelu(acc), k);
          }
        }
      }
    }
  });
}

template <typename T>
void out_fwd_impl(const T* h, const float* w, float b, float* q, int64_t M, int64_t H) {
  for_blocks(M, [&](int64_t, int64_t r0, int64_t r1) {
    for (int64_t m = r0; m < r1; ++m) {
      const T* hr = h + m * H;
      vec s = vzero();
      for (int64_t j = 0; j < H; j += W) {
        const vmask k = tail_mask(H - j);
        s = vfma(vload(hr + j, k), vload(w + j, k), s);
      }
      q[m] = vsum(s) + b;
    }
  });
}

template <typename T>
void out_bwd_impl(const float* g, const float* w, const T* h, T* dh, float* dw, float* db, int64_t M, int64_t H) {
  const int64_t nb = n_blocks(M);
  std::vector<float> pw(nb * H, 0.f), pb(nb * H, 0.f);
  for_blocks(M, [&](int64_t blk, int64_t r0, int64_t r1) {
    float* sw = pw.data() + blk * H;
    float* sb = pb.data() + blk * H;
    for (int64_t m = r0; m < r1; ++m) {
      const vec gm = vset(g[m]);
      const T* hr = h + m * H;
      T* d = dh + m * H;
      for (int64_t j = 0; j < H; j += W) {
        const vmask k = tail_mask(H - j);
        const vec hv = vload(hr + j, k);
        const vec v = vkeep(vpos(hv), vmul(gm, vload(w + j, k)));
        vstore(d + j, v, k);
        vstore(sw + j, vfma(gm, hv, vload(sw + j, k)), k);
        vstore(sb + j, vadd(v, vload(sb + j, k)), k);
      }
    }
  });
  for (int64_t j = 0; j < H; ++j) {
    float s = 0.f, t = 0.f;
    for (int64_t blk = 0; blk < nb; ++blk) { s += pw[blk * H + j]; t += pb[blk * H + j]; }
    dw[j] = s;
    db[j] = t;
  }
}

template <typename T>
void first_layer_bwd_impl(T* dh, const T* h, const T* a, float* dhz, float* dwa, int64_t B, int64_t N, int64_t A,
                          int64_t H, bool want_wa) {
  TORCH_CHECK(!want_wa || A <= MAX_A, "first_layer_bwd: at most ", MAX_A, " action dims for dW_a");
  const int64_t nb = n_blocks(B);
  std::vector<float> pa(want_wa ? nb * A * H : 0, 0.f);
  // blocks of whole states per thread (dhz rows are private); within a block, tiles of a few
  // states (their rows stay in L2) are swept once per 16-column chunk with the chunk's dhz and
  // dW_a sums held in registers
  const int64_t tile = std::max<int64_t>(1, 256 / N);
  for_blocks(B, [&](int64_t blk, int64_t s0, int64_t s1) {
    float* sa = want_wa ? pa.data() + blk * A * H : nullptr;
    for (int64_t t0 = s0; t0 < s1; t0 += tile) {
      const int64_t t1 = std::min(s1, t0 + tile);
      for (int64_t j = 0; j < H; j += W) {
        const vmask k = tail_mask(H - j);
        vec acc[MAX_A];
        if (want_wa)
          for (int64_t c = 0; c < A; ++c) acc[c] = vload(sa + c * H + j, k);
        for (int64_t s = t0; s < t1; ++s) {
          vec zs = vzero();
          for (int64_t m = s * N; m < (s + 1) * N; ++m) {
            T* d = dh + m * H + j;
            const vec x = vkeep(vpos(vload(h + m * H + j, k)), vload(d, k));
            vstore(d, x, k);
            zs = vadd(zs, x);
            if (want_wa) {
              const T* am = a + m * A;
              for (int64_t c = 0; c < A; ++c) acc[c] = vfma(vset(to_f(am[c])), x, acc[c]);
            }
          }
          vstore(dhz + s * H + j, zs, k);
        }
        if (want_wa)
          for (int64_t c = 0; c < A; ++c) vstore(sa + c * H + j, acc[c], k);
      }
    }
  });
  if (want_wa) {
    for (int64_t i = 0; i < A * H; ++i) {
      float s = 0.f;
      for (int64_t blk = 0; blk < nb; ++blk) s += pa[blk * A * H + i];
      dwa[i] = s;
    }
  }
}

}  // namespace

// h1 (M,H) in hz's dtype; hz (B,H), a (M,A) same dtype; w_a (A,H) fp32; M = B*N
at::Tensor first_layer_fwd(const at::Tensor& hz, const at::Tensor& a, const at::Tensor& w_a) {
  check_cpu_contig(hz, "hz"); check_cpu_contig(a, "a"); check_cpu_contig(w_a, "w_a");
  TORCH_CHECK(a.scalar_type() == hz.scalar_type() && w_a.scalar_type() == at::kFloat, "dtypes");
  const int64_t B = hz.size(0), H = hz.size(1), M = a.size(0), A = a.size(1);
  TORCH_CHECK(M % B == 0 && w_a.size(0) == A && w_a.size(1) == H, "shapes");
  TORCH_CHECK(A <= MAX_A, "first_layer_fwd: at most ", MAX_A, " action dims");
  auto out = at::empty({M, H}, hz.options());
  dispatch(hz.scalar_type(), "first_layer_fwd", [&](auto tag) {
    using scalar_t = decltype(tag);
    first_layer_fwd_impl<scalar_t>(hz.data_ptr<scalar_t>(), a.data_ptr<scalar_t>(), w_a.data_ptr<float>(),
                                   out.data_ptr<scalar_t>(), B, M / B, A, H);
  });
  return out;
}

// q (M,) fp32 written into `out`; h (M,H); w (H,) fp32; b a float
void out_fwd(const at::Tensor& h, const at::Tensor& w, double b, at::Tensor& out) {
  check_cpu_contig(h, "h"); check_cpu_contig(w, "w"); check_cpu_contig(out, "out");
  TORCH_CHECK(w.scalar_type() == at::kFloat && out.scalar_type() == at::kFloat, "dtypes");
  const int64_t M = h.size(0), H = h.size(1);
  TORCH_CHECK(w.numel() == H && out.numel() == M, "shapes");
  dispatch(h.scalar_type(), "out_fwd", [&](auto tag) {
    using scalar_t = decltype(tag);
    out_fwd_impl<scalar_t>(h.data_ptr<scalar_t>(), w.data_ptr<float>(), static_cast<float>(b),
                           out.data_ptr<float>(), M, H);
  });
}

// returns (dh (M,H) in h's dtype, dw_out (H,) fp32, db (H,) fp32); g (M,) fp32, w (H,) fp32
std::vector<at::Tensor> out_bwd(const at::Tensor& g, const at::Tensor& w, const at::Tensor& h) {
  check_cpu_contig(g, "g"); check_cpu_contig(w, "w"); check_cpu_contig(h, "h");
  TORCH_CHECK(g.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat, "dtypes");
  const int64_t M = h.size(0), H = h.size(1);
  TORCH_CHECK(g.numel() == M && w.numel() == H, "shapes");
  auto dh = at::empty({M, H}, h.options());
  auto dw = at::empty({H}, w.options());
  auto db = at::empty({H}, w.options());
  dispatch(h.scalar_type(), "out_bwd", [&](auto tag) {
    using scalar_t = decltype(tag);
    out_bwd_impl<scalar_t>(g.data_ptr<float>(), w.data_ptr<float>(), h.data_ptr<scalar_t>(), dh.data_ptr<scalar_t>(),
                           dw.data_ptr<float>(), db.data_ptr<float>(), M, H);
  });
  return {dh, dw, db};
}

// dh (M,H) masked in place by h > 0; returns (dhz (B,H) fp32, dW_a (A,H) fp32 or an empty tensor)
std::vector<at::Tensor> first_layer_bwd(at::Tensor& dh, const at::Tensor& h, const at::Tensor& a, int64_t B,
                                        bool want_wa) {
  check_cpu_contig(dh, "dh"); check_cpu_contig(h, "h"); check_cpu_contig(a, "a");
  TORCH_CHECK(dh.scalar_type() == h.scalar_type() && a.scalar_type() == h.scalar_type(), "dtypes");
  const int64_t M = h.size(0), H = h.size(1), A = a.size(1);
  TORCH_CHECK(dh.sizes() == h.sizes() && a.size(0) == M && M % B == 0, "shapes");
  auto opt = h.options().dtype(at::kFloat);
  auto dhz = at::empty({B, H}, opt);
  auto dwa = want_wa ? at::empty({A, H}, opt) : at::empty({0}, opt);
  dispatch(h.scalar_type(), "first_layer_bwd", [&](auto tag) {
    using scalar_t = decltype(tag);
    first_layer_bwd_impl<scalar_t>(dh.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(), a.data_ptr<scalar_t>(),
                                   dhz.data_ptr<float>(), want_wa ? dwa.data_ptr<float>() : nullptr, B, M / B, A, H,
                                   want_wa);
  });
  return {dhz, dwa};
}

// Flush-to-zero / denormals-are-zero on the calling thread and on every thread of its intra-op
// team (torch.set_flush_denormal reaches the calling thread only). Tiny softmax weights of the CQL
// logsumexp (exp of -90 and below) reach the critic's fp32 gradients as denormals, and fp32
// matmuls over them run an order of magnitude slower; flushed, they count as zero. The learner
// turns it on around its gradient steps and back off after (rl/common.denormals_flushed), so
// other code in the process keeps IEEE denormals. Returns the calling thread's previous setting
// (0 off, 1 on), or -1 where this CPU has no such mode (nothing is changed).
int64_t flush_denormal_all_threads(bool on) {
#if defined(__SSE2__)
  const int64_t prev = (_mm_getcsr() & 0x8040u) == 0x8040u ? 1 : 0;
  if (!at::globalContext().setFlushDenormal(on)) return -1;
  at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) at::globalContext().setFlushDenormal(on);
  });
  return prev;
#else
  (void)on;
  return -1;
#endif
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("vector_width", [] { return W; }, "fp32 lanes per vector op (16: AVX-512; 1: the scalar build)");
  m.def("flush_denormal_all_threads", &flush_denormal_all_threads, "FTZ/DAZ on this thread and its intra-op team; returns the previous setting (-1: unsupported)");
  m.def("first_layer_fwd", &first_layer_fwd, "relu(hz[row // N] + a @ w_a)");
  m.def("out_fwd", &out_fwd, "q = h @ w + b in fp32, into out");
  m.def("out_bwd", &out_bwd, "(g w^T * (h > 0), h^T g, column sums)");
  m.def("first_layer_bwd", &first_layer_bwd, "dh *= (h > 0) in place; (per-state sums, a^T dh)");
}
