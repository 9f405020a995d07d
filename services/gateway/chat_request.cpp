#include "services/gateway/chat_request.h"

namespace dsv3::gateway {

namespace {

ApiOr<std::string> FlattenContent(const Json& content, const std::string& param) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) return BadRequest(param, StrCat("'", param, "' must be a string or a list of content parts"));
  std::string text;
  for (size_t j = 0; j < content.size(); ++j) {
    const Json& part = content[j];
    const std::string pp = StrCat(param, "[", j, "]");
    if (!part.is_object()) return BadRequest(pp, StrCat("'", pp, "' must be an object"));
    auto type = part.find("type");
    if (type == part.end() || !type->is_string()) return BadRequest(pp + ".type", StrCat("'", pp, ".type' is required"));
    if (*type != "text") {
      return BadRequest(pp + ".type", StrCat("content part type '", type->get<std::string>(), "' is not supported (",
                                             "this model accepts text only)"));
    }
    auto t = part.find("text");
    if (t == part.end() || !t->is_string()) return BadRequest(pp + ".text", StrCat("'", pp, ".text' must be a string"));
    // Parts are joined with a newline, as vLLM does.
    if (j > 0) text += '\n';
    text += t->get<std::string>();
  }
  return text;
}

ApiOr<Json> NormalizeToolCalls(const Json& calls, const std::string& param) {
  if (!calls.is_array()) return BadRequest(param, StrCat("'", param, "' must be a list"));
  Json out = Json::array();
  for (size_t k = 0; k < calls.size(); ++k) {
    const Json& c = calls[k];
    const std::string cp = StrCat(param, "[", k, "]");
    if (!c.is_object()) return BadRequest(cp, StrCat("'", cp, "' must be an object"));
    auto fn = c.find("function");
    if (fn == c.end() || !fn->is_object()) return BadRequest(cp + ".function", StrCat("'", cp, ".function' is required"));
    auto name = fn->find("name");
    if (name == fn->end() || !name->is_string()) {
      return BadRequest(cp + ".function.name", StrCat("'", cp, ".function.name' must be a string"));
    }
    std::string args = "{}";
    if (auto a = fn->find("arguments"); a != fn->end() && !a->is_null()) {
      args = a->is_string() ? a->get<std::string>() : DumpJson(*a);
    }
    Json nc;
    if (auto id = c.find("id"); id != c.end() && id->is_string()) nc["id"] = *id;
    nc["type"] = "function";
    nc["function"] = Json{{"name", *name}, {"arguments", args}};
    out.push_back(std::move(nc));
  }
  return out;
}

ApiOr<Json> NormalizeMessages(const Json& body) {
  auto it = body.find("messages");
  if (it == body.end() || it->is_null()) return BadRequest("messages", "'messages' is required");
  if (!it->is_array()) return BadRequest("messages", "'messages' must be a list of messages");
  if (it->empty()) return BadRequest("messages", "'messages' must not be empty");
  Json out = Json::array();
  for (size_t i = 0; i < it->size(); ++i) {
    const Json& m = (*it)[i];
    const std::string mp = StrCat("messages[", i, "]");
    if (!m.is_object()) return BadRequest(mp, StrCat("'", mp, "' must be an object"));
    auto role_it = m.find("role");
    if (role_it == m.end() || !role_it->is_string()) return BadRequest(mp + ".role", StrCat("'", mp, ".role' must be a string"));
    std::string role = role_it->get<std::string>();
    if (role == "developer") role = "system";  // the newer OpenAI name for the system role
    if (role != "system" && role != "user" && role != "assistant" && role != "tool") {
      return BadRequest(mp + ".role", StrCat("unknown role '", role, "' (system, developer, user, assistant, tool)"));
    }
    Json nm;
    nm["role"] = role;
    auto content = m.find("content");
    const bool has_content = content != m.end() && !content->is_null();
    Json tool_calls;
    if (role == "assistant") {
      if (auto tc = m.find("tool_calls"); tc != m.end() && !tc->is_null()) {
        auto calls = NormalizeToolCalls(*tc, mp + ".tool_calls");
        if (!calls.ok()) return calls.error();
        if (!calls->empty()) tool_calls = std::move(*calls);
      }
    }
    if (has_content) {
      auto text = FlattenContent(*content, mp + ".content");
      if (!text.ok()) return text.error();
      // The DeepSeek templates render tool calls only when content is none.
      if (!tool_calls.is_null() && text->empty()) nm["content"] = nullptr;
      else nm["content"] = std::move(*text);
    } else if (role == "assistant") {
      nm["content"] = tool_calls.is_null() ? Json("") : Json(nullptr);
    } else {
      return BadRequest(mp + ".content", StrCat("'", mp, ".content' is required"));
    }
    if (!tool_calls.is_null()) nm["tool_calls"] = std::move(tool_calls);
    if (auto id = m.find("tool_call_id"); id != m.end() && id->is_string()) nm["tool_call_id"] = *id;
    if (auto name = m.find("name"); name != m.end() && name->is_string()) nm["name"] = *name;
    out.push_back(std::move(nm));
  }
  return out;
}

