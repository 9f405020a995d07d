#include "common/sampling/sampling_config.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <limits>
#include <string>

namespace dsv3 {
namespace {

// "3", "0.5", "1e-07", "nan": how a client would have written the number.
std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

Status Bad(const std::string& msg) { return absl::InvalidArgumentError(msg); }

// NaN fails both comparisons, so it is rejected too.
bool InClosed(float v, float lo, float hi) { return v >= lo && v <= hi; }

}  // namespace

Status ValidateSamplingConfig(const SamplingConfig& c, int64_t vocab_size) {
  if (vocab_size <= 0 || vocab_size > std::numeric_limits<int32_t>::max()) {
    return Bad(StrCat("vocabulary size must be in [1, 2^31), got ", vocab_size));
  }
  if (!InClosed(c.temperature, 0.0f, 2.0f)) {
    return Bad(StrCat("temperature must be in [0, 2], got ", Num(c.temperature)));
  }
  if (!(c.top_p > 0.0f && c.top_p <= 1.0f)) {
    return Bad(StrCat("top_p must be in (0, 1], got ", Num(c.top_p)));
  }
  if (c.top_k < -1) {
    return Bad(StrCat("top_k must be -1 or 0 (off) or a positive integer, got ", c.top_k));
  }
  if (!InClosed(c.min_p, 0.0f, 1.0f)) {
    return Bad(StrCat("min_p must be in [0, 1], got ", Num(c.min_p)));
  }
  if (!InClosed(c.presence_penalty, -2.0f, 2.0f)) {
    return Bad(StrCat("presence_penalty must be in [-2, 2], got ", Num(c.presence_penalty)));
  }
  if (!InClosed(c.frequency_penalty, -2.0f, 2.0f)) {
    return Bad(StrCat("frequency_penalty must be in [-2, 2], got ", Num(c.frequency_penalty)));
  }
  if (!(c.repetition_penalty > 0.0f && c.repetition_penalty <= 2.0f)) {
    return Bad(StrCat("repetition_penalty must be in (0, 2], got ", Num(c.repetition_penalty)));
  }
  if (static_cast<int64_t>(c.logit_bias.size()) > kMaxLogitBiasEntries) {
    return Bad(StrCat("logit_bias: at most ", kMaxLogitBiasEntries, " entries, got ", c.logit_bias.size()));
  }
  for (const auto& [id, bias] : c.logit_bias) {
    if (id < 0 || id >= vocab_size) {
      return Bad(StrCat("logit_bias: token id ", id, " outside the vocabulary [0, ", vocab_size, ")"));
    }
    if (!InClosed(bias, -100.0f, 100.0f)) {
      return Bad(StrCat("logit_bias: bias for token id ", id, " must be in [-100, 100], got ", Num(bias)));
    }
  }
  if (c.logit_bias.size() > 1) {
    std::vector<int64_t> ids;
    ids.reserve(c.logit_bias.size());
    for (const auto& e : c.logit_bias) ids.push_back(e.first);
    std::sort(ids.begin(), ids.end());
    auto dup = std::adjacent_find(ids.begin(), ids.end());
    if (dup != ids.end()) return Bad(StrCat("logit_bias: token id ", *dup, " appears more than once"));
  }
  if (c.logprobs < 0 || c.logprobs > kMaxLogprobs) {
    return Bad(StrCat("logprobs must be in [0, ", kMaxLogprobs, "], got ", c.logprobs));
  }
  if (c.top_logprobs < 0 || c.top_logprobs > kMaxTopLogprobs) {
    return Bad(StrCat("top_logprobs must be in [0, ", kMaxTopLogprobs, "], got ", c.top_logprobs));
  }
  return absl::OkStatus();
}

}  // namespace dsv3
