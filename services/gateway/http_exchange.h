// The boundary between the HTTP connection (HttpSession) and the API handlers: a parsed
// request in, and a ReplyChannel through which a handler answers once, either with a whole
// response or with a stream of server-sent events, from any thread and at any later time.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace dsv3::gateway {

struct HttpRequest {
  std::string method;  // upper-cased: "Post" from `curl -X Post` arrives as "POST"
  std::string path;    // target without the query string
  std::string query;
  std::string authorization;
  std::string request_id;  // sanitized client x-request-id or a generated one
  std::string body;
  std::chrono::steady_clock::time_point arrived;  // when the request was fully read
};

struct HttpReply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

class ReplyChannel {
 public:
  virtual ~ReplyChannel() = default;
  // A complete response. Ignored after the client went away or after another Reply.
  virtual void Reply(HttpReply reply) = 0;
  // Streaming: the 200 text/event-stream header, then framed SSE bytes, then the end.
  virtual void BeginSse() = 0;
  virtual void SendSse(std::string bytes) = 0;
  virtual void EndSse() = 0;
  // `fn` runs once if the client disconnects before the answer is complete (the handler
  // cancels its worker calls there).
  virtual void OnClientGone(std::function<void()> fn) = 0;
  // The route label for metrics (set by the handler that matched).
  virtual void SetRoute(std::string route) = 0;
};

}  // namespace dsv3::gateway
