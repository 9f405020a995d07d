#include "services/gateway/sse_writer.h"

#include <cstdio>

namespace dsv3::gateway {

std::string SseEvent(std::string_view data) {
  std::string out;
  out.reserve(data.size() + 8);
  size_t start = 0;
  for (;;) {
    const size_t nl = data.find('\n', start);
    out += "data: ";
    out.append(data.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start));
    out += '\n';
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  out += '\n';
  return out;
}

std::string SseDone() { return "data: [DONE]\n\n"; }

std::string HttpChunk(std::string_view payload) {
  if (payload.empty()) return {};  // a zero-length chunk would end the body
  char size[24];
  const int n = std::snprintf(size, sizeof(size), "%zx\r\n", payload.size());
  std::string out(size, static_cast<size_t>(n));
  out.append(payload);
  out += "\r\n";
  return out;
}

std::string HttpLastChunk() { return "0\r\n\r\n"; }

}  // namespace dsv3::gateway
