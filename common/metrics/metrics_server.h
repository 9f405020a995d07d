// MetricsServer: serves a prometheus-cpp registry as `GET /metrics` (text exposition
// format) on its own port, for the gRPC workers; one Boost.Asio thread, one request per
// connection. (prometheus-cpp's own Exposer embeds civetweb, whose threads crashed in
// these processes on the second scrape: see docs/OBSERVABILITY.md.) The gateway serves
// its registry on its own HTTP port instead.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <prometheus/registry.h>

#include "common/status.h"

namespace dsv3 {

class MetricsServer {
 public:
  // listen: "HOST:PORT" (PORT 0 picks a free one).
  static StatusOr<std::unique_ptr<MetricsServer>> Start(const std::string& listen,
                                                         std::shared_ptr<prometheus::Registry> registry);
  ~MetricsServer();
  // "HOST:PORT" actually bound.
  const std::string& address() const { return address_; }

 private:
  struct Impl;
  MetricsServer() = default;
  std::unique_ptr<Impl> impl_;
  std::string address_;
};

// Exponential histogram buckets from `start`, `count` of them, each `factor` times the last.
std::vector<double> ExponentialBuckets(double start, double factor, int count);

}  // namespace dsv3
