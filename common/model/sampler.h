// Token sampling for the offline generator: greedy, or temperature with top-k / top-p
// from a seeded generator (same seed, same tokens). The serving sampler (penalties,
// logit_bias, min_p, per-request seeds in a batch) is the attention-worker issue's.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace dsv3 {

struct SamplingParams {
  float temperature = 0.0f;  // 0: greedy
  float top_p = 1.0f;
  int64_t top_k = 0;  // 0: off
  uint64_t seed = 0;
};

struct TokenLogprob {
  int64_t id;
  double logprob;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p) : p_(p), rng_(p.seed) {}
  int64_t Sample(const float* logits, int64_t n);

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
};

// log-softmax in float64 over all n logits; the k best as (id, logprob), best first.
std::vector<TokenLogprob> TopLogprobs(const float* logits, int64_t n, int64_t k, double* logprob_of = nullptr,
                                      int64_t id_of = -1);

}  // namespace dsv3
