#include "common/sampling/sequence_sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/sampling/sampling_config.h"

namespace dsv3 {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

SamplingConfig Greedy() {
  SamplingConfig c;
  c.temperature = 0.0f;
  return c;
}

SequenceSampler Make(const SamplingConfig& c, int64_t vocab, uint64_t seed = 1, uint64_t stream = 0,
                     const std::vector<int64_t>& prompt = {}) {
  EXPECT_TRUE(ValidateSamplingConfig(c, vocab).ok()) << ValidateSamplingConfig(c, vocab);
  return SequenceSampler(c, vocab, prompt, seed, stream);
}

std::vector<float> RandomLogits(int64_t n, uint64_t seed, float scale = 3.0f) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(g);
  return v;
}

int64_t Argmax(const std::vector<float>& l) {
  return std::max_element(l.begin(), l.end()) - l.begin();  // first max
}

std::vector<double> LogSoftmax(const std::vector<float>& l) {
  double mx = -kInf;
  for (float x : l) mx = std::max(mx, static_cast<double>(x));
  double s = 0;
  for (float x : l) s += std::exp(static_cast<double>(x) - mx);
  std::vector<double> out;
  for (float x : l) out.push_back(static_cast<double>(x) - mx - std::log(s));
  return out;
}

std::vector<double> Softmax(const std::vector<float>& l, double t) {
  std::vector<float> scaled;
  for (float x : l) scaled.push_back(static_cast<float>(x / t));
  std::vector<double> ls = LogSoftmax(scaled);
  for (double& x : ls) x = std::exp(x);
  return ls;
}

// Counts of n draws (Sample only; no Accept, so no penalty state changes).
std::vector<int64_t> Histogram(SequenceSampler& s, const std::vector<float>& logits, int n) {
  std::vector<int64_t> h(logits.size());
  for (int i = 0; i < n; ++i) ++h[static_cast<size_t>(s.Sample(logits.data()).id)];
  return h;
}

double ChiSquare(const std::vector<int64_t>& h, const std::vector<double>& p, int n) {
  double chi = 0;
  for (size_t i = 0; i < h.size(); ++i) {
    if (p[i] == 0) {
      EXPECT_EQ(h[i], 0) << "token " << i << " has probability 0";
      continue;
    }
    const double e = p[i] * n;
    chi += (h[i] - e) * (h[i] - e) / e;
  }
  return chi;
}

TEST(SequenceSampler, GreedyIsArgmax) {
  for (uint64_t seed = 0; seed < 20; ++seed) {
    auto l = RandomLogits(1000, seed);
    auto s = Make(Greedy(), 1000);
    EXPECT_EQ(s.Sample(l.data()).id, Argmax(l));
  }
}

TEST(SequenceSampler, GreedyTiesGoToLowestId) {
  std::vector<float> l = {0.0f, 5.0f, 1.0f, 5.0f, 5.0f};
  auto s = Make(Greedy(), 5);
  EXPECT_EQ(s.Sample(l.data()).id, 1);
  std::vector<float> all_equal(7, 0.25f);
  EXPECT_EQ(s.Sample(all_equal.data()).id, 0);
}

TEST(SequenceSampler, DoesNotModifyLogits) {
  SamplingConfig c;
  c.temperature = 0.8f;
  c.top_k = 50;
  c.top_p = 0.9f;
  c.min_p = 0.01f;
  c.repetition_penalty = 1.3f;
  c.frequency_penalty = 0.5f;
  c.presence_penalty = 0.5f;
  c.logit_bias = {{3, 10.0f}};
  c.top_logprobs = 5;
  auto l = RandomLogits(500, 7);
  const auto copy = l;
  auto s = Make(c, 500, 1, 0, {1, 2, 3});
  for (int i = 0; i < 20; ++i) s.Accept(s.Sample(l.data()).id);
  EXPECT_EQ(l, copy);
}

TEST(SequenceSampler, LogitBiasForcesAndBans) {
  auto l = RandomLogits(50, 3, 1.0f);
  const int64_t best = Argmax(l);
  const int64_t other = (best + 17) % 50;
  SamplingConfig c;
  c.logit_bias = {{other, 100.0f}};
  auto s = Make(c, 50, 11);
  for (int i = 0; i < 2000; ++i) ASSERT_EQ(s.Sample(l.data()).id, other);
  SamplingConfig g = Greedy();
  g.logit_bias = {{other, 100.0f}};
  EXPECT_EQ(Make(g, 50).Sample(l.data()).id, other);

  // Ban: -100 on the argmax and on a second token; neither is ever drawn.
  SamplingConfig ban;
  ban.logit_bias = {{best, -100.0f}, {other, -100.0f}};
  auto b = Make(ban, 50, 12);
  auto h = Histogram(b, l, 2000);
  EXPECT_EQ(h[static_cast<size_t>(best)], 0);
  EXPECT_EQ(h[static_cast<size_t>(other)], 0);
  SamplingConfig gban = Greedy();
  gban.logit_bias = {{best, -100.0f}};
  auto l2 = l;
  l2[static_cast<size_t>(best)] = -1e30f;
  EXPECT_EQ(Make(gban, 50).Sample(l.data()).id, Argmax(l2));
}

