// POST /v1/chat/completions body -> ChatRequest: messages normalised for the chat template
// (content parts flattened to text, developer -> system, tool call arguments as strings),
// tools, logprobs, response_format, plus the shared SamplingParams. Nothing is tokenized
// here; every rejection names the parameter (e.g. "messages[1].content[0].type").
#pragma once

#include <optional>

#include "services/gateway/json_body.h"
#include "services/gateway/sampling_params.h"

namespace dsv3::gateway {

struct ChatRequest {
  SamplingParams params;
  Json messages;               // array of {role, content[, tool_calls, tool_call_id, name]}
  std::optional<Json> tools;   // array of {type: "function", function: {...}} when given
  bool parse_tool_calls = false;  // tools given and tool_choice != "none"
  bool logprobs = false;
  int64_t top_logprobs = 0;
  bool add_generation_prompt = true;    // vLLM extension
  std::optional<Json> template_kwargs;  // vLLM's chat_template_kwargs (e.g. {"thinking": true})
};

ApiOr<ChatRequest> ParseChatRequest(const Json& body, const RequestLimits& limits);

}  // namespace dsv3::gateway
