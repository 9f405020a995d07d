// Sends one streamed OpenAI request over a pooled connection and measures it: TTFT at
// the first SSE event carrying text, ITL between such events, E2E at the answer's last
// byte, token counts from the usage event. Never throws for network or protocol trouble:
// everything ends as a RequestResult.
#pragma once

#include <chrono>
#include <string>

#include <utility>  // before Asio: Boost 1.74's awaitable.hpp uses std::exchange without it

#include <boost/asio/awaitable.hpp>

#include "tools/bench-serving/connection_pool.h"
#include "tools/bench-serving/request_result.h"

namespace dsv3::bench {

struct StreamingClientOptions {
  std::string host_header;  // Host: value
  std::string path;         // /v1/completions or /v1/chat/completions
  std::string api_key;      // "" sends no Authorization header
  std::chrono::duration<double> request_timeout{600};
};

class StreamingClient {
 public:
  using Clock = std::chrono::steady_clock;

  StreamingClient(ConnectionPool& pool, StreamingClientOptions o, Clock::time_point t0)
      : pool_(pool), o_(std::move(o)), t0_(t0) {}

  void set_t0(Clock::time_point t0) { t0_ = t0; }
  // After this, requests in flight end as cut by the deadline and new ones are not sent.
  void Interrupt() {
    interrupted_ = true;
    pool_.Interrupt();
  }
  bool interrupted() const { return interrupted_; }

  boost::asio::awaitable<RequestResult> Send(const std::string& body, Clock::time_point hard_deadline);

 private:
  ConnectionPool& pool_;
  StreamingClientOptions o_;
  Clock::time_point t0_;
  bool interrupted_ = false;
};

}  // namespace dsv3::bench
