// The gateway's base URL: http://HOST:PORT[/prefix]. https is not supported (the
// benchmark talks to a gateway on a trusted network, like the cluster's own hops).
#pragma once

#include <optional>
#include <string>

namespace dsv3::bench {

struct HttpUrl {
  std::string host;
  std::string port = "80";
  std::string prefix;  // without a trailing '/'; "" for the root

  std::string HostHeader() const { return port == "80" ? host : host + ":" + port; }
  std::string ToString() const { return "http://" + HostHeader() + prefix; }
};

std::optional<HttpUrl> ParseHttpUrl(const std::string& text, std::string* error);

}  // namespace dsv3::bench
