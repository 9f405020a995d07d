// Stop strings matched on the detokenized text as it streams, across token boundaries.
// Text that could still be the start of a stop string is held back until it either
// completes the match (then it and everything after it is dropped) or cannot (then it is
// released). The stop string itself never reaches the client, as in the OpenAI API.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace dsv3::gateway {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);

  struct Result {
    std::string text;      // safe to emit now
    bool stopped = false;  // a stop string matched; ignore all later text
    std::string matched;
  };
  // Feeds newly decoded text. After a match every call returns nothing.
  Result Push(std::string_view text);
  // End of generation: releases what was held back (a partial match that never completed).
  std::string Flush();

  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  size_t max_len_ = 0;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace dsv3::gateway