TEST(SequenceSampler, PresencePenaltyByHand) {
  // token 0: 2.0, generated once; token 1: 1.6. presence 0.5 -> 1.5 < 1.6: argmax 1.
  std::vector<float> l = {2.0f, 1.6f, 0.0f};
  SamplingConfig c = Greedy();
  c.presence_penalty = 0.5f;
  auto s = Make(c, 3);
  EXPECT_EQ(s.Sample(l.data()).id, 0);  // nothing generated yet
  s.Accept(0);
  EXPECT_EQ(s.Sample(l.data()).id, 1);
  // Presence does not grow with the count: 2 - 0.5 = 1.5 still beats 1.4.
  std::vector<float> l2 = {2.0f, 1.4f, 0.0f};
  s.Accept(0);
  s.Accept(0);
  EXPECT_EQ(s.Sample(l2.data()).id, 0);
  // Negative presence rewards: 1.0 + 0.5 beats 1.4.
  c.presence_penalty = -0.5f;
  auto r = Make(c, 3);
  std::vector<float> l3 = {1.0f, 1.4f, 0.0f};
  r.Accept(0);
  EXPECT_EQ(r.Sample(l3.data()).id, 0);
}

TEST(SequenceSampler, FrequencyPenaltyByHand) {
  // frequency 0.3: token 0 (3.0) generated 3 times -> 3.0 - 0.9 = 2.1; token 1 = 2.2 wins;
  // with 2 occurrences 3.0 - 0.6 = 2.4 still wins.
  std::vector<float> l = {3.0f, 2.2f, 0.0f, -1.0f};
  SamplingConfig c = Greedy();
  c.frequency_penalty = 0.3f;
  auto s = Make(c, 4);
  s.Accept(0);
  s.Accept(0);
  EXPECT_EQ(s.Sample(l.data()).id, 0);
  s.Accept(0);
  EXPECT_EQ(s.Sample(l.data()).id, 1);
  // Frequency and presence together: 3.0 - 0.3*1 - 0.5 = 2.2 vs 2.25.
  c.presence_penalty = 0.5f;
  auto t = Make(c, 4);
  t.Accept(0);
  std::vector<float> l2 = {3.0f, 2.25f, 0.0f, -1.0f};
  EXPECT_EQ(t.Sample(l2.data()).id, 1);
  std::vector<float> l3 = {3.0f, 2.15f, 0.0f, -1.0f};
  EXPECT_EQ(t.Sample(l3.data()).id, 0);
}

TEST(SequenceSampler, RepetitionPenaltyDividesPositiveMultipliesNegative) {
  SamplingConfig c = Greedy();
  c.repetition_penalty = 2.0f;
  // Positive: prompt token 0 with 3.0 -> 1.5 (applied once though it repeats in the prompt).
  {
    auto s = Make(c, 3, 1, 0, {0, 0, 0});
    std::vector<float> a = {3.0f, 1.49f, -5.0f};
    EXPECT_EQ(s.Sample(a.data()).id, 0);
    std::vector<float> b = {3.0f, 1.51f, -5.0f};
    EXPECT_EQ(s.Sample(b.data()).id, 1);
  }
  // Negative: prompt token 0 with -1.0 -> -2.0.
  {
    auto s = Make(c, 3, 1, 0, {0});
    std::vector<float> a = {-1.0f, -1.99f, -5.0f};
    EXPECT_EQ(s.Sample(a.data()).id, 1);
    std::vector<float> b = {-1.0f, -2.01f, -5.0f};
    EXPECT_EQ(s.Sample(b.data()).id, 0);
  }
  // Generated tokens are penalized too, once, whatever their count; tokens never seen are not.
  {
    auto s = Make(c, 3, 1, 0, {2});
    std::vector<float> a = {3.0f, 1.6f, -5.0f};
    EXPECT_EQ(s.Sample(a.data()).id, 0);
    s.Accept(0);
    s.Accept(0);
    EXPECT_EQ(s.Sample(a.data()).id, 1);  // 1.5 < 1.6
    std::vector<float> b = {3.0f, 1.4f, -5.0f};
    EXPECT_EQ(s.Sample(b.data()).id, 0);  // 1.5 > 1.4: not divided twice
  }
  // Penalty < 1 rewards prompt tokens.
  {
    SamplingConfig r = Greedy();
    r.repetition_penalty = 0.5f;
    auto s = Make(r, 3, 1, 0, {0});
    std::vector<float> a = {1.0f, 1.9f, -5.0f};
    EXPECT_EQ(s.Sample(a.data()).id, 0);  // 2.0 > 1.9
  }
}

TEST(SequenceSampler, BiasComesBeforeRepetitionPenalty) {
  // logit 1.0 + bias 1.0 = 2.0, then /2 = 1.0 (bias first) vs 1.0/2 + 1 = 1.5 (penalty first).
  SamplingConfig c = Greedy();
  c.repetition_penalty = 2.0f;
  c.logit_bias = {{0, 1.0f}};
  auto s = Make(c, 2, 1, 0, {0});
  std::vector<float> a = {1.0f, 1.2f};
  EXPECT_EQ(s.Sample(a.data()).id, 1);
}

