#include "common/sampling/sequence_sampler.h"

#include "common/sampling/raw_logprobs.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <sstream>

namespace dsv3 {
namespace {

constexpr float kGreedyTemperature = 1e-5f;  // vLLM's _SAMPLING_EPS
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr int64_t kSmallTopK = 4096;  // up to this top_k: heap selection of the candidates
// top_p histogram: x = (logit - max) / temperature <= 0 in bands of 1/8 nat, down to -64
// (p < 2e-28 of the max: all such tokens share the last band).
constexpr int kBandsPerNat = 8;
constexpr int kBands = 64 * kBandsPerNat;

// Monotone in x: a more probable token never lands in a later band.
inline int BandOf(double x) {
  const double b = -x * kBandsPerNat;
  return b < kBands - 1 ? static_cast<int>(b) : kBands - 1;
}

// The first index whose cumulative mass exceeds target (the last one with mass if rounding
// leaves the sum short).
int64_t WalkCdf(const double* p, int64_t n, double target) {
  double cum = 0;
  for (int64_t i = 0; i < n; ++i) {
    cum += p[i];
    if (cum > target) return i;
  }
  for (int64_t i = n - 1; i > 0; --i) {
    if (p[i] > 0) return i;
  }
  return 0;
}

// Max of n floats; NaN never wins. Eight independent lanes so the compiler vectorizes it.
float MaxOf(const float* x, int64_t n) {
  float lane[8];
  std::fill(lane, lane + 8, -std::numeric_limits<float>::infinity());
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) lane[j] = x[i + j] > lane[j] ? x[i + j] : lane[j];
  }
  float m = -std::numeric_limits<float>::infinity();
  for (float v : lane) m = v > m ? v : m;
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

uint64_t SplitMix64(uint64_t x) {
  uint64_t z = x + 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

uint64_t SequenceRngSeed(uint64_t seed, uint64_t stream) { return SplitMix64(SplitMix64(seed) ^ stream); }

double SequenceUniform(uint64_t key, uint64_t draw) {
  return static_cast<double>(SplitMix64(key + draw * 0x9e3779b97f4a7c15ULL) >> 11) * 0x1.0p-53;
}

SequenceSampler::SequenceSampler(const SamplingConfig& c, int64_t vocab_size, const std::vector<int64_t>& prompt)
    : config_(c), vocab_(vocab_size) {
  for (const auto& e : c.logit_bias) {
    if (e.first >= 0 && e.first < vocab_ && e.second != 0.0f) bias_.push_back(e);
  }
  if (c.repetition_penalty != 1.0f) {
    for (int64_t id : prompt) {
      if (id >= 0 && id < vocab_) prompt_ids_.push_back(id);
    }
    std::sort(prompt_ids_.begin(), prompt_ids_.end());
    prompt_ids_.erase(std::unique(prompt_ids_.begin(), prompt_ids_.end()), prompt_ids_.end());
    prompt_ids_.shrink_to_fit();
  }
}

SequenceSampler::SequenceSampler(const SamplingConfig& c, int64_t vocab_size, const std::vector<int64_t>& prompt,
                                 uint64_t seed, uint64_t stream)
    : SequenceSampler(c, vocab_size, prompt) {
  seed_ = seed;
  stream_ = stream;
  rng_key_ = SequenceRngSeed(seed, stream);
}

void SequenceSampler::ResumeAfter(const std::vector<int64_t>& generated) {
  for (int64_t id : generated) Accept(id);
  if (!greedy()) draws_ += generated.size();
}

bool SequenceSampler::greedy() const { return !(config_.temperature >= kGreedyTemperature); }

void SequenceSampler::Accept(int64_t token) {
  if (token < 0 || token >= vocab_) return;
  generated_.push_back(token);
  ++counts_[token];
}

void SequenceSampler::ApplyBiasAndPenalties(float* w) const {
  // float32 arithmetic throughout, as vLLM does on its float32 logits.
  for (const auto& [id, bias] : bias_) w[id] += bias;
  const float rp = config_.repetition_penalty;
  if (rp != 1.0f) {
    auto repeat = [&](int64_t id) { w[id] = w[id] > 0.0f ? w[id] / rp : w[id] * rp; };
    for (int64_t id : prompt_ids_) repeat(id);
    for (const auto& [id, count] : counts_) {
      if (!std::binary_search(prompt_ids_.begin(), prompt_ids_.end(), id)) repeat(id);
    }
  }
  const float freq = config_.frequency_penalty, pres = config_.presence_penalty;
  if (freq != 0.0f || pres != 0.0f) {
    for (const auto& [id, count] : counts_) {
      w[id] -= freq * static_cast<float>(count);
      w[id] -= pres;
    }
  }
}

// top_k <= kSmallTopK: select the k candidates in one pass and work on them alone.
int64_t SequenceSampler::DrawSmallTopK(const float* w, float mx, double u, SamplingScratch& s) const {
  const int64_t V = vocab_;
  const int64_t k = config_.top_k;
  const double m = mx, t = config_.temperature;
  auto better = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  // Heap ordered by `better`: its front is the worst of the k best so far. Ids arrive in
  // increasing order, so a tie with the front never displaces it.
  auto& heap = s.heap;
  heap.clear();
  for (int64_t i = 0; i < V; ++i) {
    const float v = w[i];
    if (static_cast<int64_t>(heap.size()) < k) {
      heap.emplace_back(v, static_cast<int32_t>(i));
      std::push_heap(heap.begin(), heap.end(), better);
    } else if (v > heap.front().first) {
      std::pop_heap(heap.begin(), heap.end(), better);
      heap.back() = {v, static_cast<int32_t>(i)};
      std::push_heap(heap.begin(), heap.end(), better);
    }
  }
  std::sort(heap.begin(), heap.end(), better);  // probability desc, ties to the lower id

  auto& chosen = s.chosen;
  chosen.clear();
  double total = 0;
  for (const auto& [v, id] : heap) {
    const double e = std::exp((static_cast<double>(v) - m) / t);
    chosen.emplace_back(id, e);
    total += e;
  }
  size_t n = chosen.size();
  if (config_.top_p < 1.0f) {
    const double need = static_cast<double>(config_.top_p) * total;
    double cum = 0;
    for (size_t j = 0; j < n; ++j) {
      cum += chosen[j].second;
      if (cum >= need) {
        n = j + 1;
        break;
      }
    }
  }
  if (config_.min_p > 0.0f) {  // probabilities are descending: min_p cuts a suffix (never the first, p = 1)
    while (n > 1 && chosen[n - 1].second < static_cast<double>(config_.min_p)) --n;
  }
  chosen.resize(n);
  std::sort(chosen.begin(), chosen.end());  // id order for the CDF
  double sum = 0;
  for (const auto& c : chosen) sum += c.second;
  const double target = u * sum;
  double cum = 0;
  for (const auto& c : chosen) {
    cum += c.second;
    if (cum > target) return c.first;
  }
  return chosen.back().first;
}

int64_t SequenceSampler::Draw(const float* w, float mx, double u, SamplingScratch& s) const {
  const int64_t V = vocab_;
  const bool use_k = config_.top_k > 0 && config_.top_k < V;
  const bool use_p = config_.top_p < 1.0f;
  const bool use_min = config_.min_p > 0.0f;
  if (use_k && config_.top_k <= kSmallTopK) return DrawSmallTopK(w, mx, u, s);

  const double m = mx, t = config_.temperature;
  auto x_of = [&](int64_t i) { return (static_cast<double>(w[i]) - m) / t; };
  // Token a precedes token b: probability desc, ties to the lower id.
  auto before = [w](int64_t a, int64_t b) { return w[a] > w[b] || (w[a] == w[b] && a < b); };
  if (static_cast<int64_t>(s.probs.size()) < V) s.probs.resize(static_cast<size_t>(V));
  double* p = s.probs.data();

  // Large top_k: the k-th token bounds the kept set.
  int64_t kth = -1;
  if (use_k) {
    if (static_cast<int64_t>(s.ids.size()) < V) s.ids.resize(static_cast<size_t>(V));
    std::iota(s.ids.begin(), s.ids.begin() + V, 0);
    std::nth_element(s.ids.begin(), s.ids.begin() + (config_.top_k - 1), s.ids.begin() + V,
                     [&](int32_t a, int32_t b) { return before(a, b); });
    kth = s.ids[static_cast<size_t>(config_.top_k - 1)];
  }
  // min_p alone: tokens with x < log(min_p) cannot survive; skip their exp (the margin keeps
  // the exact test below authoritative). With top_p every token's mass counts.
  const double x_floor = use_min && !use_p ? std::log(static_cast<double>(config_.min_p)) - 1e-6 : -kInf;

  double total = 0;
  if (use_p) {
    s.band_mass.assign(kBands, 0.0);
    if (static_cast<int64_t>(s.band.size()) < V) s.band.resize(static_cast<size_t>(V));
  }
  for (int64_t i = 0; i < V; ++i) {
    const double x = x_of(i);
    double e = 0;
    if (x >= x_floor && (kth < 0 || !before(kth, i))) {
      e = std::exp(x);
      if (use_p) {
        const int b = BandOf(x);
        s.band[static_cast<size_t>(i)] = static_cast<uint16_t>(b);
        s.band_mass[static_cast<size_t>(b)] += e;
      }
    }
    p[i] = e;
    total += e;
  }

  // top_p: find the band where the cumulative mass reaches top_p * total, sort only that band,
  // and keep every token up to and including `last` in the (probability desc, id asc) order.
  int64_t last = -1;
  double nucleus_mass = total;
  if (use_p) {
    const double need = static_cast<double>(config_.top_p) * total;
    double cum = 0;
    int band = 0;
    for (; band < kBands; ++band) {
      if (cum + s.band_mass[static_cast<size_t>(band)] >= need) break;
      cum += s.band_mass[static_cast<size_t>(band)];
    }
    if (band < kBands) {
      auto& ids = s.ids;
      ids.clear();
      for (int64_t i = 0; i < V; ++i) {
        if (p[i] > 0 && s.band[static_cast<size_t>(i)] == band) ids.push_back(static_cast<int32_t>(i));
      }
      std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return before(a, b); });
      for (int32_t id : ids) {
        cum += p[id];
        last = id;
        if (cum >= need) break;
      }
      nucleus_mass = cum;
    }
  }
  if (last < 0 && !use_min) return WalkCdf(p, V, u * total);

