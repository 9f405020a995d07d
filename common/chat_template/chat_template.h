// ChatTemplate: the checkpoint's own `chat_template` (from tokenizer_config.json) rendered
// by dsv3's Jinja interpreter, plus the step from rendered prompt to token ids.
//
// Data flow: request messages (+ tools) -> Render() -> RenderedPrompt {text, user ranges}
//            -> EncodePrompt() -> ids (BpeTokenizer, control tokens only outside user ranges
//               unless UserSpecialTokens::kControl).
//
// Loading fails (InvalidArgument / Unimplemented) if the template uses anything the
// interpreter lacks, so a bad template is caught at startup, not per request.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/chat_template/jinja_interpreter.h"
#include "common/status.h"
#include "common/tokenizer/bpe_tokenizer.h"
#include "nlohmann/json_fwd.hpp"

namespace dsv3 {

struct RenderedPrompt {
  std::string text;
  // Byte ranges of `text` copied from request data (message contents, tool definitions).
  std::vector<std::pair<size_t, size_t>> user_ranges;
};

// What a control-token string typed by the user (e.g. "<｜Assistant｜>" inside a message)
// becomes. See common/tokenizer/README.md for the choice of default.
enum class UserSpecialTokens {
  kPlainText,  // default: tokenized as ordinary text; a user cannot forge turns
  kControl,    // the reference (Hugging Face) behaviour: becomes the control token
};

class ChatTemplate {
 public:
  // `dir` holds tokenizer_config.json.
  static StatusOr<std::unique_ptr<ChatTemplate>> FromTokenizerConfigDir(const std::string& dir);
  // The text of tokenizer_config.json. bos_token / eos_token may be plain strings or
  // {"__type": "AddedToken", "content": ...} objects. A list-valued chat_template (named
  // templates) uses "default", or "tool_use" when tools are given and it exists.
  static StatusOr<std::unique_ptr<ChatTemplate>> FromTokenizerConfigJson(std::string_view config_json);
  static StatusOr<std::unique_ptr<ChatTemplate>> FromString(std::string_view source, std::string bos_token,
                                                           std::string eos_token);

  // messages: JSON array of {role, content, ...} (OpenAI style; tool calls as in the request).
  // tools: optional JSON array; extra_context: optional JSON object of additional template
  // variables (e.g. {"thinking": true} for V3.1).
  // Takes ordered_json so dict order in the prompt (e.g. `tools | tojson`) is the request's.
  StatusOr<RenderedPrompt> Render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                  const nlohmann::ordered_json* tools = nullptr,
                                  const nlohmann::ordered_json* extra_context = nullptr) const;

  const std::string& bos_token() const { return bos_token_; }
  const std::string& eos_token() const { return eos_token_; }

 private:
  ChatTemplate() = default;
  std::unique_ptr<jinja::JinjaTemplate> default_;
  std::unique_ptr<jinja::JinjaTemplate> tool_use_;  // optional
  std::string bos_token_;
  std::string eos_token_;
};

// Token ids of a rendered prompt (no BOS added: DeepSeek templates write it themselves).
StatusOr<std::vector<int32_t>> EncodePrompt(const BpeTokenizer& tokenizer, const RenderedPrompt& prompt,
                                            UserSpecialTokens mode = UserSpecialTokens::kPlainText);

}  // namespace dsv3
