#include "common/chat_template/chat_template.h"

#include <fstream>
#include <sstream>

#include "common/tokenizer/utf8.h"
#include "nlohmann/json.hpp"

namespace dsv3 {
namespace {

constexpr std::string_view kSubsystem = "chat_template";

// bos_token / eos_token: "text", {"content": "text", ...} or null.
std::string TokenText(const nlohmann::json& config, const char* key) {
  if (!config.contains(key)) return "";
  const auto& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return "";
}

}  // namespace

StatusOr<std::unique_ptr<ChatTemplate>> ChatTemplate::FromTokenizerConfigDir(const std::string& dir) {
  const std::string path = dir + "/tokenizer_config.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(kSubsystem, "cannot open " + path);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  auto t = FromTokenizerConfigJson(buffer.str());
  if (!t.ok()) return absl::Status(t.status().code(), absl::StrCat(t.status().message(), " (in ", path, ")"));
  return t;
}

StatusOr<std::unique_ptr<ChatTemplate>> ChatTemplate::FromTokenizerConfigJson(std::string_view config_json) {
  const nlohmann::json config = nlohmann::json::parse(config_json, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) {
    return InvalidArgument(kSubsystem, "tokenizer_config.json is not a JSON object");
  }
  if (!config.contains("chat_template")) return NotFound(kSubsystem, "tokenizer_config.json has no chat_template");
  const auto& ct = config["chat_template"];
  std::string default_source;
  std::optional<std::string> tool_use_source;
  if (ct.is_string()) {
    default_source = ct.get<std::string>();
  } else if (ct.is_array()) {
    for (const auto& named : ct) {
      if (!named.is_object() || !named.contains("name") || !named.contains("template") ||
          !named["name"].is_string() || !named["template"].is_string()) {
        return InvalidArgument(kSubsystem, "chat_template list entries need string 'name' and 'template'");
      }
      if (named["name"] == "default") default_source = named["template"].get<std::string>();
      if (named["name"] == "tool_use") tool_use_source = named["template"].get<std::string>();
    }
    if (default_source.empty()) return InvalidArgument(kSubsystem, "chat_template list has no 'default' entry");
  } else {
    return InvalidArgument(kSubsystem, "chat_template is neither a string nor a list");
  }
  DSV3_ASSIGN_OR_RETURN(auto t, FromString(default_source, TokenText(config, "bos_token"), TokenText(config, "eos_token")));
  if (tool_use_source) {
    DSV3_ASSIGN_OR_RETURN(t->tool_use_, jinja::JinjaTemplate::Parse(*tool_use_source));
  }
  return t;
}

StatusOr<std::unique_ptr<ChatTemplate>> ChatTemplate::FromString(std::string_view source, std::string bos_token,
                                                                 std::string eos_token) {
  if (!utf8::IsValid(source)) return InvalidArgument(kSubsystem, "template is not valid UTF-8");
  auto t = std::unique_ptr<ChatTemplate>(new ChatTemplate());
  DSV3_ASSIGN_OR_RETURN(t->default_, jinja::JinjaTemplate::Parse(source));
  t->bos_token_ = std::move(bos_token);
  t->eos_token_ = std::move(eos_token);
  return t;
}

StatusOr<RenderedPrompt> ChatTemplate::Render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                              const nlohmann::ordered_json* tools,
                                              const nlohmann::ordered_json* extra_context) const {
  if (!messages.is_array()) return InvalidArgument(kSubsystem, "messages must be a JSON array");
  for (const auto& m : messages) {
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
      return InvalidArgument(kSubsystem, "every message must be an object with a string 'role'");
    }
  }
  // Request data is tainted so that its text can be kept out of control-token matching.
  std::vector<std::pair<std::string, jinja::Value>> context;
  if (extra_context != nullptr) {
    if (!extra_context->is_object()) return InvalidArgument(kSubsystem, "extra template context must be an object");
    for (const auto& [k, v] : extra_context->items()) context.emplace_back(k, jinja::Value::FromJson(v, true));
  }
  context.emplace_back("messages", jinja::Value::FromJson(messages, /*tainted=*/true));
  if (tools != nullptr && !tools->is_null()) {
    if (!tools->is_array()) return InvalidArgument(kSubsystem, "tools must be a JSON array");
    context.emplace_back("tools", jinja::Value::FromJson(*tools, /*tainted=*/true));
  } else {
    // transformers passes tools=None (defined, falsy) when the request has none.
    context.emplace_back("tools", jinja::Value::None());
  }
  context.emplace_back("add_generation_prompt", jinja::Value::Bool(add_generation_prompt));
  context.emplace_back("bos_token", jinja::Value::String(bos_token_));
  context.emplace_back("eos_token", jinja::Value::String(eos_token_));
  const jinja::JinjaTemplate* tmpl =
      tools != nullptr && !tools->is_null() && tool_use_ != nullptr ? tool_use_.get() : default_.get();
  DSV3_ASSIGN_OR_RETURN(jinja::RenderResult r, tmpl->Render(context));
  return RenderedPrompt{std::move(r.text), std::move(r.tainted)};
}

StatusOr<std::vector<int32_t>> EncodePrompt(const BpeTokenizer& tokenizer, const RenderedPrompt& prompt,
                                            UserSpecialTokens mode) {
  EncodeOptions options;
  options.add_special_tokens = false;  // the template already wrote BOS
  if (mode == UserSpecialTokens::kPlainText) options.plain_text_ranges = prompt.user_ranges;
  return tokenizer.Encode(prompt.text, options);
}

}  // namespace dsv3
