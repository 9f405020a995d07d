#include "services/gateway/stop_matcher.h"

#include <algorithm>

namespace dsv3::gateway {

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  for (const auto& s : stops_) max_len_ = std::max(max_len_, s.size());
}

StopMatcher::Result StopMatcher::Push(std::string_view text) {
  Result r;
  if (stopped_) return r;
  if (stops_.empty()) {
    r.text.assign(text);
    return r;
  }
  held_.append(text);
  // Earliest match wins; among matches at the same position, the longest.
  size_t best = std::string::npos;
  const std::string* best_stop = nullptr;
  for (const auto& s : stops_) {
    const size_t pos = held_.find(s);
    if (pos != std::string::npos && (pos < best || (pos == best && s.size() > best_stop->size()))) {
      best = pos;
      best_stop = &s;
    }
  }
  if (best_stop != nullptr) {
    r.text = held_.substr(0, best);
    r.stopped = true;
    r.matched = *best_stop;
    stopped_ = true;
    held_.clear();
    return r;
  }
  // Hold back the longest suffix that is a proper prefix of some stop string.
  size_t keep = 0;
  const size_t max_keep = std::min(held_.size(), max_len_ - 1);
  for (size_t k = max_keep; k > 0; --k) {
    const std::string_view suffix(held_.data() + held_.size() - k, k);
    const bool is_prefix = std::any_of(stops_.begin(), stops_.end(), [&](const std::string& s) {
      return s.size() > k && std::string_view(s).substr(0, k) == suffix;
    });
    if (is_prefix) {
      keep = k;
      break;
    }
  }
  r.text = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return r;
}

std::string StopMatcher::Flush() {
  std::string out;
  if (!stopped_) out.swap(held_);
  held_.clear();
  return out;
}

}  // namespace dsv3::gateway
