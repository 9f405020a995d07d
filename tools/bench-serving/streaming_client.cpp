#include "tools/bench-serving/streaming_client.h"

#include <algorithm>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "tools/bench-serving/sse_parser.h"
#include "tools/bench-serving/stream_event.h"

namespace dsv3::bench {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

double Seconds(std::chrono::steady_clock::duration d) { return std::chrono::duration<double>(d).count(); }

// A connection the server closed while idle fails at once, before any answer byte.
bool StaleConnection(const beast::error_code& ec) {
  return ec == http::error::end_of_stream || ec == net::error::eof || ec == net::error::connection_reset ||
         ec == net::error::broken_pipe || ec == net::error::connection_aborted;
}

std::string HttpErrorReason(unsigned status, const std::string& body) {
  std::string msg;
  const auto j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_discarded() && j.is_object() && j.contains("error") && j["error"].is_object() &&
      j["error"].contains("message") && j["error"]["message"].is_string()) {
    msg = j["error"]["message"].get<std::string>();
  } else {
    msg = body.substr(0, 200);
  }
  if (msg.size() > 200) msg = msg.substr(0, 200) + "...";
  return "HTTP " + std::to_string(status) + (msg.empty() ? "" : ": " + msg);
}

}  // namespace

net::awaitable<RequestResult> StreamingClient::Send(const std::string& body, Clock::time_point hard_deadline) {
  RequestResult res;
  const Clock::time_point start = Clock::now();
  res.start_s = Seconds(start - t0_);
  const Clock::time_point deadline =
      std::min(hard_deadline, start + std::chrono::duration_cast<Clock::duration>(o_.request_timeout));

  // How a transport error ends the request: cut by the run's end, timed out, or failed.
  auto transport_error = [&](const char* what, const beast::error_code& ec) {
    res.e2e_s = Seconds(Clock::now() - start);
    if (interrupted_ || Clock::now() >= hard_deadline) {
      res.outcome = RequestOutcome::kCutByDeadline;
      return;
    }
    res.outcome = RequestOutcome::kFailed;
    res.error = ec == beast::error::timeout ? std::string("timeout (--request-timeout-s)")
                                            : std::string(what) + ": " + ec.message();
  };

  http::request<http::string_body> req{http::verb::post, o_.path, 11};
  req.set(http::field::host, o_.host_header);
  req.set(http::field::user_agent, "dsv3-bench");
  req.set(http::field::content_type, "application/json");
  req.set(http::field::accept, "text/event-stream");
  if (!o_.api_key.empty()) req.set(http::field::authorization, "Bearer " + o_.api_key);
  req.keep_alive(pool_.keep_alive());
  req.body() = body;
  req.prepare_payload();

  for (int attempt = 0; attempt < 2; ++attempt) {
    if (interrupted_) {
      res.outcome = RequestOutcome::kCutByDeadline;
      co_return res;
    }
    beast::error_code ec;
    std::unique_ptr<beast::tcp_stream> stream = pool_.TakeIdle();
    const bool reused = stream != nullptr;
    if (!stream) {
      stream = co_await pool_.Connect(deadline, &ec);
      if (!stream) {
        transport_error("connect", ec);
        co_return res;
      }
    }
    beast::tcp_stream& s = *stream;
    pool_.MarkBusy(&s);
    struct Unmark {
      ConnectionPool& p;
      beast::tcp_stream* s;
      ~Unmark() { p.MarkFree(s); }
    } unmark{pool_, &s};

    s.expires_at(deadline);
    co_await http::async_write(s, req, net::redirect_error(net::use_awaitable, ec));
    if (ec) {
      if (reused && attempt == 0 && StaleConnection(ec)) continue;  // retry once on a new connection
      transport_error("write", ec);
      co_return res;
    }
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64u << 20);
    co_await http::async_read_header(s, buffer, parser, net::redirect_error(net::use_awaitable, ec));
    if (ec) {
      if (reused && attempt == 0 && buffer.size() == 0 && StaleConnection(ec)) continue;
      transport_error("read", ec);
      co_return res;
    }
    const unsigned status = parser.get().result_int();

    SseParser sse;
    std::string error_body, stream_error;
    bool done = false, malformed = false;
    int64_t token_chunks = 0;
    Clock::time_point last_token{};
    auto on_chunk = [&](std::uint64_t, beast::string_view data, beast::error_code&) -> std::size_t {
      const Clock::time_point now = Clock::now();
      if (status != 200) {
        if (error_body.size() < 4096) error_body.append(data.data(), std::min<size_t>(data.size(), 4096));
        return data.size();
      }
      for (const std::string& ev : sse.Feed(std::string_view(data.data(), data.size()))) {
        const StreamEvent e = ParseStreamEvent(ev);
        if (e.done) {
          done = true;
          continue;
        }
        if (e.malformed) {
          malformed = true;
          continue;
        }
        if (!e.error.empty()) {
          stream_error = e.error;
          continue;
        }
        if (e.carries_tokens) {
          if (res.ttft_s < 0) {
            res.ttft_s = Seconds(now - start);
          } else {
            res.itl_s.push_back(Seconds(now - last_token));
          }
          last_token = now;
          ++token_chunks;
        }
        if (e.has_usage) {
          res.usage_reported = true;
          res.prompt_tokens = e.prompt_tokens;
          res.output_tokens = e.completion_tokens;
        }
      }
      return data.size();
    };
    parser.on_chunk_body(on_chunk);
    co_await http::async_read(s, buffer, parser, net::redirect_error(net::use_awaitable, ec));
    res.e2e_s = Seconds(Clock::now() - start);
    if (ec) {
      transport_error("read", ec);
      co_return res;
    }
    if (status != 200) {
      res.outcome = RequestOutcome::kFailed;
      res.error = HttpErrorReason(status, error_body.empty() ? parser.get().body() : error_body);
      if (parser.keep_alive()) pool_.GiveBack(std::move(stream));
      co_return res;
    }
    if (!res.usage_reported) res.output_tokens = token_chunks;
    if (parser.keep_alive()) pool_.GiveBack(std::move(stream));
    if (!stream_error.empty()) {
      res.outcome = RequestOutcome::kFailed;
      res.error = "error event: " + stream_error.substr(0, 200);
    } else if (malformed) {
      res.outcome = RequestOutcome::kFailed;
      res.error = "malformed SSE event (not JSON)";
    } else if (!done) {
      res.outcome = RequestOutcome::kFailed;
      res.error = "stream ended without [DONE]";
    } else {
      res.outcome = RequestOutcome::kCompleted;
    }
    co_return res;
  }
  res.outcome = RequestOutcome::kFailed;
  res.error = "connection closed before the answer (twice)";
  co_return res;
}

}  // namespace dsv3::bench
