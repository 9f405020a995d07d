// Request fields shared by /v1/chat/completions and /v1/completions: sampling, stop
// conditions, n, seed, streaming. Parsed and range-checked here, before any work is queued;
// every error names its parameter.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "proto/dsv3/attention.pb.h"
#include "services/gateway/json_body.h"

namespace dsv3::gateway {

struct RequestLimits {
  int max_n = 16;
  int max_top_logprobs = 20;
  int max_stop = 16;
  size_t max_stop_bytes = 256;
  int max_logit_bias = 300;
  int64_t vocab_size = 129280;  // logit_bias / stop_token_ids ids must be below it
};

struct SamplingParams {
  std::string model;
  std::optional<int64_t> max_tokens;  // absent: the rest of the context
  bool json_object = false;           // response_format json_object (chat)
  double temperature = 1.0;
  double top_p = 1.0;
  int64_t top_k = 0;  // 0 or -1: off
  double min_p = 0.0;
  int64_t n = 1;
  std::vector<std::string> stop;
  std::vector<int64_t> stop_token_ids;  // vLLM extension
  std::optional<uint64_t> seed;
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
  double repetition_penalty = 1.0;
  std::vector<std::pair<int64_t, float>> logit_bias;
  bool ignore_eos = false;  // vLLM extension
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  std::string user;
};

// `max_tokens_keys`: the field names that set max_tokens, the first present wins
// (chat: max_completion_tokens, then max_tokens), each at least `min_max_tokens`.
std::optional<ApiError> ParseSamplingParams(const Json& body, const RequestLimits& limits,
                                            const std::vector<const char*>& max_tokens_keys, SamplingParams* out,
                                            int64_t min_max_tokens = 1);

// Fills the proto's sampling options, n, stop ids and max_tokens.
void ToGenerateRequest(const SamplingParams& p, int64_t max_tokens, attention::v1::GenerateRequest* req);

}  // namespace dsv3::gateway
