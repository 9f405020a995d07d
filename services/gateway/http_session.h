// HttpSession: one client connection (HTTP/1.1, keep-alive), living on its own strand.
//
//   idle wait (--idle-timeout-ms) -> header (--header-timeout-ms, header size limit)
//   -> body (--body-timeout-ms, --max-body-bytes; 413 from Content-Length before reading)
//   -> OpenAiApi::Handle -> reply via ReplyChannel (whole or SSE over chunked encoding)
//   -> next request on the same connection, or close.
//
// While a request is being answered the session keeps one read outstanding on the socket:
// it completes with an error only when the client goes away, which cancels the request's
// worker calls (bytes that arrive instead, e.g. a pipelined request, are kept for later).
// A client that stalls mid-request is closed by the stream timeout before anything
// reaches a worker.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "services/gateway/gateway_config.h"
#include "services/gateway/http_exchange.h"

namespace dsv3::gateway {

class OpenAiApi;
class GatewayMetrics;

class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(boost::asio::ip::tcp::socket socket, const GatewayConfig& config, OpenAiApi& api,
              GatewayMetrics& metrics);
  void Start();
  // Closes the connection (server shutdown); safe from any thread.
  void Shutdown();

  // ReplyChannel operations, already on the strand.
  void DoReply(HttpReply reply);
  void DoBeginSse();
  void DoSendSse(std::string bytes);
  void DoEndSse();
  void DoOnClientGone(std::function<void()> fn);
  void DoSetRoute(std::string route) { route_ = std::move(route); }
  boost::beast::tcp_stream& stream() { return stream_; }

 private:
  void ReadIdle();
  void ReadHeader();
  void OnHeader(boost::beast::error_code ec);
  void OnBody(boost::beast::error_code ec);
  void StartWatch();
  void OnWatch(boost::beast::error_code ec, size_t n);
  void Enqueue(std::string bytes);
  void WriteNext();
  void OnWritten(boost::beast::error_code ec);
  void ResponseComplete();
  // An answer before the request was read completely; the connection closes after it.
  void EarlyError(int status, const std::string& body);
  void Close();
  void LingerClose();
  std::string Head(int status, const std::string& content_type, std::optional<size_t> content_length,
                   const std::vector<std::pair<std::string, std::string>>& extra) const;

  boost::beast::tcp_stream stream_;
  const GatewayConfig& config_;
  OpenAiApi& api_;
  GatewayMetrics& metrics_;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;

  // Per request.
  std::string request_id_;
  std::string route_ = "other";
  bool keep_alive_ = true;
  bool head_only_ = false;
  int status_ = 0;
  bool answering_ = false;       // a request is being answered
  bool reply_started_ = false;   // Reply or BeginSse happened
  bool reply_finished_ = false;  // the last bytes are queued
  bool close_after_ = false;
  std::function<void()> on_gone_;
  std::chrono::steady_clock::time_point request_done_at_;

  std::deque<std::string> out_;
  bool writing_ = false;
  bool watching_ = false;
  bool resume_after_watch_ = false;
  bool closed_ = false;
};

// The x-request-id to use: the client's when it is 1..128 chars of [A-Za-z0-9._-]
// (longer ones are cut to 128), else a new random one.
std::string SanitizeRequestId(std::string_view client_value);

}  // namespace dsv3::gateway
