// ExpertMetrics: the expert worker's Prometheus metrics (batch sizes, compute time,
// errors), fed by ExpertWorkerOptions::on_batch from the gRPC and UCX server threads.
#pragma once

#include <memory>
#include <string>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace dsv3 {

class ExpertMetrics {
 public:
  ExpertMetrics(const std::string& worker_id, const std::string& transport);
  // Once the worker knows its slice ("0-127") and how many experts that is.
  void SetHosted(const std::string& experts, int64_t count);
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }
  void OnBatch(int64_t tokens, double seconds, bool ok);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Counter *batches_, *tokens_, *errors_;
  prometheus::Histogram *batch_tokens_, *seconds_;
  prometheus::Family<prometheus::Gauge>* hosted_;
};

}  // namespace dsv3
