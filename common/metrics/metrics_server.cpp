#include "common/metrics/metrics_server.h"

namespace dsv3 {

StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& listen,
                                                               std::shared_ptr<prometheus::Registry> registry) {
  auto s = std::make_unique<MetricsServer>();
  try {
    s->exposer_ = std::make_unique<prometheus::Exposer>(listen, /*num_threads=*/1);
  } catch (const std::exception& e) {
    return absl::UnavailableError(StrCat("metrics: cannot listen on ", listen, ": ", e.what()));
  }
  s->exposer_->RegisterCollectable(registry);
  const auto ports = s->exposer_->GetListeningPorts();
  if (ports.empty()) return absl::UnavailableError(StrCat("metrics: cannot listen on ", listen));
  s->address_ = StrCat(listen.substr(0, listen.rfind(':')), ":", ports.front());
  return s;
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  std::vector<double> b;
  double v = start;
  for (int i = 0; i < count; ++i, v *= factor) b.push_back(v);
  return b;
}

}  // namespace dsv3
