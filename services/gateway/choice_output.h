// ChoiceOutput: one choice's token stream turned into what the client sees.
//
//   token ids -> IncrementalDetokenizer (special tokens dropped, UTF-8 held until whole)
//             -> StopMatcher (stop strings across token boundaries; match ends the choice)
//             -> ReasoningParser (<think>..</think> -> reasoning_content), when enabled
//             -> ToolCallParser (DeepSeek tool-call block -> tool_calls), when enabled
//
// Not thread-safe: the owning job serialises calls.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/tokenizer/bpe_tokenizer.h"
#include "common/tokenizer/incremental_detokenizer.h"
#include "proto/dsv3/attention.pb.h"
#include "services/gateway/reasoning_parser.h"
#include "services/gateway/stop_matcher.h"
#include "services/gateway/tool_call_parser.h"

namespace dsv3::gateway {

struct ChoiceOutputOptions {
  std::vector<std::string> stop;
  bool reasoning = false;             // run the reasoning parser
  bool starts_in_reasoning = false;   // the prompt ended with <think>
  bool tool_calls = false;            // run the tool-call parser
  bool logprobs = false;
};

struct TokenLogprob {
  int32_t id = 0;
  std::string token;  // the token's bytes (may be part of a UTF-8 character)
  float logprob = 0;
  std::vector<std::pair<std::string, float>> top;  // alternatives, as token text
};

class ChoiceOutput {
 public:
  ChoiceOutput(const BpeTokenizer& tokenizer, ChoiceOutputOptions options);

  struct Delta {
    std::string content;
    std::string reasoning;
    std::vector<ParsedToolCall> calls;           // whole calls (non-streamed answers)
    std::vector<ToolCallFragment> call_pieces;   // the same calls as they arrive (streams)
    std::vector<TokenLogprob> logprobs;
    bool empty() const {
      return content.empty() && reasoning.empty() && calls.empty() && call_pieces.empty() && logprobs.empty();
    }
  };

  // Feeds one ChoiceDelta from the worker. Tokens after the choice finished are ignored.
  // When the worker says the choice ended (or a stop string matched), the delta includes
  // everything held back and finished() becomes true.
  Delta Push(const attention::v1::ChoiceDelta& d);
  // The stream ended without a finish reason for this choice (worker ended, cancelled):
  // release what is held back and finish with `reason`.
  Delta Finish(const std::string& reason);

  bool finished() const { return finished_; }
  // "stop", "length" or "tool_calls" once finished.
  const std::string& finish_reason() const { return finish_reason_; }
  bool stopped_by_string() const { return stop_.stopped(); }
  int completion_tokens() const { return tokens_; }
  const std::vector<int32_t>& token_ids() const { return ids_; }

 private:
  void ProcessText(const std::string& text, Delta* d);
  void FlushAll(Delta* d);

  const BpeTokenizer& tokenizer_;
  ChoiceOutputOptions options_;
  IncrementalDetokenizer detok_;
  StopMatcher stop_;
  std::optional<ReasoningParser> reasoning_;
  std::optional<ToolCallParser> tools_;
  bool finished_ = false;
  std::string finish_reason_;
  int tokens_ = 0;
  std::vector<int32_t> ids_;
};

// The text of one token for logprobs output.
std::string TokenText(const BpeTokenizer& tokenizer, int64_t id);
// Token `id` with the worker's logprobs for it (null: none, logprob 0, no alternatives).
TokenLogprob MakeTokenLogprob(const BpeTokenizer& tokenizer, int64_t id, const attention::v1::TokenLogprobs* lp);

}  // namespace dsv3::gateway
