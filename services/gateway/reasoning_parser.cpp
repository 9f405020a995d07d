#include "services/gateway/reasoning_parser.h"

#include <algorithm>

namespace dsv3::gateway {

namespace {
constexpr std::string_view kOpen = "<think>";
constexpr std::string_view kClose = "</think>";

// Length of the longest suffix of `s` that is a proper prefix of `tag`.
size_t PartialTagSuffix(std::string_view s, std::string_view tag) {
  for (size_t k = std::min(s.size(), tag.size() - 1); k > 0; --k) {
    if (s.substr(s.size() - k) == tag.substr(0, k)) return k;
  }
  return 0;
}

bool IsSpace(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }
}  // namespace

ReasoningParser::ReasoningParser(bool starts_in_reasoning)
    : state_(starts_in_reasoning ? State::kReasoning : State::kMaybeOpen) {}

ReasoningParser::Delta ReasoningParser::Push(std::string_view text) {
  Delta d;
  held_.append(text);
  for (;;) {
    switch (state_) {
      case State::kMaybeOpen: {
        size_t i = 0;
        while (i < held_.size() && IsSpace(held_[i])) ++i;
        const std::string_view rest(held_.data() + i, held_.size() - i);
        if (rest.size() >= kOpen.size() && rest.substr(0, kOpen.size()) == kOpen) {
          held_.erase(0, i + kOpen.size());
          state_ = State::kReasoning;
          continue;
        }
        if (rest.size() < kOpen.size() && kOpen.substr(0, rest.size()) == rest) return d;  // undecided
        state_ = State::kContent;
        continue;
      }
      case State::kReasoning: {
        const size_t pos = held_.find(kClose);
        if (pos != std::string::npos) {
          d.reasoning += held_.substr(0, pos);
          held_.erase(0, pos + kClose.size());
          state_ = State::kAfterClose;
          continue;
        }
        const size_t keep = PartialTagSuffix(held_, kClose);
        d.reasoning += held_.substr(0, held_.size() - keep);
        held_.erase(0, held_.size() - keep);
        return d;
      }
      case State::kAfterClose: {
        // The answer usually starts after a blank line; that separator is not content.
        size_t i = 0;
        while (i < held_.size() && IsSpace(held_[i])) ++i;
        held_.erase(0, i);
        if (held_.empty()) return d;
        state_ = State::kContent;
        continue;
      }
      case State::kContent:
        d.content += held_;
        held_.clear();
        return d;
    }
  }
}

ReasoningParser::Delta ReasoningParser::Flush() {
  Delta d;
  if (state_ == State::kReasoning) d.reasoning.swap(held_);
  else if (state_ != State::kAfterClose) d.content.swap(held_);
  held_.clear();
  return d;
}

}  // namespace dsv3::gateway