TEST(SequenceSampler, TopK1IsGreedyAtAnyTemperature) {
  for (float t : {0.1f, 0.7f, 1.0f, 2.0f}) {
    SamplingConfig c;
    c.temperature = t;
    c.top_k = 1;
    auto s = Make(c, 2000, 5);
    for (uint64_t row = 0; row < 30; ++row) {
      auto l = RandomLogits(2000, row, 0.5f);
      ASSERT_EQ(s.Sample(l.data()).id, Argmax(l)) << "t=" << t;
    }
  }
  // Ties: the lowest id, as greedy.
  SamplingConfig c;
  c.top_k = 1;
  auto s = Make(c, 6, 9);
  std::vector<float> l = {0.0f, 2.0f, 1.0f, 2.0f, 2.0f, 0.0f};
  for (int i = 0; i < 50; ++i) ASSERT_EQ(s.Sample(l.data()).id, 1);
}

TEST(SequenceSampler, TinyTopPIsGreedy) {
  SamplingConfig c;
  c.temperature = 1.5f;
  c.top_p = 1e-6f;
  auto s = Make(c, 3000, 5);
  for (uint64_t row = 0; row < 30; ++row) {
    auto l = RandomLogits(3000, 100 + row, 0.2f);
    ASSERT_EQ(s.Sample(l.data()).id, Argmax(l));
  }
}

TEST(SequenceSampler, MinPFilters) {
  auto l = RandomLogits(40, 21, 1.5f);
  SamplingConfig c;
  c.min_p = 0.2f;
  auto s = Make(c, 40, 77);
  const auto p = Softmax(l, 1.0);
  const double pmax = *std::max_element(p.begin(), p.end());
  auto h = Histogram(s, l, 2000);
  int allowed = 0, seen = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] < 0.2 * pmax) {
      EXPECT_EQ(h[i], 0) << "token " << i << " p=" << p[i] << " below " << 0.2 * pmax;
    } else {
      ++allowed;
      seen += h[i] > 0;
    }
  }
  EXPECT_GT(allowed, 1);
  EXPECT_EQ(seen, allowed);
  // And the survivors follow the renormalized distribution.
  std::vector<double> q(p.size());
  double z = 0;
  for (size_t i = 0; i < p.size(); ++i) z += q[i] = p[i] >= 0.2 * pmax ? p[i] : 0;
  for (double& x : q) x /= z;
  EXPECT_LT(ChiSquare(h, q, 2000), 3.0 * allowed + 30);
}

TEST(SequenceSampler, TemperatureMatchesSoftmaxChiSquare) {
  const std::vector<float> l = {1.0f, 0.5f, -0.3f, 2.0f, 0.0f};
  for (float t : {0.7f, 1.0f, 1.6f}) {
    SamplingConfig c;
    c.temperature = t;
    auto s = Make(c, 5, 1234);
    const int n = 20000;
    auto h = Histogram(s, l, n);
    // 4 degrees of freedom: P(chi2 > 35) ~ 5e-7; the seed is fixed, so this is deterministic.
    EXPECT_LT(ChiSquare(h, Softmax(l, t), n), 35.0) << "t=" << t;
  }
}

TEST(SequenceSampler, TopKTopPDistribution) {
  // p = softmax(l): roughly [0.43, 0.26, 0.16, 0.096, 0.058] for l = [2, 1.5, 1, 0.5, 0].
  const std::vector<float> l = {0.5f, 2.0f, 0.0f, 1.0f, 1.5f};
  const auto p = Softmax(l, 1.0);
  const int n = 20000;
  {  // top_k = 3: tokens 1, 4, 3 renormalized.
    SamplingConfig c;
    c.top_k = 3;
    auto s = Make(c, 5, 99);
    auto h = Histogram(s, l, n);
    std::vector<double> q = {0, p[1], 0, p[3], p[4]};
    double z = q[1] + q[3] + q[4];
    for (double& x : q) x /= z;
    EXPECT_LT(ChiSquare(h, q, n), 35.0);
  }
  {  // top_p = 0.65: 0.43 + 0.26 = 0.69 >= 0.65 -> tokens 1, 4.
    SamplingConfig c;
    c.top_p = 0.65f;
    auto s = Make(c, 5, 98);
    auto h = Histogram(s, l, n);
    std::vector<double> q = {0, p[1] / (p[1] + p[4]), 0, 0, p[4] / (p[1] + p[4])};
    EXPECT_LT(ChiSquare(h, q, n), 35.0);
  }
  {  // top_k = 4, then top_p = 0.71 of the renormalized 4 ([0.455, 0.276, 0.167, 0.102]):
     // 0.455 + 0.276 = 0.731 -> tokens 1, 4 (the unrenormalized 0.689 would need a third).
    SamplingConfig c;
    c.top_k = 4;
    c.top_p = 0.71f;
    auto s = Make(c, 5, 97);
    auto h = Histogram(s, l, n);
    std::vector<double> q = {0, p[1] / (p[1] + p[4]), 0, 0, p[4] / (p[1] + p[4])};
    EXPECT_LT(ChiSquare(h, q, n), 35.0);
  }
}

