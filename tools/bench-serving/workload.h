// The requests of one run, drawn from a seed: random token-id prompts of exact lengths
// (for /v1/completions and the gRPC client), or random English words (for chat, where
// the gateway's chat template adds its own tokens), and the output length of each.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tools/bench-serving/length_spec.h"

namespace dsv3::bench {

struct RequestSpec {
  std::vector<int64_t> prompt_ids;  // completions / gRPC: exactly the drawn prompt length
  std::string prompt_text;          // chat: about one token per word
  int64_t output_len = 1;           // max_tokens
};

enum class PromptKind { kTokenIds, kText };

struct WorkloadOptions {
  int64_t count = 0;
  LengthSpec prompt_len;
  LengthSpec output_len;
  uint64_t seed = 0;
  PromptKind kind = PromptKind::kTokenIds;
  // Token ids are drawn uniformly from [min_token_id, max_token_id]: ordinary BPE pieces
  // of the DeepSeek-V3 vocabulary, away from BOS/EOS and the added tokens at 128000+.
  int64_t min_token_id = 100;
  int64_t max_token_id = 99999;
};

std::vector<RequestSpec> BuildWorkload(const WorkloadOptions& o);

}  // namespace dsv3::bench
