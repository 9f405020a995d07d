#include "common/sampling/raw_logprobs.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

namespace dsv3 {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Max of n floats; NaN never wins.
double MaxOf(const float* x, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

}  // namespace

SampledToken RawLogprobs(const float* logits, int64_t V, int64_t chosen, int64_t top_k) {
  SampledToken out;
  out.id = chosen;
  const double mx = MaxOf(logits, V);  // NaN never wins
  auto value = [&](int64_t i) {
    const double l = logits[i];
    return std::isnan(l) ? -kInf : l;
  };
  // log_softmax(l) = l - lse. A row whose max is not finite is taken as a uniform point mass
  // on the tokens holding the max.
  const bool degenerate = !std::isfinite(mx);
  double lse;
  if (!degenerate) {
    double sum = 0;
    for (int64_t i = 0; i < V; ++i) sum += std::exp(value(i) - mx);
    lse = mx + std::log(sum);
  } else {
    int64_t count = 0;
    for (int64_t i = 0; i < V; ++i) count += value(i) == mx;
    lse = std::log(static_cast<double>(std::max<int64_t>(count, 1)));
  }
  auto logprob = [&](int64_t i) {
    const double l = value(i);
    if (!degenerate) return l - lse;
    return l == mx ? -lse : -kInf;
  };
  out.logprob = logprob(chosen);

  const int64_t k = std::min<int64_t>(top_k, V);
  if (k <= 0) return out;
  // One pass keeping the k best (logit desc, id asc) in a small sorted array.
  std::vector<std::pair<double, int64_t>> best;
  best.reserve(static_cast<size_t>(k) + 1);
  for (int64_t i = 0; i < V; ++i) {
    const double l = value(i);
    if (static_cast<int64_t>(best.size()) == k && !(l > best.back().first)) continue;
    auto pos = std::find_if(best.begin(), best.end(), [l](const auto& e) { return l > e.first; });
    best.insert(pos, {l, i});
    if (static_cast<int64_t>(best.size()) > k) best.pop_back();
  }
  out.top.reserve(best.size());
  for (const auto& e : best) out.top.push_back({e.second, logprob(e.second)});
  return out;
}

}  // namespace dsv3