// Top-p support on a full-size vocabulary, against a brute-force full sort.
TEST(SequenceSampler, TopPSupportLargeVocab) {
  const int64_t V = 129280;
  auto l = RandomLogits(V, 5, 2.5f);
  SamplingConfig c;
  c.top_p = 0.5f;
  c.temperature = 0.9f;
  const auto p = Softmax(l, 0.9);
  std::vector<int64_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
  std::set<int64_t> nucleus;
  double cum = 0;
  for (int64_t id : order) {
    nucleus.insert(id);
    cum += p[static_cast<size_t>(id)];
    if (cum >= 0.5) break;
  }
  ASSERT_GT(nucleus.size(), 64u) << "the test must exercise more than one selection block";
  auto s = Make(c, V, 3);
  std::set<int64_t> seen;
  for (int i = 0; i < 500; ++i) {
    const int64_t id = s.Sample(l.data()).id;
    ASSERT_TRUE(nucleus.count(id)) << id;
    seen.insert(id);
  }
  EXPECT_GT(seen.size(), 100u);
}

// The specification, written the slow and obvious way: dense counts, a full sort, every step
// over the whole vocabulary. Returns the token for uniform draw u.
int64_t ReferenceSample(const std::vector<float>& raw, const SamplingConfig& c, const std::vector<int64_t>& prompt,
                        const std::vector<int64_t>& generated, double u) {
  const int64_t V = static_cast<int64_t>(raw.size());
  std::vector<float> w = raw;
  for (auto& [id, b] : c.logit_bias) w[static_cast<size_t>(id)] += b;
  std::vector<int64_t> count(static_cast<size_t>(V), 0);
  std::vector<bool> seen(static_cast<size_t>(V), false);
  for (int64_t id : prompt) seen[static_cast<size_t>(id)] = true;
  for (int64_t id : generated) {
    ++count[static_cast<size_t>(id)];
    seen[static_cast<size_t>(id)] = true;
  }
  for (int64_t i = 0; i < V; ++i) {
    float& v = w[static_cast<size_t>(i)];
    if (c.repetition_penalty != 1.0f && seen[static_cast<size_t>(i)]) {
      v = v > 0 ? v / c.repetition_penalty : v * c.repetition_penalty;
    }
    if (count[static_cast<size_t>(i)] > 0) {
      v -= c.frequency_penalty * static_cast<float>(count[static_cast<size_t>(i)]);
      v -= c.presence_penalty;
    }
  }
  if (c.temperature < 1e-5f) return Argmax(w);
  const double m = *std::max_element(w.begin(), w.end());
  std::vector<double> p(static_cast<size_t>(V));
  for (int64_t i = 0; i < V; ++i) p[static_cast<size_t>(i)] = std::exp((w[static_cast<size_t>(i)] - m) / c.temperature);
  std::vector<int64_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return w[static_cast<size_t>(a)] > w[static_cast<size_t>(b)] || (w[static_cast<size_t>(a)] == w[static_cast<size_t>(b)] && a < b);
  });
  size_t n = c.top_k > 0 && c.top_k < V ? static_cast<size_t>(c.top_k) : order.size();
  if (c.top_p < 1.0f) {
    double total = 0;
    for (size_t j = 0; j < n; ++j) total += p[static_cast<size_t>(order[j])];
    double cum = 0;
    for (size_t j = 0; j < n; ++j) {
      cum += p[static_cast<size_t>(order[j])];
      if (cum >= c.top_p * total) {
        n = j + 1;
        break;
      }
    }
  }
  std::vector<bool> keep(static_cast<size_t>(V), false);
  for (size_t j = 0; j < n; ++j) keep[static_cast<size_t>(order[j])] = p[static_cast<size_t>(order[j])] >= c.min_p;
  double total = 0;
  for (int64_t i = 0; i < V; ++i) total += keep[static_cast<size_t>(i)] ? p[static_cast<size_t>(i)] : 0;
  double cum = 0;
  for (int64_t i = 0; i < V; ++i) {
    cum += keep[static_cast<size_t>(i)] ? p[static_cast<size_t>(i)] : 0;
    if (cum > u * total) return i;
  }
  return -1;
}

