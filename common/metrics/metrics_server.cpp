#include "common/metrics/metrics_server.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <prometheus/text_serializer.h>

namespace dsv3 {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

struct MetricsServer::Impl {
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::shared_ptr<prometheus::Registry> registry;
  std::thread thread;

  void Accept() {
    acceptor.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
      if (ec) {
        if (ec != asio::error::operation_aborted) Accept();
        return;
      }
      Serve(std::move(socket));
      Accept();
    });
  }

  // Scrapes are small and rare: answer synchronously, with a bounded wait for the request.
  void Serve(tcp::socket socket) {
    boost::beast::tcp_stream stream(std::move(socket));
    stream.expires_after(std::chrono::seconds(5));
    boost::beast::flat_buffer buf;
    http::request<http::string_body> req;
    boost::system::error_code ec;
    http::read(stream, buf, req, ec);
    if (ec) return;
    http::response<http::string_body> res;
    res.version(req.version());
    res.keep_alive(false);
    if (req.method() != http::verb::get) {
      res.result(http::status::method_not_allowed);
      res.set(http::field::allow, "GET");
    } else if (req.target() != "/metrics" && req.target() != "/") {
      res.result(http::status::not_found);
      res.body() = "try /metrics\n";
    } else {
      res.result(http::status::ok);
      res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
      res.body() = prometheus::TextSerializer().Serialize(registry->Collect());
    }
    res.prepare_payload();
    http::write(stream, res, ec);
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  }
};

StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& listen,
                                                              std::shared_ptr<prometheus::Registry> registry) {
  std::unique_ptr<MetricsServer> s(new MetricsServer());
  s->impl_ = std::make_unique<Impl>();
  Impl& im = *s->impl_;
  im.registry = std::move(registry);
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return InvalidArgument("metrics", StrCat("listen address '", listen, "' needs HOST:PORT"));
  boost::system::error_code ec;
  const auto addr = asio::ip::make_address(listen.substr(0, colon), ec);
  if (ec) return InvalidArgument("metrics", StrCat("bad listen host in '", listen, "': ", ec.message()));
  const int port = std::atoi(listen.c_str() + colon + 1);
  tcp::endpoint ep(addr, static_cast<uint16_t>(port));
  im.acceptor.open(ep.protocol(), ec);
  if (!ec) im.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) im.acceptor.bind(ep, ec);
  if (!ec) im.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return absl::UnavailableError(StrCat("metrics: cannot listen on ", listen, ": ", ec.message()));
  s->address_ = StrCat(listen.substr(0, colon), ":", im.acceptor.local_endpoint().port());
  im.Accept();
  im.thread = std::thread([&im] { im.io.run(); });
  return s;
}

MetricsServer::~MetricsServer() {
  if (!impl_) return;
  asio::post(impl_->io, [im = impl_.get()] {
    boost::system::error_code ec;
    im->acceptor.close(ec);
  });
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  std::vector<double> b;
  double v = start;
  for (int i = 0; i < count; ++i, v *= factor) b.push_back(v);
  return b;
}

}  // namespace dsv3