  // Survivors of top_p (everything up to `last` in that order) and min_p, tested branch-free
  // (which tokens survive is data-dependent and would defeat the branch predictor).
  const double min_p = use_min ? static_cast<double>(config_.min_p) : 0.0;
  const float last_w = last >= 0 ? w[last] : -std::numeric_limits<float>::infinity();
  const int64_t last_id = last >= 0 ? last : V;
  auto kept = [&](int64_t i) {
    const bool after_last = (w[i] < last_w) | ((w[i] == last_w) & (i > last_id));
    return p[i] * static_cast<double>(!(after_last | (p[i] < min_p)));
  };
  if (use_min) {
    total = 0;
    for (int64_t i = 0; i < V; ++i) total += kept(i);
  } else {
    total = nucleus_mass;
  }
  const double target = u * total;
  double cum = 0;
  for (int64_t i = 0; i < V; ++i) {
    cum += kept(i);  // only a surviving token can take cum past target
    if (cum > target) return i;
  }
  for (int64_t i = V - 1; i >= 0; --i) {  // rounding left cum <= target: the last survivor
    if (kept(i) > 0) return i;
  }
  return std::find(w, w + V, mx) - w;
}

void SequenceSampler::FillLogprobs(const float* logits, int64_t chosen, SampledToken& out) const {
  SampledToken t = RawLogprobs(logits, vocab_, chosen, config_.top_logprobs);
  out.logprob = t.logprob;
  out.top = std::move(t.top);
}

