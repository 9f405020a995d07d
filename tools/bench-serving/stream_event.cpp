#include "tools/bench-serving/stream_event.h"

#include <nlohmann/json.hpp>

namespace dsv3::bench {

namespace {

bool NonEmptyString(const nlohmann::json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() && !it->get_ref<const std::string&>().empty();
}

}  // namespace

StreamEvent ParseStreamEvent(const std::string& data) {
  StreamEvent e;
  if (data == "[DONE]") {
    e.done = true;
    return e;
  }
  const nlohmann::json j = nlohmann::json::parse(data, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    e.malformed = true;
    return e;
  }
  if (auto it = j.find("error"); it != j.end() && !it->is_null()) {
    e.error = it->is_object() && it->contains("message") && (*it)["message"].is_string()
                  ? (*it)["message"].get<std::string>()
                  : it->dump();
    if (e.error.empty()) e.error = "error event";
    return e;
  }
  if (auto it = j.find("choices"); it != j.end() && it->is_array()) {
    for (const auto& c : *it) {
      if (!c.is_object()) continue;
      if (auto f = c.find("finish_reason"); f != c.end() && f->is_string()) e.has_finish = true;
      if (NonEmptyString(c, "text")) e.carries_tokens = true;
      if (auto d = c.find("delta"); d != c.end() && d->is_object()) {
        if (NonEmptyString(*d, "content") || NonEmptyString(*d, "reasoning_content")) e.carries_tokens = true;
        if (auto tc = d->find("tool_calls"); tc != d->end() && tc->is_array() && !tc->empty()) e.carries_tokens = true;
      }
    }
  }
  if (auto u = j.find("usage"); u != j.end() && u->is_object()) {
    e.has_usage = true;
    if (auto p = u->find("prompt_tokens"); p != u->end() && p->is_number_integer()) e.prompt_tokens = p->get<int64_t>();
    if (auto c = u->find("completion_tokens"); c != u->end() && c->is_number_integer()) {
      e.completion_tokens = c->get<int64_t>();
    }
  }
  return e;
}

}  // namespace dsv3::bench
