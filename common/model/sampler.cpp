#include "common/model/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace dsv3 {

int64_t Sampler::Sample(const float* logits, int64_t n) {
  if (p_.temperature <= 0.0f) return std::max_element(logits, logits + n) - logits;
  std::vector<int64_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  int64_t keep = p_.top_k > 0 ? std::min(p_.top_k, n) : n;
  std::partial_sort(idx.begin(), idx.begin() + keep, idx.end(),
                    [&](int64_t a, int64_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  idx.resize(static_cast<size_t>(keep));
  const double mx = logits[idx[0]];
  std::vector<double> prob(idx.size());
  double sum = 0;
  for (size_t i = 0; i < idx.size(); ++i) sum += prob[i] = std::exp((logits[idx[i]] - mx) / p_.temperature);
  // Nucleus: the smallest prefix whose mass reaches top_p.
  double acc = 0;
  size_t cut = idx.size();
  for (size_t i = 0; i < idx.size(); ++i) {
    acc += prob[i] / sum;
    if (acc >= p_.top_p) {
      cut = i + 1;
      break;
    }
  }
  double total = 0;
  for (size_t i = 0; i < cut; ++i) total += prob[i];
  double r = std::uniform_real_distribution<double>(0.0, total)(rng_);
  for (size_t i = 0; i < cut; ++i) {
    r -= prob[i];
    if (r <= 0) return idx[i];
  }
  return idx[cut - 1];
}

std::vector<TokenLogprob> TopLogprobs(const float* logits, int64_t n, int64_t k, double* logprob_of, int64_t id_of) {
  double mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, static_cast<double>(logits[i]));
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::exp(logits[i] - mx);
  const double lse = mx + std::log(s);
  if (logprob_of && id_of >= 0 && id_of < n) *logprob_of = logits[id_of] - lse;
  k = std::min(k, n);
  std::vector<int64_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&](int64_t a, int64_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  std::vector<TokenLogprob> out;
  for (int64_t i = 0; i < k; ++i) out.push_back({idx[i], logits[idx[i]] - lse});
  return out;
}

}  // namespace dsv3