// Every fast path (heap top_k, nth_element top_k, banded top_p, min_p prefilter, sparse
// penalties) against the specification, token for token, with the same uniform draws.
// Logits are quantized to 0.25 so ties sit on every top_k / top_p boundary.
TEST(SequenceSampler, MatchesReferenceImplementation) {
  struct Case {
    const char* name;
    int64_t vocab;
    SamplingConfig c;
  };
  auto cfg = [](float t, int64_t k, float p, float min_p) {
    SamplingConfig c;
    c.temperature = t;
    c.top_k = k;
    c.top_p = p;
    c.min_p = min_p;
    return c;
  };
  std::vector<Case> cases = {
      {"plain", 3000, cfg(1.0f, 0, 1.0f, 0.0f)},
      {"hot", 3000, cfg(1.9f, 0, 1.0f, 0.0f)},
      {"top_k small", 3000, cfg(0.7f, 20, 1.0f, 0.0f)},
      {"top_k heap max", 6000, cfg(1.0f, 4096, 1.0f, 0.0f)},
      {"top_k large", 6000, cfg(1.0f, 5000, 1.0f, 0.0f)},
      {"top_k large + top_p", 6000, cfg(1.2f, 5000, 0.8f, 0.0f)},
      {"top_p low", 3000, cfg(1.0f, 0, 0.3f, 0.0f)},
      {"top_p high", 3000, cfg(1.5f, 0, 0.97f, 0.0f)},
      {"top_p + min_p", 3000, cfg(1.0f, 0, 0.95f, 0.02f)},
      {"min_p", 3000, cfg(1.3f, 0, 1.0f, 0.1f)},
      {"min_p tiny", 3000, cfg(1.0f, 0, 1.0f, 1e-4f)},
      {"all", 3000, cfg(0.8f, 100, 0.9f, 0.05f)},
      {"top_k = vocab", 500, cfg(1.0f, 500, 1.0f, 0.0f)},
      {"greedy", 3000, cfg(0.0f, 0, 1.0f, 0.0f)},
  };
  SamplingConfig pen = cfg(0.9f, 0, 0.9f, 0.0f);
  pen.repetition_penalty = 1.3f;
  pen.frequency_penalty = 0.4f;
  pen.presence_penalty = 0.2f;
  pen.logit_bias = {{7, 3.0f}, {8, -2.0f}, {2999, 1.5f}};
  cases.push_back({"penalties + bias", 3000, pen});
  SamplingConfig pen_k = pen;
  pen_k.top_k = 40;
  pen_k.min_p = 0.01f;
  pen_k.repetition_penalty = 0.8f;
  cases.push_back({"penalties + top_k", 3000, pen_k});

  for (const auto& tc : cases) {
    std::vector<int64_t> prompt;
    for (int64_t i = 0; i < 200; ++i) prompt.push_back((i * 37) % tc.vocab);
    const uint64_t seed = 1000, stream = 3;
    auto s = Make(tc.c, tc.vocab, seed, stream, prompt);
    const uint64_t key = SequenceRngSeed(seed, stream);
    uint64_t draws = 0;
    std::vector<int64_t> generated;
    for (uint64_t step = 0; step < 150; ++step) {
      auto l = RandomLogits(tc.vocab, 50000 + step, 1.5f);
      for (float& x : l) x = std::round(x * 4.0f) / 4.0f;
      const double u = tc.c.temperature < 1e-5f ? 0.0 : SequenceUniform(key, draws++);
      const int64_t want = ReferenceSample(l, tc.c, prompt, generated, u);
      const int64_t got = s.Sample(l.data()).id;
      ASSERT_EQ(got, want) << tc.name << " step " << step;
      s.Accept(got);
      generated.push_back(got);
    }
  }
}

TEST(SequenceSampler, SameSeedAndStreamReproduce) {
  SamplingConfig c;
  c.temperature = 1.0f;
  c.top_p = 0.95f;
  c.frequency_penalty = 0.2f;
  auto run = [&](uint64_t seed, uint64_t stream) {
    auto s = Make(c, 1000, seed, stream);
    std::vector<int64_t> out;
    for (uint64_t step = 0; step < 64; ++step) {
      auto l = RandomLogits(1000, step, 0.3f);
      out.push_back(s.Sample(l.data()).id);
      s.Accept(out.back());
    }
    return out;
  };
  EXPECT_EQ(run(42, 0), run(42, 0));
  EXPECT_EQ(run(42, 3), run(42, 3));
  EXPECT_NE(run(42, 0), run(42, 1));
  EXPECT_NE(run(42, 1), run(42, 2));
  EXPECT_NE(run(42, 0), run(43, 0));
  EXPECT_NE(SequenceRngSeed(1, 0), SequenceRngSeed(0, 1));
}

TEST(SequenceSampler, BatchCompositionIndependence) {
  SamplingConfig ca;
  ca.temperature = 0.9f;
  ca.top_k = 40;
  ca.presence_penalty = 0.4f;
  SamplingConfig cb;
  cb.temperature = 1.3f;
  cb.min_p = 0.05f;
  cb.repetition_penalty = 1.2f;
  const int steps = 40;
  auto logits = [](int which, int step) { return RandomLogits(800, 1000 * which + step, 1.0f); };

  // A, B, A, B ... with a scratch shared by both (one scheduler thread).
  std::vector<int64_t> a1, b1;
  {
    SamplingScratch shared;
    auto a = Make(ca, 800, 5, 0, {1, 2});
    auto b = Make(cb, 800, 5, 1, {3, 4});
    for (int i = 0; i < steps; ++i) {
      auto la = logits(0, i), lb = logits(1, i);
      a1.push_back(a.Sample(la.data(), &shared).id);
      a.Accept(a1.back());
      b1.push_back(b.Sample(lb.data(), &shared).id);
      b.Accept(b1.back());
    }
  }
  // A, A, ... then B, B, ..., each with its own scratch; plus a third sequence in between.
  std::vector<int64_t> a2, b2;
  {
    auto a = Make(ca, 800, 5, 0, {1, 2});
    auto b = Make(cb, 800, 5, 1, {3, 4});
    SamplingConfig cc;
    auto other = Make(cc, 800, 6, 0);
    for (int i = 0; i < steps; ++i) {
      auto la = logits(0, i);
      a2.push_back(a.Sample(la.data()).id);
      a.Accept(a2.back());
      other.Accept(other.Sample(la.data()).id);
    }
    for (int i = 0; i < steps; ++i) {
      auto lb = logits(1, i);
      b2.push_back(b.Sample(lb.data()).id);
      b.Accept(b2.back());
    }
  }
  EXPECT_EQ(a1, a2);
  EXPECT_EQ(b1, b2);
}

