#include "common/model/expert_executor.h"

#include <algorithm>
#include <vector>

namespace dsv3 {

void RunMlp(kernels::Backend& backend, const MlpWeights& w, const float* x, int64_t m, float* out) {
  const int64_t inter = w.gate.rows;
  std::vector<float> g(static_cast<size_t>(m * inter)), u(static_cast<size_t>(m * inter));
  backend.Linear(x, m, w.gate, g.data());
  backend.Linear(x, m, w.up, u.data());
  backend.SiluMul(g.data(), u.data(), m * inter, g.data());
  backend.Linear(g.data(), m, w.down, out);
}

Status ComputeRoutedExperts(kernels::Backend& backend, const MoeWeights& moe, int64_t hidden, const float* x,
                            int64_t T, int64_t K, const int32_t* ids, const float* weights, float* out) {
  const int64_t n_experts = static_cast<int64_t>(moe.experts.size());
  // Group (token, slot) pairs by expert.
  std::vector<std::vector<int64_t>> slots(static_cast<size_t>(n_experts));
  for (int64_t i = 0; i < T * K; ++i) {
    const int32_t e = ids[i];
    if (e == -1) continue;
    if (e < 0 || e >= n_experts || !moe.hosted[e]) {
      return InvalidArgument("experts", StrCat("expert ", e, " is not hosted here"));
    }
    slots[e].push_back(i);
  }
  std::vector<int32_t> active;
  for (int32_t e = 0; e < n_experts; ++e) {
    if (!slots[e].empty()) active.push_back(e);
  }
  // Per (token, slot) expert output; summed below in expert-id order.
  std::vector<float> partial(static_cast<size_t>(T * K * hidden));
  backend.ParallelFor(static_cast<int64_t>(active.size()), [&](int64_t ai) {
    const int32_t e = active[ai];
    const auto& s = slots[e];
    const int64_t m = static_cast<int64_t>(s.size());
    std::vector<float> xin(static_cast<size_t>(m * hidden)), y(static_cast<size_t>(m * hidden));
    for (int64_t j = 0; j < m; ++j) std::copy_n(x + (s[j] / K) * hidden, hidden, xin.data() + j * hidden);
    RunMlp(backend, moe.experts[e], xin.data(), m, y.data());
    for (int64_t j = 0; j < m; ++j) std::copy_n(y.data() + j * hidden, hidden, partial.data() + s[j] * hidden);
  });
  std::vector<int32_t> ord(static_cast<size_t>(K));
  for (int64_t t = 0; t < T; ++t) {
    float* o = out + t * hidden;
    std::fill_n(o, hidden, 0.0f);
    for (int64_t k = 0; k < K; ++k) ord[k] = static_cast<int32_t>(k);
    std::sort(ord.begin(), ord.end(), [&](int32_t a, int32_t b) { return ids[t * K + a] < ids[t * K + b]; });
    for (int32_t k : ord) {
      if (ids[t * K + k] == -1) continue;
      const float w = weights[t * K + k];
      const float* p = partial.data() + (t * K + k) * hidden;
      for (int64_t d = 0; d < hidden; ++d) o[d] += p[d] * w;
    }
  }
  return absl::OkStatus();
}

Status LocalExpertExecutor::Dispatch(int64_t layer, const float* x, const RoutingResult& r) {
  if (layer < 0 || layer >= static_cast<int64_t>(weights_.layers.size()) || !weights_.layers[layer].moe) {
    status_ = InvalidArgument("experts", StrCat("layer ", layer, " is not an MoE layer"));
    return status_;
  }
  result_.resize(static_cast<size_t>(r.tokens * cfg_.hidden_size));
  status_ = ComputeRoutedExperts(backend_, *weights_.layers[layer].moe, cfg_.hidden_size, x, r.tokens, r.k,
                                 r.experts.data(), r.weights.data(), result_.data());
  return status_;
}

Status LocalExpertExecutor::Combine(float* out) {
  if (!status_.ok()) return status_;
  std::copy(result_.begin(), result_.end(), out);
  return absl::OkStatus();
}

}  // namespace dsv3
