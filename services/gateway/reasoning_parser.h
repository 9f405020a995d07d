// DeepSeek-R1 style reasoning: the model thinks inside <think>...</think> and then answers.
// The parser splits the streamed text into reasoning_content and content. Templates whose
// generation prompt already ends with "<think>" (R1) make the model start inside the
// reasoning, so the opening tag never appears in the output: `starts_in_reasoning`.
// Tags split across chunks are held back until they are complete or impossible.
#pragma once

#include <string>
#include <string_view>

namespace dsv3::gateway {

class ReasoningParser {
 public:
  explicit ReasoningParser(bool starts_in_reasoning);

  struct Delta {
    std::string reasoning;
    std::string content;
  };
  Delta Push(std::string_view text);
  Delta Flush();  // end of generation: releases held-back text

 private:
  enum class State { kMaybeOpen, kReasoning, kAfterClose, kContent };
  State state_;
  std::string held_;
};

}  // namespace dsv3::gateway