TEST(SequenceSampler, GreedyDrawsNothingSamplingDrawsOnce) {
  // Exactly one draw per sampled token: a sampler that skipped k greedy tokens would be out of
  // step, so compare with a raw generator seeded the documented way.
  SamplingConfig c;
  c.temperature = 1.0f;
  const std::vector<float> l = {0.0f, 0.0f, 0.0f, 0.0f};  // uniform: token = floor(4u)
  auto s = Make(c, 4, 77, 5);
  for (uint64_t i = 0; i < 200; ++i) {
    const double u = SequenceUniform(SequenceRngSeed(77, 5), i);
    ASSERT_EQ(s.Sample(l.data()).id, static_cast<int64_t>(u * 4));
  }
  auto greedy = Make(Greedy(), 4, 77, 5);
  const std::string before = greedy.SerializeState();
  greedy.Sample(l.data());
  EXPECT_EQ(greedy.SerializeState(), before);
}

TEST(SequenceSampler, SerializeRestoreContinuesSequence) {
  SamplingConfig c;
  c.temperature = 0.8f;
  c.top_p = 0.9f;
  c.frequency_penalty = 0.7f;
  c.repetition_penalty = 1.5f;
  const std::vector<int64_t> prompt = {5, 6, 7, 5};
  const int64_t V = 300;
  auto s = Make(c, V, 2024, 2, prompt);
  for (int i = 0; i < 25; ++i) {
    auto l = RandomLogits(V, i, 0.5f);
    s.Accept(s.Sample(l.data()).id);
  }
  const std::string state = s.SerializeState();
  auto r = SequenceSampler::Restore(c, V, prompt, state);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->generated(), s.generated());
  EXPECT_EQ(r->seed(), 2024u);
  EXPECT_EQ(r->stream(), 2u);
  for (int i = 25; i < 80; ++i) {
    auto l = RandomLogits(V, i, 0.5f);
    const int64_t x = s.Sample(l.data()).id, y = r->Sample(l.data()).id;
    ASSERT_EQ(x, y) << "step " << i;
    s.Accept(x);
    r->Accept(y);
  }
  EXPECT_EQ(r->SerializeState(), s.SerializeState());
}

TEST(SequenceSampler, RestoreRejectsBadState) {
  SamplingConfig c;
  auto s = Make(c, 100, 1);
  s.Accept(3);
  const std::string good = s.SerializeState();
  ASSERT_TRUE(SequenceSampler::Restore(c, 100, {}, good).ok());
  auto expect_bad = [&](const std::string& state, const char* why) {
    auto r = SequenceSampler::Restore(c, 100, {}, state);
    EXPECT_FALSE(r.ok()) << why;
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
    }
  };
  expect_bad("", "empty");
  expect_bad("hello 1", "magic");
  expect_bad(good.substr(0, good.size() / 2), "truncated");
  expect_bad(good + "x", "trailing");
  std::string other_vocab = good;
  other_vocab.replace(other_vocab.find("vocab 100"), 9, "vocab 101");
  expect_bad(other_vocab, "vocabulary");
  std::string bad_id = good;
  bad_id.replace(bad_id.find("generated 1 3"), 13, "generated 1 300");
  expect_bad(bad_id, "id out of range");
  // Invalid config: InvalidArgument.
  SamplingConfig bad = c;
  bad.temperature = 5;
  auto r = SequenceSampler::Restore(bad, 100, {}, good);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SequenceSampler, RawLogprobsMatchLogSoftmax) {
  SamplingConfig c;
  c.temperature = 0.5f;  // processing must not leak into the reported logprobs
  c.top_k = 10;
  c.repetition_penalty = 1.7f;
  c.presence_penalty = 1.0f;
  c.logit_bias = {{4, 20.0f}};
  c.logprobs = 1;
  c.top_logprobs = 7;
  const int64_t V = 5000;
  auto s = Make(c, V, 8, 0, {1, 2, 3});
  for (uint64_t row = 0; row < 10; ++row) {
    auto l = RandomLogits(V, 300 + row, 4.0f);
    const auto ref = LogSoftmax(l);
    auto t = s.Sample(l.data());
    s.Accept(t.id);
    EXPECT_NEAR(t.logprob, ref[static_cast<size_t>(t.id)], 1e-6);
    ASSERT_EQ(t.top.size(), 7u);
    std::vector<int64_t> order(static_cast<size_t>(V));
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + 7, order.end(),
                      [&](int64_t a, int64_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
    for (size_t k = 0; k < 7; ++k) {
      EXPECT_EQ(t.top[k].id, order[k]);
      EXPECT_NEAR(t.top[k].logprob, ref[static_cast<size_t>(order[k])], 1e-6);
      if (k > 0) {
        EXPECT_GE(t.top[k - 1].logprob, t.top[k].logprob);
      }
    }
  }
}

TEST(SequenceSampler, TopLogprobsLengthAndTies) {
  SamplingConfig c = Greedy();
  c.top_logprobs = 3;
  auto s = Make(c, 6);
  const std::vector<float> l = {1.0f, 2.0f, 2.0f, 0.5f, 2.0f, 1.0f};
  auto t = s.Sample(l.data());
  ASSERT_EQ(t.top.size(), 3u);
  EXPECT_EQ(t.top[0].id, 1);
  EXPECT_EQ(t.top[1].id, 2);
  EXPECT_EQ(t.top[2].id, 4);
  EXPECT_EQ(t.id, 1);
  EXPECT_NEAR(t.logprob, LogSoftmax(l)[1], 1e-9);
  // k larger than the vocabulary: the whole vocabulary, sorted.
  c.top_logprobs = 20;
  auto all = Make(c, 6).Sample(l.data());
  ASSERT_EQ(all.top.size(), 6u);
  for (size_t k = 1; k < 6; ++k) EXPECT_GE(all.top[k - 1].logprob, all.top[k].logprob);
  // Not asked: nothing computed.
  auto none = Make(Greedy(), 6).Sample(l.data());
  EXPECT_TRUE(none.top.empty());
  EXPECT_EQ(none.logprob, 0.0);
}

TEST(SequenceSampler, DegenerateRows) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  SamplingConfig c;
  c.logprobs = 1;
  auto s = Make(c, 4);
  std::vector<float> all_masked(4, -inf);
  EXPECT_EQ(s.Sample(all_masked.data()).id, 0);
  std::vector<float> with_nan = {nan, 1.0f, nan, -inf};
  for (int i = 0; i < 100; ++i) ASSERT_EQ(s.Sample(with_nan.data()).id, 1);
  std::vector<float> masked = {-inf, 0.0f, -inf, 0.0f};
  auto h = Histogram(s, masked, 1000);
  EXPECT_EQ(h[0] + h[2], 0);
  EXPECT_GT(h[1], 0);
  EXPECT_GT(h[3], 0);
}

