// A minimal blocking HTTP/1.1 client on plain sockets for the gateway tests: raw request
// bytes in, parsed responses out (Content-Length and chunked bodies), every read bounded
// by a timeout so a misbehaving server fails the test instead of hanging it.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace dsv3::testing {

struct HttpResponse {
  bool ok = false;  // a complete response was read
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

class HttpConnection {
 public:
  explicit HttpConnection(int port);
  ~HttpConnection();
  HttpConnection(const HttpConnection&) = delete;

  bool connected() const { return fd_ >= 0; }
  bool SendRaw(const std::string& bytes);
  // Reads one response (status line, headers, body).
  HttpResponse ReadResponse(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Reads the head, then chunks one by one; `on_chunk` returns false to stop early.
  HttpResponse ReadStreaming(std::chrono::milliseconds timeout, const std::function<bool(const std::string&)>& on_chunk);
  // True when the peer closed the connection within `timeout` (read returns 0 or error).
  bool WaitClosed(std::chrono::milliseconds timeout);
  void Close();

  // A full request: method, path, JSON body, extra header lines ("Name: value").
  HttpResponse Request(const std::string& method, const std::string& path, const std::string& body = "",
                       const std::vector<std::string>& headers = {}, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  static std::string Format(const std::string& method, const std::string& path, const std::string& body,
                            const std::vector<std::string>& headers);

 private:
  bool Fill(std::chrono::steady_clock::time_point deadline);
  bool ReadLine(std::string* line, std::chrono::steady_clock::time_point deadline);
  bool ReadN(size_t n, std::string* out, std::chrono::steady_clock::time_point deadline);
  bool ReadHead(HttpResponse* r, std::chrono::steady_clock::time_point deadline);
  int fd_ = -1;
  std::string buf_;
};

// One-shot request on a new connection.
HttpResponse HttpRequestOnce(int port, const std::string& method, const std::string& path, const std::string& body = "",
                             const std::vector<std::string>& headers = {});

// The data payloads of an SSE body ("data: X\n\n" -> X), in order.
std::vector<std::string> SseData(const std::string& body);

}  // namespace dsv3::testing
