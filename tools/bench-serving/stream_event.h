// What one SSE event of an OpenAI streaming answer means for the measurements: the end
// ([DONE]), an error, text carrying tokens (completions `text`, chat `delta.content` or
// `delta.reasoning_content` / tool-call arguments), usage.
#pragma once

#include <cstdint>
#include <string>

namespace dsv3::bench {

struct StreamEvent {
  bool done = false;            // "[DONE]"
  bool malformed = false;       // not JSON / not an object
  std::string error;            // an {"error": ...} event
  bool carries_tokens = false;  // some choice got text
  bool has_finish = false;      // some choice has a finish_reason
  bool has_usage = false;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

StreamEvent ParseStreamEvent(const std::string& data);

}  // namespace dsv3::bench
