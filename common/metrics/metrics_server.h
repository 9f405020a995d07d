// MetricsServer: a prometheus-cpp registry served over HTTP (prometheus-cpp's Exposer,
// `GET /metrics`) on its own port, for the gRPC workers. The gateway serves its registry
// on its own HTTP port instead.
#pragma once

#include <memory>
#include <string>

#include <prometheus/exposer.h>
#include <prometheus/registry.h>

#include "common/status.h"

namespace dsv3 {

class MetricsServer {
 public:
  // listen: "HOST:PORT" (PORT 0 picks a free one).
  static StatusOr<std::unique_ptr<MetricsServer>> Start(const std::string& listen,
                                                         std::shared_ptr<prometheus::Registry> registry);
  // "HOST:PORT" actually bound.
  const std::string& address() const { return address_; }

 private:
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::string address_;
};

// Exponential histogram buckets from `start`, `count` of them, each `factor` times the last.
std::vector<double> ExponentialBuckets(double start, double factor, int count);

}  // namespace dsv3