std::optional<ApiError> ParseTools(const Json& body, ChatRequest* r) {
  auto it = body.find("tools");
  if (it != body.end() && !it->is_null()) {
    if (!it->is_array()) return BadRequest("tools", "'tools' must be a list");
    for (size_t i = 0; i < it->size(); ++i) {
      const Json& t = (*it)[i];
      const std::string tp = StrCat("tools[", i, "]");
      if (!t.is_object()) return BadRequest(tp, StrCat("'", tp, "' must be an object"));
      if (auto type = t.find("type"); type != t.end() && (!type->is_string() || *type != "function")) {
        return BadRequest(tp + ".type", "only tools of type 'function' are supported");
      }
      auto fn = t.find("function");
      if (fn == t.end() || !fn->is_object()) return BadRequest(tp + ".function", StrCat("'", tp, ".function' is required"));
      auto name = fn->find("name");
      if (name == fn->end() || !name->is_string() || name->get<std::string>().empty()) {
        return BadRequest(tp + ".function.name", StrCat("'", tp, ".function.name' must be a non-empty string"));
      }
      if (auto params = fn->find("parameters"); params != fn->end() && !params->is_null() && !params->is_object()) {
        return BadRequest(tp + ".function.parameters", "'parameters' must be a JSON schema object");
      }
    }
    if (!it->empty()) r->tools = *it;
  }
  std::string choice = "auto";
  if (auto tc = body.find("tool_choice"); tc != body.end() && !tc->is_null()) {
    if (tc->is_string()) {
      choice = tc->get<std::string>();
      if (choice != "none" && choice != "auto" && choice != "required") {
        return BadRequest("tool_choice", "'tool_choice' must be 'none', 'auto', 'required' or a function");
      }
    } else if (tc->is_object()) {
      choice = "named";
    } else {
      return BadRequest("tool_choice", "'tool_choice' must be a string or an object");
    }
  }
  if (choice == "required" || choice == "named") {
    // Forcing a call needs constrained decoding, which the workers do not do yet.
    return BadRequest("tool_choice", "tool_choice 'required' or a named function needs constrained decoding, "
                                     "which is not supported yet; use 'auto'");
  }
  r->parse_tool_calls = r->tools.has_value() && choice != "none";
  if (choice == "none") r->tools.reset();
  return std::nullopt;
}

}  // namespace

ApiOr<ChatRequest> ParseChatRequest(const Json& body, const RequestLimits& limits) {
  ChatRequest r;
  auto messages = NormalizeMessages(body);
  if (!messages.ok()) return messages.error();
  r.messages = std::move(*messages);
  GW_RETURN_IF_ERROR(ParseSamplingParams(body, limits, {"max_completion_tokens", "max_tokens"}, &r.params));
  GW_RETURN_IF_ERROR(ParseTools(body, &r));
  GW_RETURN_IF_ERROR(ReadBool(body, "logprobs", &r.logprobs));
  GW_RETURN_IF_ERROR(ReadInt(body, "top_logprobs", &r.top_logprobs));
  if (r.top_logprobs < 0 || r.top_logprobs > limits.max_top_logprobs) {
    return RangeError("top_logprobs", StrCat("between 0 and ", limits.max_top_logprobs));
  }
  if (r.top_logprobs > 0 && !r.logprobs) return BadRequest("top_logprobs", "'top_logprobs' needs 'logprobs': true");
  if (auto rf = body.find("response_format"); rf != body.end() && !rf->is_null()) {
    if (!rf->is_object()) return BadRequest("response_format", "'response_format' must be an object");
    auto type = rf->find("type");
    if (type == rf->end() || !type->is_string()) return BadRequest("response_format", "'response_format.type' is required");
    if (*type == "json_object") {
      r.params.json_object = true;  // the workers constrain the output to one JSON object
    } else if (*type == "json_schema") {
      return BadRequest("response_format",
                        "'json_schema' needs schema-constrained decoding, which is not supported yet "
                        "('json_object' is)");
    } else if (*type != "text") {
      return BadRequest("response_format", "'response_format.type' must be 'text', 'json_object' or 'json_schema'");
    }
  }
  GW_RETURN_IF_ERROR(ReadBool(body, "add_generation_prompt", &r.add_generation_prompt));
  if (auto kw = body.find("chat_template_kwargs"); kw != body.end() && !kw->is_null()) {
    if (!kw->is_object()) return BadRequest("chat_template_kwargs", "'chat_template_kwargs' must be an object");
    r.template_kwargs = *kw;
  }
  return r;
}

}  // namespace dsv3::gateway
