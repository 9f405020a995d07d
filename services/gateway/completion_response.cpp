#include "services/gateway/completion_response.h"

namespace dsv3::gateway {

int64_t CodePoints(std::string_view s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

CompletionResponseFormat::CompletionResponseFormat(int n, std::vector<std::string> echo_text,
                                                   std::vector<std::vector<std::string>> echo_tokens, int64_t logprobs)
    : n_(n), echo_text_(std::move(echo_text)), echo_tokens_(std::move(echo_tokens)), logprobs_(logprobs) {}

Json CompletionResponseFormat::Chunk(const JobHeader& h) const {
  Json c;
  c["id"] = h.id;
  c["object"] = "text_completion";
  c["created"] = h.created;
  c["model"] = h.model;
  c["system_fingerprint"] = h.system_fingerprint;
  return c;
}

void CompletionResponseFormat::AppendLogprobs(const std::vector<TokenLogprob>& lps, Json* obj, int64_t* offset) {
  for (const auto& lp : lps) {
    (*obj)["tokens"].push_back(lp.token);
    (*obj)["token_logprobs"].push_back(lp.logprob);
    Json top = Json::object();
    for (const auto& [tok, logprob] : lp.top) top[tok] = logprob;
    (*obj)["top_logprobs"].push_back(std::move(top));
    (*obj)["text_offset"].push_back(*offset);
    *offset += CodePoints(lp.token);
  }
}

void CompletionResponseFormat::AppendEcho(size_t group, Json* obj, int64_t* offset) const {
  if (group >= echo_tokens_.size()) return;
  const auto* lps = group < prompt_lps_.size() ? &prompt_lps_[group] : nullptr;
  for (size_t p = 0; p < echo_tokens_[group].size(); ++p) {
    const std::string& tok = echo_tokens_[group][p];
    (*obj)["tokens"].push_back(tok);
    // The first prompt token has no logprob; the others have theirs once the worker sent them.
    if (lps != nullptr && p < lps->size() && (*lps)[p]) {
      const TokenLogprob& lp = *(*lps)[p];
      (*obj)["token_logprobs"].push_back(lp.logprob);
      Json top = Json::object();
      for (const auto& [t, logprob] : lp.top) top[t] = logprob;
      (*obj)["top_logprobs"].push_back(std::move(top));
    } else {
      (*obj)["token_logprobs"].push_back(nullptr);
      (*obj)["top_logprobs"].push_back(nullptr);
    }
    (*obj)["text_offset"].push_back(*offset);
    *offset += CodePoints(tok);
  }
}

void CompletionResponseFormat::PromptLogprobs(size_t prompt, int64_t start, std::vector<TokenLogprob> lps) {
  if (prompt >= echo_tokens_.size() || start < 1) return;
  if (prompt_lps_.size() < echo_tokens_.size()) prompt_lps_.resize(echo_tokens_.size());
  auto& dst = prompt_lps_[prompt];
  dst.resize(echo_tokens_[prompt].size());
  for (size_t k = 0; k < lps.size() && static_cast<size_t>(start) + k < dst.size(); ++k) {
    dst[static_cast<size_t>(start) + k] = std::move(lps[k]);
  }
}

namespace {
Json EmptyLogprobs() {
  return Json{{"tokens", Json::array()}, {"token_logprobs", Json::array()}, {"top_logprobs", Json::array()},
              {"text_offset", Json::array()}};
}
}  // namespace

std::optional<Json> CompletionResponseFormat::EchoChunk(const JobHeader& h, int i) {
  const size_t group = static_cast<size_t>(i / n_);
  if (group >= echo_text_.size() || echo_text_[group].empty()) return std::nullopt;
  Json choice;
  choice["index"] = i;
  choice["text"] = echo_text_[group];
  if (logprobs_ >= 0) {
    Json lp = EmptyLogprobs();
    AppendEcho(group, &lp, &offsets_[static_cast<size_t>(i)]);
    choice["logprobs"] = std::move(lp);
  } else {
    offsets_[static_cast<size_t>(i)] = CodePoints(echo_text_[group]);
    choice["logprobs"] = nullptr;
  }
  choice["finish_reason"] = nullptr;
  Json c = Chunk(h);
  c["choices"] = Json::array({std::move(choice)});
  return c;
}

std::vector<Json> CompletionResponseFormat::StreamStart(const JobHeader& h, int num_choices) {
  offsets_.assign(static_cast<size_t>(num_choices), 0);
  echo_sent_.assign(static_cast<size_t>(num_choices), false);
  std::vector<Json> out;
  // With logprobs the echo waits for its prompt logprobs (StreamBeforeDelta).
  if (logprobs_ >= 0) return out;
  for (int i = 0; i < num_choices; ++i) {
    echo_sent_[static_cast<size_t>(i)] = true;
    if (auto c = EchoChunk(h, i)) out.push_back(std::move(*c));
  }
  return out;
}

std::vector<Json> CompletionResponseFormat::StreamBeforeDelta(const JobHeader& h, int index) {
  std::vector<Json> out;
  if (index < 0 || static_cast<size_t>(index) >= echo_sent_.size() || echo_sent_[static_cast<size_t>(index)]) return out;
  echo_sent_[static_cast<size_t>(index)] = true;
  if (auto c = EchoChunk(h, index)) out.push_back(std::move(*c));
  return out;
}

Json CompletionResponseFormat::StreamDelta(const JobHeader& h, int index, const ChoiceOutput::Delta& d,
                                           const std::string& finish) {
  const bool has_logprobs = logprobs_ >= 0 && !d.logprobs.empty();
  if (d.content.empty() && !has_logprobs && finish.empty()) return nullptr;
  if (offsets_.size() <= static_cast<size_t>(index)) offsets_.resize(static_cast<size_t>(index) + 1, 0);
  Json choice;
  choice["index"] = index;
  choice["text"] = d.content;
  if (has_logprobs) {
    Json lp = EmptyLogprobs();
    AppendLogprobs(d.logprobs, &lp, &offsets_[static_cast<size_t>(index)]);
    choice["logprobs"] = std::move(lp);
  } else {
    choice["logprobs"] = nullptr;
  }
  choice["finish_reason"] = finish.empty() ? Json(nullptr) : Json(finish);
  Json c = Chunk(h);
  c["choices"] = Json::array({std::move(choice)});
  return c;
}

Json CompletionResponseFormat::UsageChunk(const JobHeader& h, const Json& usage) {
  Json c = Chunk(h);
  c["choices"] = Json::array();
  c["usage"] = usage;
  return c;
}

Json CompletionResponseFormat::Final(const JobHeader& h, const std::vector<ChoiceResult>& choices, const Json& usage) {
  Json out = Chunk(h);
  Json arr = Json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const size_t group = i / static_cast<size_t>(n_);
    const std::string echo = group < echo_text_.size() ? echo_text_[group] : "";
    Json choice;
    choice["index"] = static_cast<int>(i);
    choice["text"] = echo + choices[i].content;
    if (logprobs_ >= 0) {
      Json lp = EmptyLogprobs();
      int64_t offset = 0;
      if (!echo.empty()) AppendEcho(group, &lp, &offset);
      AppendLogprobs(choices[i].logprobs, &lp, &offset);
      choice["logprobs"] = std::move(lp);
    } else {
      choice["logprobs"] = nullptr;
    }
    choice["finish_reason"] = choices[i].finish_reason.empty() ? "stop" : choices[i].finish_reason;
    arr.push_back(std::move(choice));
  }
  out["choices"] = std::move(arr);
  out["usage"] = usage;
  return out;
}

}  // namespace dsv3::gateway
