#include "services/gateway/tool_call_parser.h"

#include <algorithm>

namespace dsv3::gateway {

namespace {

size_t PartialSuffix(std::string_view s, std::string_view tag) {
  for (size_t k = std::min(s.size(), tag.size() - 1); k > 0; --k) {
    if (s.substr(s.size() - k) == tag.substr(0, k)) return k;
  }
  return 0;
}

bool IsSpace(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

std::string_view LeftTrim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  return s;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\n' || s.front() == '\r' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n' || s.back() == '\r' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

bool ToolCallParser::ParseOne(std::string_view body, ParsedToolCall* out) {
  const size_t sep = body.find(kSep);
  if (sep == std::string_view::npos) return false;
  std::string_view rest = body.substr(sep + kSep.size());
  const size_t nl = rest.find('\n');
  const std::string_view name = Trim(rest.substr(0, nl));
  if (name.empty()) return false;
  std::string_view args = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
  args = Trim(args);
  // The arguments sit in a ```json fenced block; tolerate a missing fence.
  if (args.substr(0, 3) == "```") {
    const size_t eol = args.find('\n');
    args = eol == std::string_view::npos ? std::string_view() : args.substr(eol + 1);
  }
  args = Trim(args);
  if (args.size() >= 3 && args.substr(args.size() - 3) == "```") args.remove_suffix(3);
  args = Trim(args);
  out->name.assign(name);
  out->arguments = args.empty() ? "{}" : std::string(args);
  return true;
}

void ToolCallParser::StreamPartial(std::string_view body, Delta* d) {
  // Mirrors ParseOne on a prefix of the body, so what goes out is a prefix of the result.
  const size_t sep = body.find(kSep);
  if (sep == std::string_view::npos) return;
  std::string_view rest = body.substr(sep + kSep.size());
  const size_t nl = rest.find('\n');
  if (nl == std::string_view::npos) return;  // the name may still grow
  const std::string_view name = Trim(rest.substr(0, nl));
  if (name.empty()) return;
  if (!name_sent_) {
    d->fragments.push_back({calls_seen_, std::string(name), ""});
    name_sent_ = true;
  }
  std::string_view args = LeftTrim(rest.substr(nl + 1));
  if (args.size() < 3 && std::string_view("```").substr(0, args.size()) == args) return;  // a fence or not?
  if (args.substr(0, 3) == "```") {
    const size_t eol = args.find('\n');
    if (eol == std::string_view::npos) return;
    args = LeftTrim(args.substr(eol + 1));
  }
  // Hold back what may yet be the closing fence, trailing space or the end marker.
  args.remove_suffix(PartialSuffix(args, kCallEnd));
  while (!args.empty() && (IsSpace(args.back()) || args.back() == '`')) args.remove_suffix(1);
  if (args.size() > args_sent_) {
    d->fragments.push_back({calls_seen_, "", std::string(args.substr(args_sent_))});
    args_sent_ = args.size();
  }
}

void ToolCallParser::FinishCall(ParsedToolCall call, Delta* d) {
  if (!name_sent_) {
    d->fragments.push_back({calls_seen_, call.name, call.arguments});
  } else if (call.arguments.size() > args_sent_) {
    d->fragments.push_back({calls_seen_, "", call.arguments.substr(args_sent_)});
  }
  d->calls.push_back(std::move(call));
  ++calls_seen_;
  name_sent_ = false;
  args_sent_ = 0;
}

ToolCallParser::Delta ToolCallParser::Push(std::string_view text) {
  Delta d;
  held_.append(text);
  for (;;) {
    switch (state_) {
      case State::kContent: {
        // Either marker opens the block (models sometimes skip the outer one).
        size_t pos = held_.find(kCallsBegin);
        size_t skip = kCallsBegin.size();
        const size_t pos2 = held_.find(kCallBegin);
        if (pos2 < pos) {
          pos = pos2;
          skip = 0;
        }
        if (pos != std::string::npos) {
          d.content += held_.substr(0, pos);
          held_.erase(0, pos + skip);
          state_ = State::kCalls;
          continue;
        }
        const size_t keep = std::max(PartialSuffix(held_, kCallsBegin), PartialSuffix(held_, kCallBegin));
        d.content += held_.substr(0, held_.size() - keep);
        held_.erase(0, held_.size() - keep);
        return d;
      }
      case State::kCalls: {
        const size_t end_all = held_.find(kCallsEnd);
        const size_t begin = held_.find(kCallBegin);
        if (begin != std::string::npos && (end_all == std::string::npos || begin < end_all)) {
          const size_t end = held_.find(kCallEnd, begin);
          const size_t body = begin + kCallBegin.size();
          if (end == std::string::npos) {  // the call is still arriving
            StreamPartial(std::string_view(held_).substr(body), &d);
            return d;
          }
          ParsedToolCall call;
          if (ParseOne(std::string_view(held_).substr(body, end - body), &call)) FinishCall(std::move(call), &d);
          held_.erase(0, end + kCallEnd.size());
          continue;
        }
        if (end_all != std::string::npos) {
          held_.erase(0, end_all + kCallsEnd.size());
          state_ = State::kAfter;
          continue;
        }
        return d;
      }
      case State::kAfter:
        d.content += held_;
        held_.clear();
        return d;
    }
  }
}

ToolCallParser::Delta ToolCallParser::Flush() {
  Delta d;
  if (state_ == State::kCalls) {
    const size_t begin = held_.find(kCallBegin);
    if (begin != std::string::npos) {
      ParsedToolCall call;
      if (ParseOne(std::string_view(held_).substr(begin + kCallBegin.size()), &call)) FinishCall(std::move(call), &d);
    }
  } else {
    d.content.swap(held_);
  }
  held_.clear();
  return d;
}

}  // namespace dsv3::gateway
