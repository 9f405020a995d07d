// The serving sampler: one SequenceSampler per generated sequence (per choice of a request),
// owning that sequence's random generator and penalty counts, so the token a sequence gets
// never depends on which other sequences share its batch, and a seed reproduces it.
//
// Processing order for one row of raw float32 logits (vLLM's order):
//   1. logit_bias: logit[id] += bias
//   2. penalties: repetition over the prompt's and the generated ids (each id once:
//      logit > 0 ? logit / p : logit * p), then frequency and presence over generated ids
//      (logit -= frequency * count; logit -= presence * (count > 0)). Steps 1-2 are done in
//      float32 arithmetic like vLLM's and touch only those ids (never O(vocab) per penalty).
//      NaN logits count as -inf.
//   3. temperature < 1e-5 (vLLM's epsilon; 0 in practice): greedy, the argmax with ties to the
//      lowest id, no random draw. Otherwise x = (logit - max) / temperature in float64.
//   4. softmax: p = exp(x) in float64 (sums in float64).
//   5. top_k: the k best tokens in the order (logit desc, id asc) — i.e. probability desc,
//      ties to the lower id; exactly k kept.
//   6. top_p: the smallest prefix of that order whose cumulative probability (relative to the
//      tokens left by top_k) reaches top_p.
//   7. min_p: keep p >= min_p * p_max (the most probable token never falls to steps 5-6).
//   8. renormalize the survivors, draw ONE uniform double u in [0, 1) from the sequence's
//      generator ((next() >> 11) * 2^-53), and return the first token, in id order, at which
//      the cumulative probability exceeds u * (sum of survivors).
// Exactly one draw per Sample() when sampling, none when greedy. The generator is counter
// based: draw i of a sequence is SequenceUniform(SequenceRngSeed(seed, stream), i), so the
// streams of one seed (the n choices of a request) differ, each is reproducible, and a
// sequence continued elsewhere after i tokens (a migrated request) draws exactly what it
// would have drawn in place.
// A row whose processed maximum is not finite (all -inf, or a +inf) returns the lowest id
// holding that maximum (the draw still happens when sampling).
//
// Logprobs (SampledToken::logprob, ::top) are those of the RAW model distribution: log_softmax
// of the unprocessed logits in float64, before bias, penalties, temperature and filters —
// what vLLM reports by default (logprobs_mode "raw_logprobs") — so they describe the model,
// not the sampling transform.
//
// Cost per token on a vocabulary V (no step is O(V log V)):
//   greedy: a copy and a max pass (vectorized), plus the edited ids.
//   sampling, no filters: + one exp pass, and a cumulative pass that stops at the token.
//   top_k <= 4096: a single selection pass (heap of k), exp and a sort of only the k candidates.
//   top_k > 4096: nth_element for the k-th token, then as below.
//   top_p: exp pass with a histogram of the probability mass by 1/8-nat bands of x; only the
//     band where the cumulative mass crosses top_p is collected and sorted; the final walk
//     skips the tokens after it (plus one summing pass when min_p is also set).
//   min_p alone: exp only for tokens with x >= log(min_p).
//   logprobs: one more exp pass; top_logprobs: a single selection pass.
// The working memory (SamplingScratch, ~18 bytes per vocabulary entry) is reused across calls:
// per thread by default, or one the caller owns and passes in.
//
// Not thread-safe: one instance per sequence (different instances may run on different
// threads at once).
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "common/model/sampler.h"  // TokenLogprob (header-only use; no link to dsv3_model)
#include "common/sampling/sampling_config.h"
#include "common/status.h"