SampledToken SequenceSampler::Sample(const float* logits, SamplingScratch* scratch, const std::vector<uint8_t>* allowed) {
  thread_local SamplingScratch thread_scratch;
  SamplingScratch& s = scratch != nullptr ? *scratch : thread_scratch;
  const int64_t V = vocab_;
  if (static_cast<int64_t>(s.logits.size()) < V) s.logits.resize(static_cast<size_t>(V));
  float* w = s.logits.data();
  for (int64_t i = 0; i < V; ++i) {
    const float f = logits[i];
    w[i] = f == f ? f : -std::numeric_limits<float>::infinity();  // NaN -> -inf
  }
  ApplyBiasAndPenalties(w);
  if (allowed != nullptr) {
    const int64_t n = std::min<int64_t>(V, static_cast<int64_t>(allowed->size()));
    for (int64_t i = 0; i < n; ++i) {
      if ((*allowed)[static_cast<size_t>(i)] == 0) w[i] = -std::numeric_limits<float>::infinity();
    }
    for (int64_t i = n; i < V; ++i) w[i] = -std::numeric_limits<float>::infinity();
  }
  const float mx = MaxOf(w, V);

  SampledToken out;
  const bool is_greedy = greedy();
  // The one draw per sampled token happens first, whatever the row holds.
  const double u = is_greedy ? 0.0 : SequenceUniform(rng_key_, draws_++);
  if (is_greedy || !std::isfinite(mx)) {
    out.id = std::find(w, w + V, mx) - w;  // argmax, ties -> lowest id
  } else {
    out.id = Draw(w, mx, u, s);
  }
  if (config_.logprobs > 0 || config_.top_logprobs > 0) FillLogprobs(logits, out.id, out);
  return out;
}

