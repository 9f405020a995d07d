// The client's HTTP/1.1 connections to the gateway. With keep-alive (the default) a
// connection whose answer was read completely goes back to an idle list and the next
// request takes it (most recently used first), so a closed loop of N clients settles on N
// connections, as aiohttp's pool in vLLM's benchmark does; a new connection is opened
// only when none is idle. --no-keep-alive: one connection per request, closed after it.
// Single-threaded: every call runs on the io_context's one thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <set>
#include <vector>

#include <utility>  // before Asio: Boost 1.74's awaitable.hpp uses std::exchange without it

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/tcp_stream.hpp>

namespace dsv3::bench {

class ConnectionPool {
 public:
  using Clock = std::chrono::steady_clock;

  ConnectionPool(boost::asio::any_io_executor ex, boost::asio::ip::tcp::resolver::results_type endpoints,
                 bool keep_alive)
      : ex_(std::move(ex)), endpoints_(std::move(endpoints)), keep_alive_(keep_alive) {}

  bool keep_alive() const { return keep_alive_; }

  // An idle connection (nullptr when none).
  std::unique_ptr<boost::beast::tcp_stream> TakeIdle();
  // A new connection, or nullptr with *ec set (the deadline bounds the connect).
  boost::asio::awaitable<std::unique_ptr<boost::beast::tcp_stream>> Connect(Clock::time_point deadline,
                                                                             boost::beast::error_code* ec);
  // Only for a connection whose answer was read completely and that stays open.
  void GiveBack(std::unique_ptr<boost::beast::tcp_stream> s);

  // Streams in use register here so that Interrupt() can close them.
  void MarkBusy(boost::beast::tcp_stream* s) { busy_.insert(s); }
  void MarkFree(boost::beast::tcp_stream* s) { busy_.erase(s); }
  // Closes every connection (busy ones: their pending operations end with an error).
  void Interrupt();

  int64_t opened() const { return opened_; }

 private:
  boost::asio::any_io_executor ex_;
  boost::asio::ip::tcp::resolver::results_type endpoints_;
  bool keep_alive_;
  std::vector<std::unique_ptr<boost::beast::tcp_stream>> idle_;
  std::set<boost::beast::tcp_stream*> busy_;
  int64_t opened_ = 0;
};

}  // namespace dsv3::bench
