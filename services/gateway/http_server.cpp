#include "services/gateway/http_server.h"

#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>

#include "services/gateway/http_session.h"

namespace dsv3::gateway {

namespace net = boost::asio;

HttpServer::HttpServer(const GatewayConfig& config, OpenAiApi& api, GatewayMetrics& metrics)
    : config_(config), api_(api), metrics_(metrics), ioc_(config.http_threads), acceptor_(net::make_strand(ioc_)) {}

HttpServer::~HttpServer() {
  StopAccepting();
  Join();
}

StatusOr<int> HttpServer::Listen() {
  boost::system::error_code ec;
  const auto addr = net::ip::make_address(config_.listen_host == "localhost" ? "127.0.0.1" : config_.listen_host, ec);
  if (ec) return InvalidArgument("gateway", StrCat("bad listen address ", config_.listen_host, ": ", ec.message()));
  const net::ip::tcp::endpoint ep(addr, static_cast<unsigned short>(config_.listen_port));
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(1024, ec);
  if (ec) {
    return absl::UnavailableError(StrCat("gateway: cannot listen on ", config_.listen_host, ":", config_.listen_port,
                                         ": ", ec.message()));
  }
  return static_cast<int>(acceptor_.local_endpoint().port());
}

void HttpServer::Run() {
  Accept();
  for (int i = 0; i < config_.http_threads; ++i) threads_.emplace_back([this] { ioc_.run(); });
}

void HttpServer::Accept() {
  acceptor_.async_accept(net::make_strand(ioc_), [this](boost::system::error_code ec, net::ip::tcp::socket socket) {
    if (ec == net::error::operation_aborted || !acceptor_.is_open()) return;
    if (!ec) {
      auto s = std::make_shared<HttpSession>(std::move(socket), config_, api_, metrics_);
      {
        std::lock_guard<std::mutex> l(sessions_mu_);
        // Prune finished sessions now and then so the list stays the size of the live set.
        if (sessions_.size() >= 64 && (sessions_.size() & (sessions_.size() - 1)) == 0) {
          std::erase_if(sessions_, [](const std::weak_ptr<HttpSession>& w) { return w.expired(); });
        }
        sessions_.push_back(s);
      }
      s->Start();
    }
    Accept();
  });
}

void HttpServer::StopListening() {
  net::post(acceptor_.get_executor(), [this] {
    boost::system::error_code ec;
    acceptor_.close(ec);
  });
}

void HttpServer::StopAccepting() {
  net::post(acceptor_.get_executor(), [this] {
    boost::system::error_code ec;
    acceptor_.close(ec);
  });
  std::vector<std::shared_ptr<HttpSession>> live;
  {
    std::lock_guard<std::mutex> l(sessions_mu_);
    for (auto& w : sessions_) {
      if (auto s = w.lock()) live.push_back(std::move(s));
    }
    sessions_.clear();
  }
  for (auto& s : live) s->Shutdown();
}

void HttpServer::Join() {
  if (threads_.empty()) return;
  ioc_.stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

}  // namespace dsv3::gateway
