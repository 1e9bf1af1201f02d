// Attention for decode steps whose batch entries hold different numbers of keys.
//
// Contract (checked in ragged_attention below):
//   q       [B, H, M, D]  the M queries of each (batch entry, kv head)
//   k, v    [B, H, C, D]  keys and values, innermost dimension contiguous; C is a capacity
//   lengths [B] int64     entry b attends to its first lengths[b] columns only
//   prior   optional (out [B, H, M, D] in q's dtype, lse [B, H, M] float32): attention over
//           other keys, which this call continues (its softmax state is exactly max = lse,
//           sum = 1, acc = out), so the result is the attention over both sets of keys
// returns
//   out     [B, H, M, D]  in q's dtype: softmax(q k^T * scale) v over those columns
//   lse     [B, H, M]     float32 log-sum-exp of the scaled scores (-inf, and out 0, where an
//                         entry has no columns), so that parts attended apart merge exactly
//
// Why it exists: ATen's fused CPU kernel reads every column of the buffer it is given (a mask
// only zeroes weights), and a decode batch's rows differ widely in length. This kernel reads
// each entry's keys and values up to its own length, once, in blocks of kBlock columns with the
// online softmax (a running max and sum per query), accumulating in float32 whatever the
// storage dtype. Work is handed out an (entry, head) at a time from a shared counter, so long
// and short entries balance across threads.
#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <optional>
#include <vector>

