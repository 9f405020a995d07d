#include "services/gateway/sampling_params.h"

#include <charconv>

namespace dsv3::gateway {

namespace {

std::optional<ApiError> ParseStop(const Json& body, const RequestLimits& limits, std::vector<std::string>* out) {
  auto it = body.find("stop");
  if (it == body.end() || it->is_null()) return std::nullopt;
  std::vector<std::string> stops;
  if (it->is_string()) {
    stops.push_back(it->get<std::string>());
  } else if (it->is_array()) {
    if (static_cast<int>(it->size()) > limits.max_stop) {
      return BadRequest("stop", StrCat("'stop' may hold at most ", limits.max_stop, " strings"));
    }
    for (const auto& s : *it) {
      if (!s.is_string()) return BadRequest("stop", "'stop' must be a string or a list of strings");
      stops.push_back(s.get<std::string>());
    }
  } else {
    return BadRequest("stop", "'stop' must be a string or a list of strings");
  }
  for (const auto& s : stops) {
    if (s.empty()) return BadRequest("stop", "'stop' strings must not be empty");
    if (s.size() > limits.max_stop_bytes) {
      return BadRequest("stop", StrCat("each 'stop' string must be at most ", limits.max_stop_bytes, " bytes"));
    }
  }
  *out = std::move(stops);
  return std::nullopt;
}

std::optional<ApiError> ParseLogitBias(const Json& body, const RequestLimits& limits,
                                       std::vector<std::pair<int64_t, float>>* out) {
  auto it = body.find("logit_bias");
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_object()) return BadRequest("logit_bias", "'logit_bias' must be an object of token id -> bias");
  if (static_cast<int>(it->size()) > limits.max_logit_bias) {
    return BadRequest("logit_bias", StrCat("'logit_bias' may hold at most ", limits.max_logit_bias, " entries"));
  }
  for (const auto& [key, value] : it->items()) {
    int64_t id = -1;
    const auto [ptr, ec] = std::from_chars(key.data(), key.data() + key.size(), id);
    if (ec != std::errc() || ptr != key.data() + key.size() || id < 0 || id >= limits.vocab_size) {
      return BadRequest("logit_bias", StrCat("'logit_bias' key '", key, "' is not a token id below ",
                                             limits.vocab_size));
    }
    if (!value.is_number()) return BadRequest("logit_bias", "'logit_bias' values must be numbers");
    const double b = value.get<double>();
    if (!(b >= -100.0 && b <= 100.0)) {
      return BadRequest("logit_bias", "'logit_bias' values must be between -100 and 100");
    }
    out->emplace_back(id, static_cast<float>(b));
  }
  return std::nullopt;
}

}  // namespace

