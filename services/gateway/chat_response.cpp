#include "services/gateway/chat_response.h"

#include <random>

namespace dsv3::gateway {

std::string NewToolCallId() {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  thread_local std::mt19937_64 rng(std::random_device{}());
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) id += kAlphabet[rng() % (sizeof(kAlphabet) - 1)];
  return id;
}

namespace {
Json Bytes(const std::string& s) {
  Json b = Json::array();
  for (unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}

Json ToolCallJson(const ParsedToolCall& c, int index, bool with_index) {
  Json j;
  if (with_index) j["index"] = index;
  j["id"] = NewToolCallId();
  j["type"] = "function";
  j["function"] = Json{{"name", c.name}, {"arguments", c.arguments}};
  return j;
}
}  // namespace

ChatResponseFormat::ChatResponseFormat(bool logprobs, bool reasoning_field)
    : logprobs_(logprobs), reasoning_field_(reasoning_field) {}

Json ChatResponseFormat::LogprobsContent(const std::vector<TokenLogprob>& lps) {
  Json content = Json::array();
  for (const auto& lp : lps) {
    Json e;
    e["token"] = lp.token;
    e["logprob"] = lp.logprob;
    e["bytes"] = Bytes(lp.token);
    Json top = Json::array();
    for (const auto& [tok, logprob] : lp.top) top.push_back(Json{{"token", tok}, {"logprob", logprob}, {"bytes", Bytes(tok)}});
    e["top_logprobs"] = std::move(top);
    content.push_back(std::move(e));
  }
  return Json{{"content", std::move(content)}};
}

Json ChatResponseFormat::Chunk(const JobHeader& h) const {
  Json c;
  c["id"] = h.id;
  c["object"] = "chat.completion.chunk";
  c["created"] = h.created;
  c["model"] = h.model;
  c["system_fingerprint"] = h.system_fingerprint;
  return c;
}

std::vector<Json> ChatResponseFormat::StreamStart(const JobHeader& h, int num_choices) {
  std::vector<Json> out;
  for (int i = 0; i < num_choices; ++i) {
    Json c = Chunk(h);
    Json choice;
    choice["index"] = i;
    choice["delta"] = Json{{"role", "assistant"}, {"content", ""}};
    choice["logprobs"] = nullptr;
    choice["finish_reason"] = nullptr;
    c["choices"] = Json::array({std::move(choice)});
    out.push_back(std::move(c));
  }
  return out;
}

Json ChatResponseFormat::StreamDelta(const JobHeader& h, int index, const ChoiceOutput::Delta& d,
                                     const std::string& finish) {
  Json delta = Json::object();
  if (!d.reasoning.empty()) delta["reasoning_content"] = d.reasoning;
  if (!d.content.empty()) delta["content"] = d.content;
  if (!d.call_pieces.empty()) {
    // OpenAI's streamed form: a call's first delta has its id, type and name, the next
    // ones more of its arguments; clients join them by index.
    Json calls = Json::array();
    for (const auto& f : d.call_pieces) {
      Json j;
      j["index"] = f.index;
      if (!f.name.empty()) {
        j["id"] = NewToolCallId();
        j["type"] = "function";
        j["function"] = Json{{"name", f.name}, {"arguments", f.arguments}};
      } else {
        j["function"] = Json{{"arguments", f.arguments}};
      }
      calls.push_back(std::move(j));
    }
    delta["tool_calls"] = std::move(calls);
  }
  const bool has_logprobs = logprobs_ && !d.logprobs.empty();
  if (delta.empty() && !has_logprobs && finish.empty()) return nullptr;
  Json choice;
  choice["index"] = index;
  choice["delta"] = std::move(delta);
  choice["logprobs"] = has_logprobs ? LogprobsContent(d.logprobs) : Json(nullptr);
  choice["finish_reason"] = finish.empty() ? Json(nullptr) : Json(finish);
  Json c = Chunk(h);
  c["choices"] = Json::array({std::move(choice)});
  return c;
}

Json ChatResponseFormat::UsageChunk(const JobHeader& h, const Json& usage) {
  Json c = Chunk(h);
  c["choices"] = Json::array();
  c["usage"] = usage;
  return c;
}

Json ChatResponseFormat::Final(const JobHeader& h, const std::vector<ChoiceResult>& choices, const Json& usage) {
  Json out;
  out["id"] = h.id;
  out["object"] = "chat.completion";
  out["created"] = h.created;
  out["model"] = h.model;
  out["system_fingerprint"] = h.system_fingerprint;
  Json arr = Json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const ChoiceResult& r = choices[i];
    Json msg;
    msg["role"] = "assistant";
    msg["content"] = r.content.empty() && !r.calls.empty() ? Json(nullptr) : Json(r.content);
    if (reasoning_field_) msg["reasoning_content"] = r.reasoning.empty() ? Json(nullptr) : Json(r.reasoning);
    if (!r.calls.empty()) {
      Json calls = Json::array();
      for (size_t k = 0; k < r.calls.size(); ++k) calls.push_back(ToolCallJson(r.calls[k], static_cast<int>(k), false));
      msg["tool_calls"] = std::move(calls);
    }
    Json choice;
    choice["index"] = static_cast<int>(i);
    choice["message"] = std::move(msg);
    choice["logprobs"] = logprobs_ ? LogprobsContent(r.logprobs) : Json(nullptr);
    choice["finish_reason"] = r.finish_reason.empty() ? "stop" : r.finish_reason;
    arr.push_back(std::move(choice));
  }
  out["choices"] = std::move(arr);
  out["usage"] = usage;
  return out;
}

}  // namespace dsv3::gateway
