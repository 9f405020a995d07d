#include "tools/bench-serving/http_url.h"

namespace dsv3::bench {

std::optional<HttpUrl> ParseHttpUrl(const std::string& text, std::string* error) {
  const std::string scheme = "http://";
  if (text.rfind(scheme, 0) != 0) {
    *error = "--url must start with http:// (got '" + text + "')";
    return std::nullopt;
  }
  std::string rest = text.substr(scheme.size());
  HttpUrl u;
  const size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  if (slash != std::string::npos) u.prefix = rest.substr(slash);
  while (!u.prefix.empty() && u.prefix.back() == '/') u.prefix.pop_back();
  // The OpenAI base URL convention ends in /v1; we add /v1/... ourselves.
  if (u.prefix.size() >= 3 && u.prefix.compare(u.prefix.size() - 3, 3, "/v1") == 0) {
    u.prefix.resize(u.prefix.size() - 3);
  }
  if (!authority.empty() && authority.front() == '[') {  // [v6]:port
    const size_t close = authority.find(']');
    if (close == std::string::npos) {
      *error = "bad IPv6 address in --url";
      return std::nullopt;
    }
    u.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') {
        *error = "bad --url authority '" + authority + "'";
        return std::nullopt;
      }
      u.port = authority.substr(close + 2);
    }
  } else {
    const size_t colon = authority.rfind(':');
    u.host = authority.substr(0, colon);
    if (colon != std::string::npos) u.port = authority.substr(colon + 1);
  }
  if (u.host.empty() || u.port.empty() || u.port.find_first_not_of("0123456789") != std::string::npos ||
      u.port.size() > 5) {
    *error = "--url needs http://HOST[:PORT] (got '" + text + "')";
    return std::nullopt;
  }
  return u;
}

}  // namespace dsv3::bench