std::optional<ApiError> ParseSamplingParams(const Json& body, const RequestLimits& limits,
                                            const std::vector<const char*>& max_tokens_keys, SamplingParams* p,
                                            int64_t min_max_tokens) {
  GW_RETURN_IF_ERROR(ReadString(body, "model", &p->model));
  for (const char* key : max_tokens_keys) {
    auto it = body.find(key);
    if (it == body.end() || it->is_null()) continue;
    int64_t v = 0;
    GW_RETURN_IF_ERROR(ReadInt(body, key, &v));
    if (v < min_max_tokens) return RangeError(key, StrCat("at least ", min_max_tokens));
    p->max_tokens = v;
    break;
  }
  GW_RETURN_IF_ERROR(ReadNumber(body, "temperature", &p->temperature));
  if (p->temperature < 0 || p->temperature > 2) return RangeError("temperature", "between 0 and 2");
  GW_RETURN_IF_ERROR(ReadNumber(body, "top_p", &p->top_p));
  if (!(p->top_p > 0 && p->top_p <= 1)) return RangeError("top_p", "greater than 0 and at most 1");
  GW_RETURN_IF_ERROR(ReadInt(body, "top_k", &p->top_k));
  if (p->top_k < -1) return RangeError("top_k", "-1 (off), 0 (off) or a positive integer");
  if (p->top_k == -1) p->top_k = 0;
  if (p->top_k > limits.vocab_size) p->top_k = 0;  // larger than the vocabulary: no restriction
  GW_RETURN_IF_ERROR(ReadNumber(body, "min_p", &p->min_p));
  if (p->min_p < 0 || p->min_p > 1) return RangeError("min_p", "between 0 and 1");
  GW_RETURN_IF_ERROR(ReadInt(body, "n", &p->n));
  if (p->n < 1 || p->n > limits.max_n) return RangeError("n", StrCat("between 1 and ", limits.max_n));
  GW_RETURN_IF_ERROR(ParseStop(body, limits, &p->stop));
  if (auto it = body.find("stop_token_ids"); it != body.end() && !it->is_null()) {
    if (!it->is_array()) return BadRequest("stop_token_ids", "'stop_token_ids' must be a list of token ids");
    for (const auto& v : *it) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= limits.vocab_size) {
        return BadRequest("stop_token_ids", "'stop_token_ids' must be a list of token ids");
      }
      p->stop_token_ids.push_back(v.get<int64_t>());
    }
    if (static_cast<int>(p->stop_token_ids.size()) > limits.max_logit_bias) {
      return BadRequest("stop_token_ids", "'stop_token_ids' is too long");
    }
  }
  if (auto it = body.find("seed"); it != body.end() && !it->is_null()) {
    if (it->is_number_unsigned()) {
      p->seed = it->get<uint64_t>();
    } else {
      int64_t s = 0;
      GW_RETURN_IF_ERROR(ReadInt(body, "seed", &s));
      p->seed = static_cast<uint64_t>(s);  // negative seeds are valid in OpenAI: reinterpret
    }
  }
  GW_RETURN_IF_ERROR(ReadNumber(body, "presence_penalty", &p->presence_penalty));
  if (p->presence_penalty < -2 || p->presence_penalty > 2) return RangeError("presence_penalty", "between -2 and 2");
  GW_RETURN_IF_ERROR(ReadNumber(body, "frequency_penalty", &p->frequency_penalty));
  if (p->frequency_penalty < -2 || p->frequency_penalty > 2) return RangeError("frequency_penalty", "between -2 and 2");
  GW_RETURN_IF_ERROR(ReadNumber(body, "repetition_penalty", &p->repetition_penalty));
  if (!(p->repetition_penalty > 0 && p->repetition_penalty <= 2)) {
    return RangeError("repetition_penalty", "greater than 0 and at most 2");
  }
  GW_RETURN_IF_ERROR(ParseLogitBias(body, limits, &p->logit_bias));
  GW_RETURN_IF_ERROR(ReadBool(body, "ignore_eos", &p->ignore_eos));
  GW_RETURN_IF_ERROR(ReadBool(body, "stream", &p->stream));
  if (auto it = body.find("stream_options"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) return BadRequest("stream_options", "'stream_options' must be an object");
    if (auto e = ReadBool(*it, "include_usage", &p->include_usage)) {
      return BadRequest("stream_options.include_usage", "'stream_options.include_usage' must be a boolean");
    }
  }
  GW_RETURN_IF_ERROR(ReadString(body, "user", &p->user));
  return std::nullopt;
}

void ToGenerateRequest(const SamplingParams& p, int64_t max_tokens, attention::v1::GenerateRequest* req) {
  auto* s = req->mutable_sampling();
  s->set_temperature(static_cast<float>(p.temperature));
  s->set_top_p(static_cast<float>(p.top_p));
  s->set_top_k(static_cast<int32_t>(p.top_k));
  s->set_min_p(static_cast<float>(p.min_p));
  if (p.seed) {
    s->set_has_seed(true);
    s->set_seed(*p.seed);
  }
  s->set_presence_penalty(static_cast<float>(p.presence_penalty));
  s->set_frequency_penalty(static_cast<float>(p.frequency_penalty));
  s->set_repetition_penalty(static_cast<float>(p.repetition_penalty));
  for (const auto& [id, bias] : p.logit_bias) (*s->mutable_logit_bias())[id] = bias;
  s->set_json_object(p.json_object);
  req->set_max_tokens(static_cast<int32_t>(max_tokens));
  req->set_n(static_cast<int32_t>(p.n));
  for (int64_t id : p.stop_token_ids) req->add_stop_token_ids(id);
  req->set_ignore_eos(p.ignore_eos);
}

}  // namespace dsv3::gateway
