#include "services/gateway/completion_request.h"

namespace dsv3::gateway {

namespace {

ApiOr<std::vector<int32_t>> ReadIds(const Json& arr, const RequestLimits& limits) {
  std::vector<int32_t> ids;
  ids.reserve(arr.size());
  for (const auto& v : arr) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= limits.vocab_size) {
      return BadRequest("prompt", StrCat("'prompt' token ids must be integers in [0, ", limits.vocab_size, ")"));
    }
    ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
  }
  if (ids.empty()) return BadRequest("prompt", "'prompt' must not be empty");
  return ids;
}

ApiOr<std::vector<PromptInput>> ParsePrompts(const Json& body, const RequestLimits& limits) {
  auto it = body.find("prompt");
  if (it == body.end() || it->is_null()) return BadRequest("prompt", "'prompt' is required");
  std::vector<PromptInput> out;
  const Json& p = *it;
  auto text = [&](const Json& s) -> std::optional<ApiError> {
    if (s.get<std::string>().empty()) return BadRequest("prompt", "'prompt' must not be empty");
    out.push_back(PromptInput{s.get<std::string>(), {}});
    return std::nullopt;
  };
  if (p.is_string()) {
    GW_RETURN_IF_ERROR(text(p));
    return out;
  }
  if (!p.is_array() || p.empty()) {
    return BadRequest("prompt", "'prompt' must be a non-empty string, list of strings, or list of token ids");
  }
  if (p[0].is_number()) {
    auto ids = ReadIds(p, limits);
    if (!ids.ok()) return ids.error();
    out.push_back(PromptInput{std::nullopt, std::move(*ids)});
    return out;
  }
  if (static_cast<int>(p.size()) > kMaxPromptsPerRequest) {
    return BadRequest("prompt", StrCat("at most ", kMaxPromptsPerRequest, " prompts per request"));
  }
  for (const auto& e : p) {
    if (e.is_string()) {
      GW_RETURN_IF_ERROR(text(e));
    } else if (e.is_array()) {
      auto ids = ReadIds(e, limits);
      if (!ids.ok()) return ids.error();
      out.push_back(PromptInput{std::nullopt, std::move(*ids)});
    } else {
      return BadRequest("prompt", "'prompt' list entries must be strings or lists of token ids");
    }
  }
  return out;
}

}  // namespace

ApiOr<CompletionRequest> ParseCompletionRequest(const Json& body, const RequestLimits& limits) {
  CompletionRequest r;
  auto prompts = ParsePrompts(body, limits);
  if (!prompts.ok()) return prompts.error();
  r.prompts = std::move(*prompts);
  // max_tokens 0 with echo scores the prompt (echo + logprobs) without generating.
  GW_RETURN_IF_ERROR(ParseSamplingParams(body, limits, {"max_tokens"}, &r.params, /*min_max_tokens=*/0));
  // The legacy API defaults to 16 tokens, unlike chat.
  if (!r.params.max_tokens && !body.contains("max_tokens")) r.params.max_tokens = 16;
  GW_RETURN_IF_ERROR(ReadBool(body, "echo", &r.echo));
  if (r.params.max_tokens && *r.params.max_tokens == 0 && !r.echo) {
    return RangeError("max_tokens", "at least 1 (0 only with echo, to score the prompt)");
  }
  if (auto it = body.find("logprobs"); it != body.end() && !it->is_null()) {
    if (it->is_boolean()) return BadRequest("logprobs", "'logprobs' must be an integer for /v1/completions");
    GW_RETURN_IF_ERROR(ReadInt(body, "logprobs", &r.logprobs));
    if (r.logprobs < 0 || r.logprobs > limits.max_top_logprobs) {
      return RangeError("logprobs", StrCat("between 0 and ", limits.max_top_logprobs));
    }
  }
  std::string suffix;
  GW_RETURN_IF_ERROR(ReadString(body, "suffix", &suffix));
  if (!suffix.empty()) return BadRequest("suffix", "'suffix' is not supported");
  int64_t best_of = 0;
  GW_RETURN_IF_ERROR(ReadInt(body, "best_of", &best_of));
  if (best_of > 1 && best_of != r.params.n) return BadRequest("best_of", "'best_of' other than n is not supported");
  if (static_cast<int64_t>(r.prompts.size()) * r.params.n > kMaxPromptsPerRequest) {
    return BadRequest("n", StrCat("prompts x n must be at most ", kMaxPromptsPerRequest));
  }
  return r;
}

}  // namespace dsv3::gateway
