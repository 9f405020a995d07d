// HttpServer: the listening socket and the io_context threads (--http-threads). Each
// accepted connection becomes an HttpSession on its own strand; idle keep-alive
// connections cost a socket and a pending read, so hundreds are cheap.
#pragma once

#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "common/status.h"
#include "services/gateway/gateway_config.h"

namespace dsv3::gateway {

class OpenAiApi;
class GatewayMetrics;
class HttpSession;

class HttpServer {
 public:
  HttpServer(const GatewayConfig& config, OpenAiApi& api, GatewayMetrics& metrics);
  ~HttpServer();

  // Binds and listens; returns the port (useful with port 0).
  StatusOr<int> Listen();
  // Starts accepting on `threads` threads; returns at once.
  void Run();
  // Closes the listening socket only: open connections and their requests go on.
  void StopListening();
  // Stops accepting and closes every connection (their requests are cancelled).
  void StopAccepting();
  // Stops the threads; call after the in-flight work has drained.
  void Join();

 private:
  void Accept();

  const GatewayConfig& config_;
  OpenAiApi& api_;
  GatewayMetrics& metrics_;
  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::vector<std::thread> threads_;
  std::mutex sessions_mu_;
  std::vector<std::weak_ptr<HttpSession>> sessions_;
};

}  // namespace dsv3::gateway