TEST(ValidateSamplingConfig, AcceptsDefaultsAndBounds) {
  EXPECT_TRUE(ValidateSamplingConfig(SamplingConfig{}, 129280).ok());
  SamplingConfig c;
  c.temperature = 2.0f;
  c.top_p = 1.0f;
  c.top_k = -1;
  c.min_p = 1.0f;
  c.presence_penalty = -2.0f;
  c.frequency_penalty = 2.0f;
  c.repetition_penalty = 2.0f;
  c.logit_bias = {{0, -100.0f}, {129279, 100.0f}};
  c.logprobs = 20;
  c.top_logprobs = 20;
  c.seed = 123;
  EXPECT_TRUE(ValidateSamplingConfig(c, 129280).ok()) << ValidateSamplingConfig(c, 129280);
  c.top_k = 1000000;  // larger than the vocabulary: off
  EXPECT_TRUE(ValidateSamplingConfig(c, 129280).ok());
}

TEST(ValidateSamplingConfig, RejectsEveryOutOfRangeField) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct Case {
    std::function<void(SamplingConfig&)> edit;
    std::string message;
  };
  std::vector<Case> cases = {
      {[](auto& c) { c.temperature = 3; }, "temperature must be in [0, 2], got 3"},
      {[](auto& c) { c.temperature = -0.5f; }, "temperature must be in [0, 2], got -0.5"},
      {[&](auto& c) { c.temperature = nan; }, "temperature must be in [0, 2], got nan"},
      {[](auto& c) { c.top_p = 0; }, "top_p must be in (0, 1], got 0"},
      {[](auto& c) { c.top_p = 1.5f; }, "top_p must be in (0, 1], got 1.5"},
      {[](auto& c) { c.top_k = -2; }, "top_k must be -1 or 0 (off) or a positive integer, got -2"},
      {[](auto& c) { c.min_p = -0.1f; }, "min_p must be in [0, 1], got -0.1"},
      {[](auto& c) { c.min_p = 1.5f; }, "min_p must be in [0, 1], got 1.5"},
      {[](auto& c) { c.presence_penalty = 2.5f; }, "presence_penalty must be in [-2, 2], got 2.5"},
      {[](auto& c) { c.presence_penalty = -3; }, "presence_penalty must be in [-2, 2], got -3"},
      {[](auto& c) { c.frequency_penalty = -2.5f; }, "frequency_penalty must be in [-2, 2], got -2.5"},
      {[](auto& c) { c.repetition_penalty = 0; }, "repetition_penalty must be in (0, 2], got 0"},
      {[](auto& c) { c.repetition_penalty = 2.5f; }, "repetition_penalty must be in (0, 2], got 2.5"},
      {[](auto& c) { c.logit_bias = {{999999, 1.0f}}; },
       "logit_bias: token id 999999 outside the vocabulary [0, 129280)"},
      {[](auto& c) { c.logit_bias = {{-1, 1.0f}}; }, "logit_bias: token id -1 outside the vocabulary [0, 129280)"},
      {[](auto& c) { c.logit_bias = {{5, 101.0f}}; }, "logit_bias: bias for token id 5 must be in [-100, 100], got 101"},
      {[](auto& c) { c.logit_bias = {{5, 1.0f}, {5, 2.0f}}; }, "logit_bias: token id 5 appears more than once"},
      {[](auto& c) {
         for (int64_t i = 0; i < 301; ++i) c.logit_bias.push_back({i, 1.0f});
       },
       "logit_bias: at most 300 entries, got 301"},
      {[](auto& c) { c.logprobs = -1; }, "logprobs must be in [0, 20], got -1"},
      {[](auto& c) { c.logprobs = 21; }, "logprobs must be in [0, 20], got 21"},
      {[](auto& c) { c.top_logprobs = 21; }, "top_logprobs must be in [0, 20], got 21"},
      {[](auto& c) { c.top_logprobs = -1; }, "top_logprobs must be in [0, 20], got -1"},
  };
  for (const auto& tc : cases) {
    SamplingConfig c;
    tc.edit(c);
    Status st = ValidateSamplingConfig(c, 129280);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << tc.message;
    EXPECT_EQ(std::string(st.message()), tc.message);
  }
  SamplingConfig ok300;
  for (int64_t i = 0; i < 300; ++i) ok300.logit_bias.push_back({i, 1.0f});
  EXPECT_TRUE(ValidateSamplingConfig(ok300, 129280).ok());
  EXPECT_FALSE(ValidateSamplingConfig(SamplingConfig{}, 0).ok());
}

