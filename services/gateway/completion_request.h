// POST /v1/completions body -> CompletionRequest. `prompt` may be a string, a list of
// strings, a list of token ids or a list of id lists; each prompt gets its own group of n
// choices (choice index = prompt index * n + i), as in the OpenAI API.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "services/gateway/json_body.h"
#include "services/gateway/sampling_params.h"

namespace dsv3::gateway {

struct PromptInput {
  std::optional<std::string> text;  // set for text prompts (tokenized later)
  std::vector<int32_t> ids;         // set for token prompts
};

struct CompletionRequest {
  SamplingParams params;
  std::vector<PromptInput> prompts;
  bool echo = false;
  int64_t logprobs = -1;  // legacy int: -1 absent, 0..max top candidates
};

inline constexpr int kMaxPromptsPerRequest = 64;

ApiOr<CompletionRequest> ParseCompletionRequest(const Json& body, const RequestLimits& limits);

}  // namespace dsv3::gateway
