#include "tools/bench-serving/sse_parser.h"

namespace dsv3::bench {

std::vector<std::string> SseParser::Feed(std::string_view bytes) {
  std::vector<std::string> out;
  for (char c : bytes) {
    if (c == '\n') {
      EndLine(&out);
    } else {
      line_ += c;
    }
  }
  return out;
}

void SseParser::EndLine(std::vector<std::string>* out) {
  if (!line_.empty() && line_.back() == '\r') line_.pop_back();
  if (line_.empty()) {  // blank line: the event is complete
    if (has_data_) out->push_back(std::move(data_));
    data_.clear();
    has_data_ = false;
    return;
  }
  if (line_.rfind("data:", 0) == 0) {
    std::string_view v(line_);
    v.remove_prefix(5);
    if (!v.empty() && v.front() == ' ') v.remove_prefix(1);
    if (has_data_) data_ += '\n';
    data_.append(v);
    has_data_ = true;
  }
  line_.clear();
}

}  // namespace dsv3::bench