// Not a benchmark, a guard against accidental O(vocab log vocab) paths: prints the per-token
// cost on the full vocabulary (the figure is informational; the bound is very loose).
TEST(SequenceSampler, FullVocabCost) {
  const int64_t V = 129280;
  auto l = RandomLogits(V, 1, 2.0f);
  struct Named {
    const char* name;
    SamplingConfig c;
  };
  std::vector<Named> configs(5);
  configs[0] = {"greedy", Greedy()};
  configs[1] = {"temperature", SamplingConfig{}};
  configs[2] = {"top_k=50", SamplingConfig{}};
  configs[2].c.top_k = 50;
  configs[3] = {"top_p=0.9", SamplingConfig{}};
  configs[3].c.top_p = 0.9f;
  configs[4] = {"all+penalties", SamplingConfig{}};
  configs[4].c.top_k = 100;
  configs[4].c.top_p = 0.9f;
  configs[4].c.min_p = 0.05f;
  configs[4].c.frequency_penalty = 0.5f;
  configs[4].c.repetition_penalty = 1.1f;
  std::vector<int64_t> prompt(2000);
  std::iota(prompt.begin(), prompt.end(), 0);
  for (auto& [name, c] : configs) {
    auto s = Make(c, V, 1, 0, prompt);
    const int n = 30;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) s.Accept(s.Sample(l.data()).id);
    const double us =
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / n;
    // Informational only: timings are benchmarks' business, never a unit test's bar.
    std::printf("[ info ] %-14s %8.1f us/token (vocab %lld)\n", name, us, static_cast<long long>(V));
  }
}

}  // namespace
}  // namespace dsv3

namespace dsv3 {
namespace {

// A request migrated to another worker after k tokens continues with the prompt plus those
// tokens: ResumeAfter must leave the sampler exactly where the original stood (same draws,
// same penalties), so the continuation is token for token the undisturbed one.
TEST(SequenceSampler, ResumeAfterContinuesAsIfInPlace) {
  SamplingConfig c;
  c.temperature = 0.9f;
  c.top_p = 0.95f;
  c.presence_penalty = 0.5f;
  c.frequency_penalty = 0.3f;
  c.repetition_penalty = 1.2f;
  c.seed = 99;
  const int64_t V = 400;
  const std::vector<int64_t> prompt = {3, 9, 27, 81};
  SequenceSampler whole(c, V, prompt, 99, 0);
  std::vector<int64_t> tokens;
  for (int i = 0; i < 40; ++i) {
    auto l = RandomLogits(V, 700 + i, 0.7f);
    const int64_t t = whole.Sample(l.data()).id;
    whole.Accept(t);
    tokens.push_back(t);
  }
  for (size_t k : {size_t{1}, size_t{7}, size_t{39}}) {
    std::vector<int64_t> context = prompt;
    context.insert(context.end(), tokens.begin(), tokens.begin() + static_cast<std::ptrdiff_t>(k));
    SequenceSampler moved(c, V, context, 99, 0);
    moved.ResumeAfter(std::vector<int64_t>(tokens.begin(), tokens.begin() + static_cast<std::ptrdiff_t>(k)));
    for (size_t i = k; i < tokens.size(); ++i) {
      auto l = RandomLogits(V, 700 + static_cast<int>(i), 0.7f);
      const int64_t t = moved.Sample(l.data()).id;
      ASSERT_EQ(t, tokens[i]) << "migrated after " << k << " tokens, differs at token " << i;
      moved.Accept(t);
    }
  }
}

}  // namespace
}  // namespace dsv3
