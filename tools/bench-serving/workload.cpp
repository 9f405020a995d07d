#include "tools/bench-serving/workload.h"

#include <array>

#include "tools/bench-serving/deterministic_rng.h"

namespace dsv3::bench {

namespace {

// Common English words: each is one token of the DeepSeek-V3 vocabulary with its
// leading space, so N words make roughly N prompt tokens.
constexpr std::array<const char*, 64> kWords = {
    "the",   "of",    "and",   "to",    "in",    "is",    "that",  "for",   "it",    "as",    "was",
    "with",  "be",    "by",    "on",    "not",   "he",    "this",  "are",   "or",    "his",   "from",
    "at",    "which", "but",   "have",  "an",    "had",   "they",  "you",   "were",  "their", "one",
    "all",   "we",    "can",   "her",   "has",   "there", "been",  "if",    "more",  "when",  "will",
    "would", "who",   "so",    "no",    "time",  "people", "water", "world", "house", "light", "river",
    "music", "table", "green", "small", "large", "number", "city",  "night", "story"};

}  // namespace

std::vector<RequestSpec> BuildWorkload(const WorkloadOptions& o) {
  std::vector<RequestSpec> out;
  if (o.count <= 0) return out;
  out.reserve(static_cast<size_t>(o.count));
  DeterministicRng rng(o.seed);
  for (int64_t i = 0; i < o.count; ++i) {
    RequestSpec r;
    const int64_t plen = o.prompt_len.Sample(rng);
    r.output_len = o.output_len.Sample(rng);
    if (o.kind == PromptKind::kTokenIds) {
      r.prompt_ids.reserve(static_cast<size_t>(plen));
      for (int64_t t = 0; t < plen; ++t) r.prompt_ids.push_back(rng.UniformInt(o.min_token_id, o.max_token_id));
    } else {
      for (int64_t t = 0; t < plen; ++t) {
        if (t) r.prompt_text += ' ';
        r.prompt_text += kWords[static_cast<size_t>(rng.UniformInt(0, kWords.size() - 1))];
      }
    }
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace dsv3::bench
