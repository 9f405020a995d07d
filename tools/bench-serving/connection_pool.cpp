#include "tools/bench-serving/connection_pool.h"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace dsv3::bench {

namespace net = boost::asio;
namespace beast = boost::beast;

std::unique_ptr<beast::tcp_stream> ConnectionPool::TakeIdle() {
  while (!idle_.empty()) {
    auto s = std::move(idle_.back());
    idle_.pop_back();
    if (s->socket().is_open()) return s;
  }
  return nullptr;
}

net::awaitable<std::unique_ptr<beast::tcp_stream>> ConnectionPool::Connect(Clock::time_point deadline,
                                                                            beast::error_code* ec) {
  auto s = std::make_unique<beast::tcp_stream>(ex_);
  s->expires_at(deadline);
  MarkBusy(s.get());
  co_await s->async_connect(endpoints_, net::redirect_error(net::use_awaitable, *ec));
  MarkFree(s.get());
  if (*ec) co_return nullptr;
  ++opened_;
  beast::error_code ignored;
  s->socket().set_option(net::ip::tcp::no_delay(true), ignored);
  co_return s;
}

void ConnectionPool::GiveBack(std::unique_ptr<beast::tcp_stream> s) {
  if (!keep_alive_ || !s->socket().is_open()) return;
  idle_.push_back(std::move(s));
}

void ConnectionPool::Interrupt() {
  beast::error_code ec;
  for (auto* s : busy_) s->socket().close(ec);
  for (auto& s : idle_) s->socket().close(ec);
  idle_.clear();
}

}  // namespace dsv3::bench