std::string SequenceSampler::SerializeState() const {
  std::ostringstream os;
  os << "dsv3-sampler 2\nvocab " << vocab_ << "\nseed " << seed_ << "\nstream " << stream_ << "\ngenerated "
     << generated_.size();
  for (int64_t id : generated_) os << ' ' << id;
  os << "\ndraws " << draws_ << "\n";
  return os.str();
}

StatusOr<SequenceSampler> SequenceSampler::Restore(const SamplingConfig& c, int64_t vocab_size,
                                                   const std::vector<int64_t>& prompt, std::string_view state) {
  DSV3_RETURN_IF_ERROR(ValidateSamplingConfig(c, vocab_size));
  auto bad = [](std::string_view what) { return DataLoss("sampling", StrCat("sampler state: ", what)); };
  std::istringstream is{std::string(state)};
  std::string word;
  int version = 0;
  if (!(is >> word >> version) || word != "dsv3-sampler") return bad("not a dsv3-sampler state");
  if (version != 2) return bad(StrCat("unsupported version ", version));
  auto field = [&](const char* name, auto* v) {
    return static_cast<bool>(is >> word) && word == name && static_cast<bool>(is >> *v);
  };
  int64_t vocab = 0;
  uint64_t seed = 0, stream = 0;
  size_t n = 0;
  if (!field("vocab", &vocab)) return bad("missing vocab");
  if (vocab != vocab_size) return bad(StrCat("vocabulary ", vocab, " differs from the model's ", vocab_size));
  if (!field("seed", &seed) || !field("stream", &stream)) return bad("missing seed or stream");
  if (!field("generated", &n) || n > state.size()) return bad("bad generated token count");

  SequenceSampler s(c, vocab_size, prompt);
  s.seed_ = seed;
  s.stream_ = stream;
  s.rng_key_ = SequenceRngSeed(seed, stream);
  s.generated_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t id = -1;
    if (!(is >> id)) return bad(StrCat("generated token ", i, " of ", n, " unreadable"));
    if (id < 0 || id >= vocab_size) {
      return bad(StrCat("generated token id ", id, " outside the vocabulary [0, ", vocab_size, ")"));
    }
    s.Accept(id);
  }
  if (!(is >> word) || word != "draws" || !(is >> s.draws_)) return bad("bad generator position");
  is >> std::ws;
  if (!is.eof()) return bad("trailing data");
  return s;
}

}  // namespace dsv3
