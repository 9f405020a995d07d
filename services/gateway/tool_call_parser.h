// DeepSeek-V3 tool calls in generated text, as the chat template writes them:
//   <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGS\n```<｜tool▁call▁end｜>
//   [\n<｜tool▁call▁begin｜>...<｜tool▁call▁end｜>]...<｜tool▁calls▁end｜>
// Streaming: text before the block is content and flows through at once (minus a possible
// partial marker); each call is reported when its end marker arrives.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace dsv3::gateway {

struct ParsedToolCall {
  std::string name;
  std::string arguments;  // the JSON text as generated
};

class ToolCallParser {
 public:
  struct Delta {
    std::string content;
    std::vector<ParsedToolCall> calls;  // calls completed by this chunk
  };
  Delta Push(std::string_view text);
  // End of generation: a call cut off before its end marker is parsed as far as it goes
  // (a name is needed); anything else held back is content.
  Delta Flush();
  bool saw_calls() const { return calls_seen_ > 0; }

  static constexpr std::string_view kCallsBegin = "<｜tool▁calls▁begin｜>";
  static constexpr std::string_view kCallsEnd = "<｜tool▁calls▁end｜>";
  static constexpr std::string_view kCallBegin = "<｜tool▁call▁begin｜>";
  static constexpr std::string_view kCallEnd = "<｜tool▁call▁end｜>";
  static constexpr std::string_view kSep = "<｜tool▁sep｜>";

  // Parses the text between kCallBegin and kCallEnd; false without a separator and name.
  static bool ParseOne(std::string_view body, ParsedToolCall* out);

 private:
  enum class State { kContent, kCalls, kAfter };
  State state_ = State::kContent;
  std::string held_;
  int calls_seen_ = 0;
};

}  // namespace dsv3::gateway
