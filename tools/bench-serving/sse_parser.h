// Server-sent events framing: bytes in (in any pieces), the `data` of each complete event
// out. Events end with a blank line ("\n\n" or "\r\n\r\n"); multi-line data is joined
// with '\n'; comments and other fields are skipped.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace dsv3::bench {

class SseParser {
 public:
  // The data of every event completed by these bytes, in order.
  std::vector<std::string> Feed(std::string_view bytes);
  size_t buffered() const { return line_.size() + data_.size(); }

 private:
  void EndLine(std::vector<std::string>* out);

  std::string line_;  // the current, unfinished line
  std::string data_;  // the current event's data so far
  bool has_data_ = false;
};

}  // namespace dsv3::bench