namespace dsv3 {

struct SampledToken {
  int64_t id = -1;
  double logprob = 0;             // raw log_softmax of `id`; set when logprobs or top_logprobs > 0
  std::vector<TokenLogprob> top;  // top_logprobs entries, (logprob desc, id asc), raw distribution
};

// Working memory for Sample(), sized to the vocabulary on first use and reused afterwards.
// Sample() without one uses a thread-local scratch; a scheduler may own one per thread and
// pass it explicitly. Contents are an implementation detail.
class SamplingScratch {
 private:
  friend class SequenceSampler;
  std::vector<float> logits;                        // processed logits [V]
  std::vector<double> probs;                        // unnormalized probabilities [V] (dense paths)
  std::vector<int32_t> ids;                         // candidate ids
  std::vector<std::pair<float, int32_t>> heap;      // top_k selection (logit, id)
  std::vector<std::pair<int32_t, double>> chosen;   // sparse survivors (id, probability)
  std::vector<uint16_t> band;                       // top_p: band of each token with mass [V]
  std::vector<double> band_mass;                    // top_p: mass per band
};

// The generator seed of stream `stream` of request seed `seed`:
// a = splitmix64(seed); return splitmix64(a ^ stream), with splitmix64(x) the output of
// one step of Vigna's SplitMix64 from state x (state += 0x9e3779b97f4a7c15, then the finalizer).
uint64_t SequenceRngSeed(uint64_t seed, uint64_t stream);
// Draw i of the stream with key `key`: (splitmix64(key + i * 0x9e3779b97f4a7c15) >> 11) * 2^-53,
// i.e. the (i+1)-th output of SplitMix64 started at `key`, as a double in [0, 1).
double SequenceUniform(uint64_t key, uint64_t draw);

class SequenceSampler {
 public:
  // `c` must have passed ValidateSamplingConfig(c, vocab_size) (out-of-range logit_bias ids are
  // dropped rather than written out of bounds). `seed`: c.seed if set, else a random one the
  // caller draws (this class keeps no global generator). `stream`: which choice of the request
  // (n > 1); different streams of one seed give different, reproducible draws.
  // `prompt` is needed only for the repetition penalty (only its unique ids are kept).
  SequenceSampler(const SamplingConfig& c, int64_t vocab_size, const std::vector<int64_t>& prompt, uint64_t seed,
                  uint64_t stream);

  // Samples from one row of raw logits (float32 [vocab_size]); `logits` is not modified. Uses
  // `scratch` when given, else a thread-local one. Advances the generator by exactly one draw
  // unless greedy. Does not record the token: call Accept(). `allowed` (constrained decoding,
  // e.g. JsonConstraint::Mask): ids with 0 there (or beyond its size) are excluded after
  // bias and penalties; logprobs still describe the raw distribution.
  SampledToken Sample(const float* logits, SamplingScratch* scratch = nullptr,
                      const std::vector<uint8_t>* allowed = nullptr);

  // Records a generated token for the penalties (the scheduler calls Sample, then Accept with
  // the token it keeps). Ids outside [0, vocab_size) are ignored.
  void Accept(int64_t token);

  // A request migrated after `generated` tokens (they are the end of its new prompt): counts
  // them for the penalties and moves the generator to where it stood after them, as if
  // this sampler had produced them (one draw per token when sampling).
  void ResumeAfter(const std::vector<int64_t>& generated);

  // Everything that must survive a move to another process (KV hand-off, preemption): the
  // generator's exact position and the generated tokens. Text:
  //   "dsv3-sampler 2\nvocab V\nseed S\nstream T\ngenerated N id...\ndraws D\n"
  std::string SerializeState() const;
  // Rebuilds a sampler from SerializeState() output, with the same config, vocabulary and
  // prompt as the original; the next Sample() continues its sequence exactly. InvalidArgument
  // for an invalid config, DataLoss for a malformed or mismatched state.
  static StatusOr<SequenceSampler> Restore(const SamplingConfig& c, int64_t vocab_size,
                                           const std::vector<int64_t>& prompt, std::string_view state);

  const SamplingConfig& config() const { return config_; }
  int64_t vocab_size() const { return vocab_; }
  uint64_t seed() const { return seed_; }
  uint64_t stream() const { return stream_; }
  const std::vector<int64_t>& generated() const { return generated_; }
  bool greedy() const;

 private:
  SequenceSampler(const SamplingConfig& c, int64_t vocab_size, const std::vector<int64_t>& prompt);

  // Steps 1-2 in place on the processed logits `w` [vocab_].
  void ApplyBiasAndPenalties(float* w) const;
  // Steps 3-8 for a row with a finite maximum `mx`.
  int64_t Draw(const float* w, float mx, double u, SamplingScratch& s) const;
  int64_t DrawSmallTopK(const float* w, float mx, double u, SamplingScratch& s) const;
  void FillLogprobs(const float* logits, int64_t chosen, SampledToken& out) const;

  SamplingConfig config_;
  int64_t vocab_ = 0;
  uint64_t seed_ = 0;
  uint64_t stream_ = 0;
  uint64_t rng_key_ = 0;  // SequenceRngSeed(seed_, stream_)
  uint64_t draws_ = 0;    // draws made so far: the generator's position
  std::vector<std::pair<int64_t, float>> bias_;  // in-range entries of config_.logit_bias
  std::vector<int64_t> prompt_ids_;              // sorted unique prompt ids (repetition penalty only)
  std::vector<int64_t> generated_;
  absl::flat_hash_map<int64_t, int32_t> counts_;  // generated id -> occurrences
};

}  // namespace dsv3
