#include "services/gateway/http_session.h"

#include <random>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include "services/gateway/gateway_metrics.h"
#include "services/gateway/openai_api.h"
#include "services/gateway/openai_errors.h"
#include "services/gateway/sse_writer.h"

namespace dsv3::gateway {

namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace net = boost::asio;

std::string SanitizeRequestId(std::string_view v) {
  if (v.size() > 128) v = v.substr(0, 128);
  bool ok = !v.empty();
  for (char c : v) {
    ok &= (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
  }
  if (ok) return std::string(v);
  static constexpr char kHex[] = "0123456789abcdef";
  thread_local std::mt19937_64 rng(std::random_device{}());
  std::string id;
  for (int i = 0; i < 32; ++i) id += kHex[rng() % 16];
  return id;
}

namespace {

// ReplyChannel for one request: hops onto the session's strand. Kept by the handler (and
// its job) as long as it may answer; holding the session keeps the connection object alive.
class SessionChannel : public ReplyChannel {
 public:
  explicit SessionChannel(std::shared_ptr<HttpSession> s) : s_(std::move(s)) {}
  void Reply(HttpReply reply) override {
    net::post(s_->stream().get_executor(), [s = s_, r = std::move(reply)]() mutable { s->DoReply(std::move(r)); });
  }
  void BeginSse() override { net::post(s_->stream().get_executor(), [s = s_] { s->DoBeginSse(); }); }
  void SendSse(std::string bytes) override {
    net::post(s_->stream().get_executor(), [s = s_, b = std::move(bytes)]() mutable { s->DoSendSse(std::move(b)); });
  }
  void EndSse() override { net::post(s_->stream().get_executor(), [s = s_] { s->DoEndSse(); }); }
  void OnClientGone(std::function<void()> fn) override {
    net::post(s_->stream().get_executor(), [s = s_, f = std::move(fn)]() mutable { s->DoOnClientGone(std::move(f)); });
  }
  void SetRoute(std::string route) override { s_->DoSetRoute(std::move(route)); }  // called on the strand

 private:
  std::shared_ptr<HttpSession> s_;
};

std::string Upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

HttpSession::HttpSession(net::ip::tcp::socket socket, const GatewayConfig& config, OpenAiApi& api,
                         GatewayMetrics& metrics)
    : stream_(std::move(socket)), config_(config), api_(api), metrics_(metrics) {}

void HttpSession::Start() {
  beast::error_code ec;
  stream_.socket().set_option(net::ip::tcp::no_delay(true), ec);  // token streams are latency-bound
  net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->ReadIdle(); });
}

void HttpSession::Shutdown() {
  net::post(stream_.get_executor(), [self = shared_from_this()] { self->Close(); });
}

void HttpSession::ReadIdle() {
  if (closed_) return;
  if (buffer_.size() > 0) return ReadHeader();
  stream_.expires_after(std::chrono::milliseconds(config_.idle_timeout_ms));
  stream_.async_read_some(buffer_.prepare(4096), [self = shared_from_this()](beast::error_code ec, size_t n) {
    if (ec) return self->Close();
    self->buffer_.commit(n);
    self->ReadHeader();
  });
}

void HttpSession::ReadHeader() {
  parser_.emplace();
  parser_->header_limit(static_cast<std::uint32_t>(config_.max_header_bytes));
  parser_->body_limit(config_.max_body_bytes);
  stream_.expires_after(std::chrono::milliseconds(config_.header_timeout_ms));
  http::async_read_header(stream_, buffer_, *parser_,
                          [self = shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
}

void HttpSession::OnHeader(beast::error_code ec) {
  if (ec == http::error::header_limit) {
    return EarlyError(431, BadRequestNoParam(StrCat("request headers exceed ", config_.max_header_bytes, " bytes")).ToJson());
  }
  if (ec == http::error::body_limit) return EarlyError(413, PayloadTooLarge(config_.max_body_bytes).ToJson());
  if (ec) {
    // Timeouts and disconnects just close; a syntax error gets a 400 first.
    if (ec == beast::error::timeout || ec == http::error::end_of_stream || ec == net::error::eof ||
        ec == net::error::connection_reset || ec == net::error::operation_aborted) {
      return Close();
    }
    return EarlyError(400, BadRequestNoParam(StrCat("malformed HTTP request: ", ec.message())).ToJson());
  }
  const auto& h = parser_->get();
  request_id_ = SanitizeRequestId(std::string_view(h["x-request-id"].data(), h["x-request-id"].size()));
  if (auto len = parser_->content_length(); len && *len > config_.max_body_bytes) {
    return EarlyError(413, PayloadTooLarge(config_.max_body_bytes).ToJson());
  }
  if (beast::iequals(h[http::field::expect], "100-continue") && !parser_->is_done()) {
    // curl waits for this before sending larger bodies.
    static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    stream_.expires_after(std::chrono::milliseconds(config_.write_timeout_ms));
    net::async_write(stream_, net::buffer(kContinue), [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->Close();
      self->stream_.expires_after(std::chrono::milliseconds(self->config_.body_timeout_ms));
      http::async_read(self->stream_, self->buffer_, *self->parser_,
                       [self](beast::error_code ec, size_t) { self->OnBody(ec); });
    });
    return;
  }
  stream_.expires_after(std::chrono::milliseconds(config_.body_timeout_ms));
  http::async_read(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, size_t) { self->OnBody(ec); });
}

void HttpSession::OnBody(beast::error_code ec) {
  if (ec == http::error::body_limit) return EarlyError(413, PayloadTooLarge(config_.max_body_bytes).ToJson());
  if (ec) {
    if (ec == beast::error::timeout || ec == http::error::end_of_stream || ec == net::error::eof ||
        ec == net::error::connection_reset || ec == net::error::operation_aborted) {
      return Close();
    }
    return EarlyError(400, BadRequestNoParam(StrCat("malformed HTTP request: ", ec.message())).ToJson());
  }
  auto& msg = parser_->get();
  HttpRequest req;
  // Beast knows only upper-case verbs; `curl -X Post` arrives as verb::unknown "Post".
  req.method = Upper(std::string_view(msg.method_string().data(), msg.method_string().size()));
  const std::string_view target(msg.target().data(), msg.target().size());
  const size_t q = target.find('?');
  req.path = std::string(target.substr(0, q));
  if (q != std::string_view::npos) req.query = std::string(target.substr(q + 1));
  req.authorization = std::string(msg[http::field::authorization]);
  req.request_id = request_id_;
  req.body = std::move(msg.body());
  req.arrived = std::chrono::steady_clock::now();
  keep_alive_ = msg.keep_alive();
  head_only_ = req.method == "HEAD";
  route_ = "other";
  status_ = 0;
  answering_ = true;
  reply_started_ = false;
  reply_finished_ = false;
  close_after_ = false;
  on_gone_ = nullptr;
  request_done_at_ = req.arrived;
  parser_.reset();
  api_.Handle(req, std::make_shared<SessionChannel>(shared_from_this()));
  StartWatch();
}

void HttpSession::StartWatch() {
  if (closed_ || watching_ || !answering_) return;
  // Leave room so a pipelining client cannot make us buffer without bound.
  if (buffer_.size() > config_.max_body_bytes + config_.max_header_bytes) return;
  watching_ = true;
  // No read deadline while the answer is produced (generation may take minutes); writes
  // get their own deadline in WriteNext.
  stream_.expires_never();
  stream_.async_read_some(buffer_.prepare(4096), [self = shared_from_this()](beast::error_code ec, size_t n) {
    self->OnWatch(ec, n);
  });
}

void HttpSession::OnWatch(beast::error_code ec, size_t n) {
  watching_ = false;
  if (!ec) buffer_.commit(n);
  if (resume_after_watch_) {
    resume_after_watch_ = false;
    if (ec && ec != net::error::operation_aborted) return Close();
    return ReadIdle();
  }
  if (!ec) return StartWatch();
  if (ec == net::error::operation_aborted) return;
  // The client is gone while its request is being answered.
  if (on_gone_) {
    auto fn = std::move(on_gone_);
    on_gone_ = nullptr;
    fn();
  }
  Close();
}

void HttpSession::DoOnClientGone(std::function<void()> fn) {
  if (closed_) {
    fn();
    return;
  }
  if (answering_ && !reply_finished_) on_gone_ = std::move(fn);
}

std::string HttpSession::Head(int status, const std::string& content_type, std::optional<size_t> content_length,
                              const std::vector<std::pair<std::string, std::string>>& extra) const {
  const auto reason = http::obsolete_reason(http::int_to_status(static_cast<unsigned>(status)));
  std::string h = StrCat("HTTP/1.1 ", status, " ", std::string_view(reason.data(), reason.size()), "\r\n");
  h += "Server: dsv3-gateway\r\n";
  if (!content_type.empty()) StrAppend(&h, "Content-Type: ", content_type, "\r\n");
  if (content_length) StrAppend(&h, "Content-Length: ", *content_length, "\r\n");
  else h += "Transfer-Encoding: chunked\r\n";
  StrAppend(&h, "x-request-id: ", request_id_, "\r\n");
  h += "Access-Control-Allow-Origin: *\r\nAccess-Control-Expose-Headers: x-request-id\r\n";
  for (const auto& [k, v] : extra) StrAppend(&h, k, ": ", v, "\r\n");
  h += (keep_alive_ && !close_after_) ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  h += "\r\n";
  return h;
}

void HttpSession::DoReply(HttpReply reply) {
  if (closed_ || !answering_ || reply_started_) return;
  reply_started_ = true;
  reply_finished_ = true;
  status_ = reply.status;
  std::string out = Head(reply.status, reply.content_type, reply.body.size(), reply.headers);
  if (!head_only_) out += reply.body;
  Enqueue(std::move(out));
}

void HttpSession::DoBeginSse() {
  if (closed_ || !answering_ || reply_started_) return;
  reply_started_ = true;
  status_ = 200;
  Enqueue(Head(200, "text/event-stream; charset=utf-8", std::nullopt,
               {{"Cache-Control", "no-cache"}, {"X-Accel-Buffering", "no"}}));
}

void HttpSession::DoSendSse(std::string bytes) {
  if (closed_ || !answering_ || !reply_started_ || reply_finished_) return;
  Enqueue(HttpChunk(bytes));
}

void HttpSession::DoEndSse() {
  if (closed_ || !answering_ || !reply_started_ || reply_finished_) return;
  reply_finished_ = true;
  Enqueue(HttpLastChunk());
}

void HttpSession::EarlyError(int status, const std::string& body) {
  answering_ = true;
  reply_started_ = true;
  reply_finished_ = true;
  close_after_ = true;
  keep_alive_ = false;
  status_ = status;
  request_done_at_ = std::chrono::steady_clock::now();
  Enqueue(Head(status, "application/json", body.size(), {}) + body);
}

void HttpSession::Enqueue(std::string bytes) {
  if (bytes.empty() && !reply_finished_) return;
  out_.push_back(std::move(bytes));
  if (!writing_) WriteNext();
}

void HttpSession::WriteNext() {
  if (closed_) return;
  if (out_.empty()) {
    if (reply_finished_ && answering_) ResponseComplete();
    return;
  }
  writing_ = true;
  // With the watch read pending this arms only the write deadline (Beast keeps one timer
  // per direction), so a client that stops reading is dropped.
  stream_.expires_after(std::chrono::milliseconds(config_.write_timeout_ms));
  net::async_write(stream_, net::buffer(out_.front()),
                   [self = shared_from_this()](beast::error_code ec, size_t) { self->OnWritten(ec); });
}

void HttpSession::OnWritten(beast::error_code ec) {
  writing_ = false;
  if (ec) {
    if (on_gone_) {
      auto fn = std::move(on_gone_);
      on_gone_ = nullptr;
      fn();
    }
    return Close();
  }
  out_.pop_front();
  WriteNext();
}

void HttpSession::ResponseComplete() {
  answering_ = false;
  on_gone_ = nullptr;
  metrics_.ObserveHttp(route_, status_,
                       std::chrono::duration<double>(std::chrono::steady_clock::now() - request_done_at_).count());
  if (!keep_alive_ || close_after_) return LingerClose();
  if (watching_) {
    // Stop the disconnect watch, then read the next request.
    resume_after_watch_ = true;
    beast::error_code ec;
    stream_.socket().cancel(ec);
    return;
  }
  ReadIdle();
}

void HttpSession::LingerClose() {
  // Closing with unread request bytes (e.g. the body of a 413) makes the kernel send RST,
  // which can destroy the response in flight: half-close, drain briefly, then close.
  if (closed_) return;
  beast::error_code ec;
  stream_.socket().shutdown(net::ip::tcp::socket::shutdown_send, ec);
  if (ec) return Close();
  if (watching_) return;  // the watch read drains; its error closes
  stream_.expires_after(std::chrono::seconds(2));
  buffer_.consume(buffer_.size());
  stream_.async_read_some(buffer_.prepare(16384), [self = shared_from_this()](beast::error_code ec, size_t) {
    if (ec) return self->Close();
    self->LingerClose();
  });
}

void HttpSession::Close() {
  if (closed_) return;
  closed_ = true;
  if (on_gone_ && answering_) {
    auto fn = std::move(on_gone_);
    on_gone_ = nullptr;
    fn();
  }
  if (answering_) {
    // The client went away before the response was complete (often right after reading
    // the last SSE event): still counted, as 499 (nginx's "client closed request") when
    // not even the status line had gone out.
    answering_ = false;
    metrics_.ObserveHttp(route_, reply_started_ ? status_ : 499,
                         std::chrono::duration<double>(std::chrono::steady_clock::now() - request_done_at_).count());
  }
  beast::error_code ec;
  stream_.socket().close(ec);
}

}  // namespace dsv3::gateway