namespace {

using Vec = at::vec::Vectorized<float>;
constexpr int64_t kBlock = 32;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

inline float hsum(const Vec& a) {
#if defined(CPU_CAPABILITY_AVX512)
  return _mm512_reduce_add_ps(a);
#else
  return at::vec::vec_reduce_all<float>([](Vec& x, Vec& y) { return x + y; }, a);
#endif
}

// A row of n values as float32: float rows are read in place, others converted into scratch.
inline const float* as_float(const float* src, float*, int64_t) { return src; }

inline const float* as_float(const c10::BFloat16* src, float* scratch, int64_t n) {
  using BVec = at::vec::Vectorized<c10::BFloat16>;
  int64_t i = 0;
  for (; i + BVec::size() <= n; i += BVec::size()) {
    auto [lo, hi] = at::vec::convert_to_float<c10::BFloat16>(BVec::loadu(src + i));
    lo.store(scratch + i);
    hi.store(scratch + i + Vec::size());
  }
  for (; i < n; ++i) scratch[i] = static_cast<float>(src[i]);
  return scratch;
}

// acc = acc * rescale + sum_j weights[j] * values[j], over D dimensions.
inline void accumulate(float* acc, float rescale, const float* weights,
                       const float* const* values, int64_t nb, int64_t D) {
  const int64_t W = Vec::size();
  int64_t d = 0;
  for (; d + W <= D; d += W) {
    Vec a = Vec::loadu(acc + d) * Vec(rescale);
    for (int64_t j = 0; j < nb; ++j) a = at::vec::fmadd(Vec(weights[j]), Vec::loadu(values[j] + d), a);
    a.store(acc + d);
  }
  for (; d < D; ++d) {
    float a = acc[d] * rescale;
    for (int64_t j = 0; j < nb; ++j) a += weights[j] * values[j][d];
    acc[d] = a;
  }
}

inline float dot(const float* a, const float* b, int64_t D) {
  constexpr int64_t W = Vec::size();
  Vec sum(0.f);
  int64_t d = 0;
  for (; d + W <= D; d += W) sum = at::vec::fmadd(Vec::loadu(a + d), Vec::loadu(b + d), sum);
  float total = hsum(sum);
  for (; d < D; ++d) total += a[d] * b[d];
  return total;
}

// One block of columns for every query: scores, then the online-softmax update of each query's
// running max, sum and unnormalised output.
void attend_block(const float* q, const float* const* keys, const float* const* values,
                  int64_t nb, int64_t M, int64_t D, float* scores, float* max, float* sum,
                  float* acc) {
  constexpr int64_t W = Vec::size();
  for (int64_t m = 0; m < M; ++m) {
    float* s = scores + m * kBlock;
    float block_max = kNegInf;
    for (int64_t j = 0; j < nb; ++j) block_max = std::max(block_max, s[j] = dot(q + m * D, keys[j], D));
    const float new_max = std::max(max[m], block_max);
    const float rescale = std::exp(max[m] - new_max);  // 0 on the first block (max = -inf)
    float block_sum = 0.f;
    int64_t j = 0;
    for (; j + W <= nb; j += W) {
      Vec e = (Vec::loadu(s + j) - Vec(new_max)).exp_u20();
      e.store(s + j);
      block_sum += hsum(e);
    }
    for (; j < nb; ++j) block_sum += (s[j] = std::exp(s[j] - new_max));
    sum[m] = sum[m] * rescale + block_sum;
    max[m] = new_max;
    accumulate(acc + m * D, rescale, s, values, nb, D);
  }
}

template <typename T>
struct Prior {
  const T* out = nullptr;  // null: no prior, the softmax starts empty
  const float* lse = nullptr;
};

template <typename T>
void run(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& lengths,
         float scale, Prior<T> prior, at::Tensor& out, at::Tensor& lse) {
  const int64_t B = q.size(0), H = q.size(1), M = q.size(2), D = q.size(3), C = k.size(2);
  const T* qp = q.data_ptr<T>();
  const T* kp = k.data_ptr<T>();
  const T* vp = v.data_ptr<T>();
  const int64_t* lp = lengths.data_ptr<int64_t>();
  T* op = out.data_ptr<T>();
  float* lp_out = lse.data_ptr<float>();
  const int64_t ks[3] = {k.stride(0), k.stride(1), k.stride(2)};
  const int64_t vs[3] = {v.stride(0), v.stride(1), v.stride(2)};
  std::atomic<int64_t> next{0};
  const int64_t tasks = B * H;
  at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t, int64_t) {
    std::vector<float> qf(M * D), acc(M * D), kf(kBlock * D), vf(kBlock * D);
    std::vector<float> scores(M * kBlock);
    std::vector<float> max(M), sum(M);
    std::vector<const float*> keys(kBlock), values(kBlock);
    for (int64_t task = next++; task < tasks; task = next++) {
      const int64_t b = task / H, h = task % H;
      const int64_t n = std::clamp<int64_t>(lp[b], 0, C);
      const float* qrow = as_float(qp + task * M * D, qf.data(), M * D);
      for (int64_t i = 0; i < M * D; ++i) qf[i] = qrow[i] * scale;
      for (int64_t m = 0; m < M; ++m) {  // the softmax state: empty, or the prior's
        const float seen = prior.out ? prior.lse[task * M + m] : kNegInf;
        float* am = acc.data() + m * D;
        if (std::isfinite(seen)) {
          max[m] = seen, sum[m] = 1.f;
          const float* from = as_float(prior.out + (task * M + m) * D, am, D);
          if (from != am) std::copy(from, from + D, am);
        } else {
          max[m] = kNegInf, sum[m] = 0.f;
          std::fill(am, am + D, 0.f);
        }
      }
      const T* kb = kp + b * ks[0] + h * ks[1];
      const T* vb = vp + b * vs[0] + h * vs[1];
      for (int64_t start = 0; start < n; start += kBlock) {
        const int64_t nb = std::min(kBlock, n - start);
        for (int64_t j = 0; j < nb; ++j) {
          keys[j] = as_float(kb + (start + j) * ks[2], kf.data() + j * D, D);
          values[j] = as_float(vb + (start + j) * vs[2], vf.data() + j * D, D);
        }
        attend_block(qf.data(), keys.data(), values.data(), nb, M, D, scores.data(),
                     max.data(), sum.data(), acc.data());
      }
      for (int64_t m = 0; m < M; ++m) {
        const float inv = sum[m] > 0.f ? 1.f / sum[m] : 0.f;
        T* o = op + (task * M + m) * D;
        for (int64_t d = 0; d < D; ++d) o[d] = static_cast<T>(acc[m * D + d] * inv);
        lp_out[task * M + m] = sum[m] > 0.f ? max[m] + std::log(sum[m]) : kNegInf;
      }
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> ragged_attention(const at::Tensor& q, const at::Tensor& k,
                                                    const at::Tensor& v,
                                                    const at::Tensor& lengths, double scale,
                                                    std::optional<at::Tensor> prior_out,
                                                    std::optional<at::Tensor> prior_lse) {
  TORCH_CHECK(q.device().is_cpu() && k.device().is_cpu() && v.device().is_cpu(),
              "ragged_attention runs on CPU tensors");
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "q, k, v must be 4-d");
  TORCH_CHECK(k.sizes() == v.sizes(), "k and v must have one shape");
  TORCH_CHECK(q.size(0) == k.size(0) && q.size(1) == k.size(1) && q.size(3) == k.size(3),
              "q [B, H, M, D] and k [B, H, C, D] disagree");
  TORCH_CHECK(q.scalar_type() == k.scalar_type() && k.scalar_type() == v.scalar_type(),
              "q, k, v must share a dtype");
  TORCH_CHECK(k.stride(3) == 1 && v.stride(3) == 1, "k and v need a contiguous last dimension");
  TORCH_CHECK(lengths.dim() == 1 && lengths.size(0) == q.size(0) &&
                  lengths.scalar_type() == at::kLong,
              "lengths must be int64 [B]");
  TORCH_CHECK(prior_out.has_value() == prior_lse.has_value(), "a prior needs out and lse");
  if (prior_out) {
    TORCH_CHECK(prior_out->sizes() == q.sizes() && prior_out->scalar_type() == q.scalar_type(),
                "prior out must be shaped and typed as q");
    TORCH_CHECK(prior_lse->sizes() == q.sizes().slice(0, 3) &&
                    prior_lse->scalar_type() == at::kFloat,
                "prior lse must be float32 [B, H, M]");
    prior_out = prior_out->contiguous();
    prior_lse = prior_lse->contiguous();
  }
  auto qc = q.contiguous();
  auto lc = lengths.contiguous();
  auto out = at::empty_like(qc);
  auto lse = at::empty({q.size(0), q.size(1), q.size(2)}, q.options().dtype(at::kFloat));
  if (q.scalar_type() == at::kFloat) {
    Prior<float> prior;
    if (prior_out) prior = {prior_out->data_ptr<float>(), prior_lse->data_ptr<float>()};
    run<float>(qc, k, v, lc, static_cast<float>(scale), prior, out, lse);
  } else {
    TORCH_CHECK(q.scalar_type() == at::kBFloat16, "ragged_attention takes float32 or bfloat16");
    Prior<c10::BFloat16> prior;
    if (prior_out) prior = {prior_out->data_ptr<c10::BFloat16>(), prior_lse->data_ptr<float>()};
    run<c10::BFloat16>(qc, k, v, lc, static_cast<float>(scale), prior, out, lse);
  }
  return {out, lse};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("ragged_attention", &ragged_attention,
        "Attention over each batch entry's first lengths[b] keys, continuing a prior's when "
        "given: (out, log-sum-exp)",
        pybind11::arg("q"), pybind11::arg("k"), pybind11::arg("v"), pybind11::arg("lengths"),
        pybind11::arg("scale"), pybind11::arg("prior_out") = pybind11::none(),
        pybind11::arg("prior_lse") = pybind11::none());
}
