// Per-request sampling parameters of the serving engine (OpenAI / vLLM semantics) and their
// validation. The gateway fills a SamplingConfig from the request body, calls
// ValidateSamplingConfig once (its messages name the field the way the OpenAI API does, so
// they can go back to the client verbatim as an `invalid_request_error`), and the attention
// worker's scheduler builds one SequenceSampler (sequence_sampler.h) per choice.
#pragma once

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "common/status.h"

namespace dsv3 {

inline constexpr int64_t kMaxLogitBiasEntries = 300;
inline constexpr int32_t kMaxTopLogprobs = 20;
inline constexpr int32_t kMaxLogprobs = 20;

struct SamplingConfig {
  float temperature = 1.0f;  // [0, 2]; 0 (anything below 1e-5, as vLLM): greedy (argmax after
                             // penalties/bias; ties -> lowest id)
  float top_p = 1.0f;        // (0, 1]; 1: off
  int64_t top_k = 0;         // 0 or -1: off; >= vocab: off
  float min_p = 0.0f;        // [0, 1]; keep tokens with p >= min_p * p_max
  std::optional<uint64_t> seed;
  float presence_penalty = 0.0f;    // [-2, 2] on generated tokens: logit -= presence * (count > 0)
  float frequency_penalty = 0.0f;   // [-2, 2]: logit -= frequency * count(generated)
  float repetition_penalty = 1.0f;  // (0, 2]; 1: off. HF/vLLM semantics over prompt AND generated
                                    // tokens (each id once): logit > 0 ? logit / p : logit * p
  std::vector<std::pair<int64_t, float>> logit_bias;  // id -> bias in [-100, 100], added to the logit
  int32_t logprobs = 0;      // [0, 20]; 0: none; > 0: report the chosen token's logprob
  int32_t top_logprobs = 0;  // [0, 20]: report the k most likely tokens
  bool json_object = false;  // constrained decoding: the output is one JSON object (JsonConstraint)
};

// Checks every field's range, and logit_bias against the vocabulary (ids in [0, vocab_size),
// at most 300 entries, no id twice). Errors are InvalidArgument with messages such as
// "temperature must be in [0, 2], got 3" or
// "logit_bias: token id 999999 outside the vocabulary [0, 129280)"; NaN is out of every range.
Status ValidateSamplingConfig(const SamplingConfig& c, int64_t vocab_size);

}  // namespace dsv3
