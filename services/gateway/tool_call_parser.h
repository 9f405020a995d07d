// DeepSeek-V3 tool calls in generated text, as the chat template writes them:
//   <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGS\n```<｜tool▁call▁end｜>
//   [\n<｜tool▁call▁begin｜>...<｜tool▁call▁end｜>]...<｜tool▁calls▁end｜>
// Streaming: text before the block is content and flows through at once (minus a possible
// partial marker). Each call is reported whole when its end marker arrives (`calls`, for
// non-streamed answers) and also as it arrives (`fragments`, OpenAI's streamed tool_calls
// deltas): its name once the name line is complete, then pieces of its arguments, holding
// back only what may still turn out to be the closing fence or end marker. A call's
// fragments concatenate to exactly the arguments of its whole form.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace dsv3::gateway {

struct ParsedToolCall {
  std::string name;
  std::string arguments;  // the JSON text as generated
};

struct ToolCallFragment {
  int index = 0;          // which call of this output (0, 1, ...)
  std::string name;       // on a call's first fragment only
  std::string arguments;  // the next piece of its arguments
};

class ToolCallParser {
 public:
  struct Delta {
    std::string content;
    std::vector<ParsedToolCall> calls;  // calls completed by this chunk
    std::vector<ToolCallFragment> fragments;
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
  // Fragments of the call whose body (after kCallBegin) has arrived this far.
  void StreamPartial(std::string_view body, Delta* d);
  // The call ended (parsed whole): its last fragment, then ready for the next call.
  void FinishCall(ParsedToolCall call, Delta* d);

  State state_ = State::kContent;
  std::string held_;
  int calls_seen_ = 0;
  bool name_sent_ = false;  // the current call's first fragment went out
  size_t args_sent_ = 0;    // bytes of its arguments sent
};

}  // namespace dsv3::gateway
